//! A price cache in front of a slow backend: 100 concurrent requests make one backend call,
//! values slide and expire, a full cache evicts the least recently read, and every eviction
//! says why.
//!
//! Run with `cargo run -p ephemeral-examples --bin sliding_cache`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::cache::{CacheOptions, EvictionReason, SlidingCache};

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
    // Every eviction with its reason, for the check at the end.
    let evicted = Arc::new(Mutex::new(Vec::<(String, EvictionReason)>::new()));
    let log = evicted.clone();
    let installed = prices.on_evict(move |sku, price, reason| {
        println!("  evicted {sku} (price {price}): {reason}");
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((sku.clone(), reason));
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
    // fig has not been read for 550 ms either: removing it now reports it as expired, not as
    // an explicit removal of a live value. Removing a live one (kiwi, just set) is explicit.
    prices.invalidate(&"fig".to_owned());
    prices.insert("kiwi".to_owned(), 99);
    prices.invalidate(&"kiwi".to_owned());

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
    // expiry), plum and fig were reported expired and kiwi explicit, and every eviction
    // raised `cache.evict`. (apple's reason, size, is not checked: a machine stalled for
    // 300 ms would let it expire first.)
    let pear: u32 = "pear".bytes().map(u32::from).sum();
    let evicted = evicted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let reason = |sku: &str| {
        evicted
            .iter()
            .find(|(s, _)| s == sku)
            .map(|(_, reason)| *reason)
    };
    let reasons_ok = reason("plum") == Some(EvictionReason::Expired)
        && reason("fig") == Some(EvictionReason::Expired)
        && reason("kiwi") == Some(EvictionReason::Explicit);
    let evictions = stats.expired + stats.evicted_size + stats.evicted_explicit;
    if apple_calls != 1
        || pear_prices != [pear; 3]
        || plum.is_some()
        || !reasons_ok
        || evicted.len() as u64 != evictions
        || sink.count("cache.evict") as u64 != evictions
    {
        return Err(format!(
            "expected 1 backend call for apple, pear at {pear} three times, plum gone, plum \
             and fig evicted as expired, kiwi as explicit, and a `cache.evict` per eviction; \
             saw {apple_calls} call(s), pear at {pear_prices:?}, plum {plum:?}, evictions \
             {evicted:?}, {evictions} counted, {} `cache.evict`",
            sink.count("cache.evict")
        )
        .into());
    }
    Ok(())
}
