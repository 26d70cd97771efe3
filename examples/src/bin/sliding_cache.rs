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
    let apple_calls = backend_calls.load(Ordering::Relaxed);
    println!("100 concurrent requests for apple: {apple_calls} backend call(s)");

    for sku in ["pear", "plum", "fig"] {
        prices.get(sku.to_owned()).await?; // the 4th entry evicts the least recently read
    }
    let mut pear_prices = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let price = prices.get("pear".to_owned()).await?; // each read slides pear's expiry
        println!("pear read again after 100 ms: {price}");
        pear_prices.push(price);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let plum = prices.get_if_present(&"plum".to_owned());
    println!("after 450 ms idle, plum is {plum:?} (sliding expiry 300 ms)");
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
    // What this example shows, checked (CI runs it with its output discarded): the 100
    // concurrent requests shared one backend call (the load takes 50 ms; a request would
    // need to be held up 300 ms, apple's sliding expiry, to miss it), pear was read back with
    // the backend's value, plum was gone after 450 ms unread (never returned past its
    // expiry), fig was evicted explicitly, and every eviction raised `cache.evict`.
    let pear: u32 = "pear".bytes().map(u32::from).sum();
    let evictions = stats.expired + stats.evicted_size + stats.evicted_explicit;
    if apple_calls != 1
        || pear_prices != [pear; 3]
        || plum.is_some()
        || stats.evicted_explicit != 1
        || sink.count("cache.evict") as u64 != evictions
    {
        return Err(format!(
            "expected 1 backend call for apple, pear at {pear} three times, plum expired, fig \
             evicted explicitly and a `cache.evict` per eviction; saw {apple_calls} call(s), \
             pear at {pear_prices:?}, plum {plum:?}, {} explicit, {} `cache.evict` for \
             {evictions} evictions",
            stats.evicted_explicit,
            sink.count("cache.evict")
        )
        .into());
    }
    Ok(())
}
