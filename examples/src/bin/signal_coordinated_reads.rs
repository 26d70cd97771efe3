//! Signal-coordinated reads: readers pause while `update.in-progress` is held and resume the
//! moment it is released, with no polling and no timeout to wait out.
//!
//! An updater rewrites a shared "catalog" twice, holding `update.in-progress` on the sink while
//! it does. Readers go through a coordinator with `defer_on("update.in-progress")`: a read that
//! arrives during an update waits (holding no slot) and starts as soon as the hold is released.
//! A one-off reader outside any coordinator does the same with `sink.watch(..)`. The program
//! prints when each read started relative to the releases and fails if any read saw a
//! half-written catalog. Finishes in well under a second.
//!
//! `cargo run -p ephemeral-examples --bin signal_coordinated_reads`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use tokio::time::Instant;

/// The shared data: a version and a list that must be read whole.
#[derive(Debug, Default)]
struct Catalog {
    version: u32,
    items: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let catalog = Arc::new(Mutex::new(Catalog::default()));
    let updating = Arc::new(AtomicBool::new(false));
    let torn_reads = Arc::new(Mutex::new(Vec::<u32>::new()));
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis();

    let (c, u, t) = (catalog.clone(), updating.clone(), torn_reads.clone());
    let readers = EphemeralWorkCoordinator::new(
        move |reader: u32, _ctx: OperationContext| {
            let (catalog, updating, torn) = (c.clone(), u.clone(), t.clone());
            async move {
                if updating.load(Ordering::SeqCst) {
                    torn.lock().map_err(|e| e.to_string())?.push(reader);
                }
                let (version, len) = {
                    let catalog = catalog.lock().map_err(|e| e.to_string())?;
                    (catalog.version, catalog.items.len())
                };
                println!(
                    "{:>4} ms  reader {reader:>2} read v{version} ({len} items)",
                    ms()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .defer_on("update.in-progress"),
    )?;

    // A steady trickle of reads, every 10 ms, across both updates.
    let feeder = {
        let readers = readers.clone();
        tokio::spawn(async move {
            for reader in 0..40 {
                readers.enqueue(reader).await.map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, String>(())
        })
    };

    // A reader outside any coordinator waits on the hold with a watch.
    let one_off = {
        let sink = sink.clone();
        let catalog = catalog.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut watch = sink.watch("update.in-progress");
            let asked = ms();
            watch.wait_until_clear().await;
            let version = catalog.lock().map(|c| c.version).unwrap_or(0);
            println!(
                "{:>4} ms  one-off reader (asked at {asked} ms) read v{version} via sink.watch",
                ms()
            );
        })
    };

    for version in 1..=2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let hold = sink.hold("update.in-progress")?;
        updating.store(true, Ordering::SeqCst);
        println!("{:>4} ms  update to v{version} begins (hold)", ms());
        {
            let mut catalog = catalog.lock().map_err(|e| e.to_string())?;
            catalog.items.clear();
        }
        // The slow part of the update: the catalog is half-written all this time.
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let mut catalog = catalog.lock().map_err(|e| e.to_string())?;
            catalog.items = (0..version * 10).map(|i| format!("item-{i}")).collect();
            catalog.version = version;
        }
        updating.store(false, Ordering::SeqCst);
        println!("{:>4} ms  update to v{version} done (release)", ms());
        hold.release();
    }

    feeder.await??;
    one_off.await?;
    readers.drain().await?;
    let stats = readers.stats();
    println!(
        "reads: completed {}, failed {}",
        stats.completed, stats.failed
    );
    // What this example shows, checked (CI runs it with its output discarded): every read
    // ran, and none of them while the catalog was half-written.
    let torn = torn_reads.lock().map_err(|e| e.to_string())?;
    if !torn.is_empty() {
        return Err(format!("readers {torn:?} ran during an update").into());
    }
    if stats.completed != 40 || stats.failed != 0 {
        return Err(format!(
            "expected 40 reads completed; saw {} completed, {} failed",
            stats.completed, stats.failed
        )
        .into());
    }
    println!("no read ran while `update.in-progress` was held");
    Ok(())
}
