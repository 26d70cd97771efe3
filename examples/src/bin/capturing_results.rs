//! Capturing results: bodies return values, kept with their operations; wait for one, or
//! read them all once the work is done.
//!
//! `cargo run -p ephemeral-examples --bin capturing_results` (finishes in well under a second).

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext, ResultError};

/// A pretend price lookup: unknown products fail.
async fn price_of(sku: &str) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(15)).await;
    match sku {
        "apple" => Ok(120),
        "bread" => Ok(340),
        "cheese" => Ok(899),
        "dates" => Ok(560),
        other => Err(format!("no price for `{other}`")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prices = EphemeralResultCoordinator::new(
        |sku: &'static str, _ctx: OperationContext| async move {
            price_of(sku).await.map(|cents| (sku, cents))
        },
        EphemeralOptions::default().max_concurrency(3),
    )?;

    // Wait for one result, like a call with a bounded worker pool behind it.
    let cheese = prices.enqueue("cheese").await?;
    let (sku, cents) = prices.wait_for_result(cheese).await?;
    println!("waited for one: {sku} costs {cents} cents");

    // Fire off the rest, then read what came back.
    let mut ids = Vec::new();
    for sku in ["apple", "bread", "caviar", "dates"] {
        ids.push((sku, prices.enqueue(sku).await?));
    }
    prices.drain().await?;

    println!("after drain:");
    for (sku, id) in ids {
        match prices.result(id) {
            Some(Ok((_, cents))) => println!("  {sku:<7} {cents:>5} cents"),
            Some(Err(ResultError::Failed { message, .. })) => {
                println!("  {sku:<7} failed: {message}")
            }
            Some(Err(other)) => println!("  {sku:<7} {other}"),
            None => println!("  {sku:<7} no longer tracked"),
        }
    }
    let total: u64 = prices.results().iter().map(|(_, (_, cents))| cents).sum();
    println!(
        "{} price(s) found, {} lookup(s) failed, total of the found prices: {total} cents",
        prices.results().len(),
        prices.failed().len()
    );
    // What this example shows, checked (CI runs it with its output discarded): the result
    // waited for was cheese's price, and after the drain the four known products' prices are
    // kept (899 + 120 + 340 + 560 cents) while the unknown one is kept as a failure.
    if (sku, cents) != ("cheese", 899)
        || prices.results().len() != 4
        || total != 1_919
        || prices.failed().len() != 1
    {
        return Err(format!(
            "expected cheese at 899 cents, 4 prices totalling 1919 cents and 1 failed lookup; \
             saw {sku} at {cents} cents, {} prices totalling {total} cents, {} failed",
            prices.results().len(),
            prices.failed().len()
        )
        .into());
    }
    Ok(())
}
