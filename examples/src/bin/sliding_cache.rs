//! A price cache in front of a slow backend: 100 concurrent requests make one backend call,
//! values slide and expire, a full cache evicts the least recently read, and every eviction
//! says why.
//!
//! Run with `cargo run -p ephemeral-examples --bin sliding_cache`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::cache::{CacheOptions, SlidingCache};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let backend_calls = Arc::new(AtomicU32::new(0));
    let calls = backend_calls.clone();
    let mut prices = SlidingCache::new(
        CacheOptions::default()
            .sliding(Duration::from_millis(300))
            .absolute(Duration::from_secs(1))
            .max_size(3)
            .signals(sink.clone())
            .name("prices"),
        move |sku: String| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await; // the slow backend
                Ok::<u32, std::io::Error>(sku.bytes().map(u32::from).sum())
            }
        },
    )?;
    let installed = prices.on_evict(|sku, price, reason| {
        println!("  evicted {sku} (price {price}): {reason}");
    });
    assert!(installed, "set the callback before sharing the cache");

    let mut requests = Vec::new();
    for _ in 0..100 {
        let prices = prices.clone();
        requests.push(tokio::spawn(
            async move { prices.get("apple".to_owned()).await },
        ));
    }
    for r in requests {
        r.await??;
    }
    println!(
        "100 concurrent requests for apple: {} backend call(s)",
        backend_calls.load(Ordering::Relaxed)
    );

    for sku in ["pear", "plum", "fig"] {
        prices.get(sku.to_owned()).await?; // the 4th entry evicts the least recently read
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let price = prices.get("pear".to_owned()).await?; // each read slides pear's expiry
        println!("pear read again after 100 ms: {price}");
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    println!(
        "after 450 ms idle, plum is {:?} (sliding expiry 300 ms)",
        prices.get_if_present(&"plum".to_owned())
    );
    prices.invalidate(&"fig".to_owned());

    let stats = prices.stats();
    println!(
        "stats: {} hits, {} misses, {} coalesced, {} expired, {} by size, {} explicit, {} left",
        stats.hits,
        stats.misses,
        stats.coalesced,
        stats.expired,
        stats.evicted_size,
        stats.evicted_explicit,
        stats.len
    );
    println!(
        "signals: {} cache.miss, {} cache.evict",
        sink.count("cache.miss"),
        sink.count("cache.evict")
    );
    Ok(())
}
