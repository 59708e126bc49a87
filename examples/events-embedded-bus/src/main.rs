//! Publish events to the embedded bus and consume them idempotently.
//!
//! Run with: `cargo run -p example-events-embedded-bus`

#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dovetail-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let summary = example_events_embedded_bus::run(&dir).await?;
    for (policy, product_line) in &summary.applied {
        println!("applied policy.issued for {policy} (product line: {product_line})");
    }
    println!(
        "duplicates answered without a second effect: {}",
        summary.duplicates
    );
    println!("bus and idempotency records in {}", dir.display());
    Ok(())
}
