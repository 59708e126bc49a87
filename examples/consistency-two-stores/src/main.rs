//! A consistency check between two SQLite stores: see the library's docs.
//!
//! Run with: `cargo run -p example-consistency-two-stores`

#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-consistency-example-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let items = 10_000;
    let report = example_consistency_two_stores::run(&dir, items).await?;
    for difference in &report.differences {
        println!("{}: {}", difference.key, difference.drift.kind());
    }
    println!(
        "read {} of the owner's {} entries and {} digests to find them",
        report.source_cost.entries_read,
        items + 1,
        report.source_cost.digests_read
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
