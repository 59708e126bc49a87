//! The outbox's README example as a program, built outside the workspace from the
//! packaged `.crate` files (see `xtask/src/package.rs`): a write and its event commit
//! together in one SQLite transaction.

use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};

#[derive(serde::Serialize, serde::Deserialize)]
struct OrderPlaced {
    order_id: String,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "order.placed";
    const VERSION: u32 = 1;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = rusqlite::Connection::open_in_memory()?;
    SqliteOutbox::create_schema(&db)?;
    db.execute_batch("CREATE TABLE orders (order_id TEXT PRIMARY KEY)")?;
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("order-service")?));

    let mut unit = outbox.begin(&mut db)?;
    unit.transaction().execute("INSERT INTO orders (order_id) VALUES ('ord-1')", [])?;
    let order = AggregateRef::parse("order", "ord-1")?;
    let placed = OrderPlaced { order_id: "ord-1".into() };
    unit.append(order, ExpectedVersion::New, &placed, EventMetadata::default())?;
    let committed = unit.commit()?;

    let envelope = &committed.envelopes()[0];
    println!("outside the workspace: committed {} of {} with its write", envelope.event_type(), "ord-1");
    Ok(())
}
