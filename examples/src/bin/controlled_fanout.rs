//! Controlled fan-out: many requests across a few hosts, gated twice — at most 6 in flight
//! overall, at most 2 per host — plus a global gate (`fanout.paused`) that an operator (or a
//! circuit breaker) can hold to stop new starts without losing anything queued.
//!
//! The program fans 60 requests out over 5 hosts with different latencies, holds
//! `fanout.paused` for 150 ms in the middle, and reports the peak concurrency it saw overall
//! and per host; it fails if either limit was broken or a start happened while paused.
//!
//! `cargo run -p ephemeral-examples --bin controlled_fanout` (finishes in about a second).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext, SignalSink};
use tokio::time::Instant;

const GLOBAL: usize = 6;
const PER_HOST: usize = 2;
const HOSTS: [(&str, u64); 5] = [
    ("api.a", 10),
    ("api.b", 25),
    ("api.c", 40),
    ("api.d", 15),
    ("api.e", 60),
];

/// One request: its host is also its key.
#[derive(Debug)]
struct Request {
    host: &'static str,
    latency: u64,
}

#[derive(Debug, Default)]
struct Gauges {
    running: usize,
    peak: usize,
    per_host: BTreeMap<&'static str, (usize, usize)>, // (running, peak)
    started_while_paused: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let gauges = Arc::new(Mutex::new(Gauges::default()));
    let paused = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let (g, p) = (gauges.clone(), paused.clone());
    let fanout = EphemeralKeyedWorkCoordinator::<&'static str, Request>::new(
        move |Request { host, latency }: Request, _ctx: OperationContext| {
            let (gauges, paused) = (g.clone(), p.clone());
            async move {
                {
                    let mut g = gauges.lock().map_err(|e| e.to_string())?;
                    if paused.load(Ordering::SeqCst) {
                        g.started_while_paused += 1;
                    }
                    g.running += 1;
                    g.peak = g.peak.max(g.running);
                    let h = g.per_host.entry(host).or_default();
                    h.0 += 1;
                    h.1 = h.1.max(h.0);
                }
                // The request itself.
                tokio::time::sleep(Duration::from_millis(latency)).await;
                let mut g = gauges.lock().map_err(|e| e.to_string())?;
                g.running -= 1;
                if let Some(h) = g.per_host.get_mut(host) {
                    h.0 -= 1;
                }
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(GLOBAL)
            .per_key_concurrency(PER_HOST)
            .signals(sink.clone())
            .defer_on("fanout.paused"),
    )?;

    for request in 0..60u32 {
        let (host, latency) = HOSTS[request as usize % HOSTS.len()];
        fanout.enqueue(host, Request { host, latency }).await?;
    }
    println!(
        "{:>4} ms  60 requests queued over {} hosts",
        start.elapsed().as_millis(),
        HOSTS.len()
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let done_before = fanout.stats().completed;
    let hold = sink.hold("fanout.paused")?;
    paused.store(true, Ordering::SeqCst);
    println!(
        "{:>4} ms  gate closed (fanout.paused held) after {done_before} completed; running requests finish",
        start.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let done_paused = fanout.stats().completed;
    paused.store(false, Ordering::SeqCst);
    hold.release();
    println!(
        "{:>4} ms  gate open again: {} finished while closed (the ones already running), {} waiting",
        start.elapsed().as_millis(),
        done_paused - done_before,
        fanout.pending_count()
    );

    fanout.drain().await?;
    let stats = fanout.stats();
    let g = gauges.lock().map_err(|e| e.to_string())?;
    println!(
        "{:>4} ms  done: completed {}, failed {}; peak in flight {} (limit {GLOBAL})",
        start.elapsed().as_millis(),
        stats.completed,
        stats.failed,
        g.peak
    );
    for (host, (_, peak)) in &g.per_host {
        println!("          {host}: peak {peak} (limit {PER_HOST})");
    }
    if g.peak > GLOBAL || g.per_host.values().any(|(_, peak)| *peak > PER_HOST) {
        return Err("a concurrency limit was exceeded".into());
    }
    if g.started_while_paused > 0 {
        return Err(format!("{} requests started while paused", g.started_while_paused).into());
    }
    if stats.completed != 60 {
        return Err(format!("expected 60 completed, got {}", stats.completed).into());
    }
    Ok(())
}
