//! The presets of an order shop: a fixed pool resizing product images, a ledger that books
//! each account's entries strictly in order, and an order intake that refuses orders during
//! maintenance and holds them back under back-pressure.
//!
//! Run with `cargo run -p ephemeral-examples --bin presets`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, OperationContext, Signal, SignalSink};
use ephemeral_atoms::presets::{FixedWork, KeyedSequential, SignalAware, SignalAwareError};

/// Booked ledger entries: account, amount, balance after it.
type Booked = Arc<Mutex<Vec<(&'static str, i64, i64)>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. FixedWork: four workers resize twelve images; one is corrupt.
    let images = FixedWork::new(4, |image: u32, _ctx: OperationContext| async move {
        tokio::time::sleep(ms(20)).await;
        if image == 7 {
            return Err(format!("image {image}: corrupt header"));
        }
        Ok(())
    })?;
    for image in 1..=12 {
        images.enqueue(image).await?;
    }
    images.drain().await?;
    let image_stats = images.stats();
    println!(
        "images: {} accepted, {} resized, {} failed ({}), at most {} at once",
        image_stats.accepted,
        image_stats.completed,
        image_stats.failed,
        images
            .inner()
            .failed()
            .first()
            .and_then(|op| op.error.as_deref().map(str::to_owned))
            .unwrap_or_else(|| "none".to_owned()),
        image_stats.peak_running
    );

    // 2. KeyedSequential: each account's entries are booked in order, accounts in parallel.
    let balances: Booked = Arc::default();
    let booked = balances.clone();
    let running = Arc::new(Mutex::new(std::collections::HashMap::<&str, i64>::new()));
    let ledger = KeyedSequential::new(
        move |(account, amount): (&'static str, i64), _ctx: OperationContext| {
            let (booked, running) = (booked.clone(), running.clone());
            async move {
                // A slower first entry would be overtaken if one account ran two at once.
                tokio::time::sleep(ms(if amount > 50 { 30 } else { 5 })).await;
                let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
                let balance = running.entry(account).or_default();
                *balance += amount;
                if *balance < 0 {
                    return Err(format!("{account} would go to {balance}"));
                }
                booked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((account, amount, *balance));
                Ok(())
            }
        },
    )?;
    for (account, amount) in [
        ("alice", 100),
        ("bob", 20),
        ("alice", -30),
        ("bob", -5),
        ("alice", -50),
    ] {
        ledger.enqueue(account, (account, amount)).await?;
    }
    ledger.drain().await?;
    for (account, amount, balance) in balances.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("ledger: {account:>5} {amount:>+5} -> {balance}");
    }
    println!(
        "ledger: {} entries booked, in order per account",
        ledger.stats().completed
    );

    // 3. SignalAware: refused during maintenance, deferred under back-pressure.
    let sink = SignalSink::default();
    let shipped: Arc<Mutex<Vec<u32>>> = Arc::default();
    let log = shipped.clone();
    let orders = SignalAware::new(
        move |order: u32, _ctx: OperationContext| {
            let log = log.clone();
            async move {
                log.lock().unwrap_or_else(|e| e.into_inner()).push(order);
                Ok::<_, Infallible>(())
            }
        },
        sink.clone(),
    )
    .options(EphemeralOptions::default().max_concurrency(2))
    .refuse_on("maintenance.*")
    .defer_on("backpressure.high")
    .resume_on("backpressure.cleared")
    .build()?;

    sink.raise_with(Signal::build("maintenance.db")?.expires_in(ms(50)))?;
    let refused_in_maintenance = match orders.enqueue(1).await {
        Err(SignalAwareError::Refused { item, signal, .. }) => {
            println!("orders: order {item} refused while `{signal}` is live");
            true
        }
        Ok(_) => {
            println!("orders: order 1 accepted (unexpected during maintenance)");
            false
        }
        Err(e) => return Err(e.to_string().into()),
    };
    tokio::time::sleep(ms(60)).await;
    let refusing_after = orders.is_refusing();
    println!("orders: maintenance over, refusing = {refusing_after}");

    sink.raise("backpressure.high")?;
    for order in 1..=3 {
        orders.enqueue(order).await.map_err(|e| e.to_string())?;
    }
    tokio::time::sleep(ms(20)).await;
    let waiting_under_pressure = orders.stats().pending;
    let shipped_under_pressure = shipped.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!(
        "orders: under back-pressure {waiting_under_pressure} waiting, \
         {shipped_under_pressure} shipped"
    );
    sink.raise("backpressure.cleared")?;
    orders.drain().await?;
    let mut shipped = shipped.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("orders: resumed, shipped {shipped:?}");

    // What this example shows, checked (CI runs it with its output discarded).
    // 1. Eleven images resized, image 7 failed, never more than the pool's 4 at once.
    if image_stats.completed != 11 || image_stats.failed != 1 || image_stats.peak_running > 4 {
        return Err(format!(
            "images: expected 11 resized, 1 failed, at most 4 at once; saw {} resized, {} \
             failed, {} at once",
            image_stats.completed, image_stats.failed, image_stats.peak_running
        )
        .into());
    }
    // 2. Every entry booked (none overdrew), each account's in the order enqueued.
    let booked = balances.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let per_account = |account: &str| -> Vec<i64> {
        booked
            .iter()
            .filter(|(a, _, _)| *a == account)
            .map(|(_, amount, _)| *amount)
            .collect()
    };
    if per_account("alice") != [100, -30, -50] || per_account("bob") != [20, -5] {
        return Err(format!("ledger: entries booked out of order per account: {booked:?}").into());
    }
    // 3. Order 1 refused during maintenance, accepted again after it; nothing shipped under
    //    back-pressure; all three shipped once it cleared.
    shipped.sort_unstable();
    if !refused_in_maintenance
        || refusing_after
        || waiting_under_pressure != 3
        || shipped_under_pressure != 0
        || shipped != [1, 2, 3]
    {
        return Err(format!(
            "orders: expected a refusal during maintenance, none after, 3 waiting and none \
             shipped under back-pressure, then orders 1-3 shipped; saw refused {}, refusing \
             after {}, {} waiting and {} shipped under back-pressure, then shipped {:?}",
            refused_in_maintenance,
            refusing_after,
            waiting_under_pressure,
            shipped_under_pressure,
            shipped
        )
        .into());
    }
    Ok(())
}
