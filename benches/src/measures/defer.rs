//! How fast a deferred item starts after its resume signal, against the original's 100 ms poll.
//!
//! The baseline is a fixed reference (the original polls deferred items every 100 ms, so a
//! resume waits up to 100,000 µs). Our side is [`ours_resume_latencies`].

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use tokio::sync::Notify;

use tokio::runtime::Runtime;

use super::{Config, micros, reference, runtime};
use crate::report::Measurement;
use crate::stats::percentile;

/// The original's poll period, as the reference latency.
const ORIGINAL_POLL_US: f64 = 100_000.0;

/// Our side: `samples` rounds of "defer on `maintenance.*`, enqueue 16 items, raise
/// `maintenance.window`, then raise the resume signal and time (on the real clock) from the
/// raise to the first and to the 16th body start". Returns two durations per round; `None` if
/// a round could not run.
pub fn ours_resume_latencies(rt: &Runtime, samples: usize) -> Option<Vec<Duration>> {
    const ITEMS: usize = 16;
    rt.block_on(async {
        let mut latencies = Vec::with_capacity(samples * 2);
        for _ in 0..samples {
            let sink = SignalSink::default();
            let starts = Arc::new(Mutex::new(Vec::with_capacity(ITEMS)));
            let started = Arc::new(Notify::new());
            let body = {
                let (starts, started) = (starts.clone(), started.clone());
                move |_: usize, _ctx| {
                    let (starts, started) = (starts.clone(), started.clone());
                    async move {
                        let mut s = starts.lock().unwrap_or_else(PoisonError::into_inner);
                        s.push(Instant::now());
                        if s.len() == ITEMS {
                            started.notify_one();
                        }
                        Ok::<_, Infallible>(())
                    }
                }
            };
            let c = EphemeralWorkCoordinator::new(
                body,
                EphemeralOptions::default()
                    .max_concurrency(ITEMS)
                    .signals(sink.clone())
                    .defer_on("maintenance.*")
                    .resume_on("resume.maintenance"),
            )
            .ok()?;
            sink.raise("maintenance.window").ok()?;
            for i in 0..ITEMS {
                c.enqueue(i).await.ok()?;
            }
            // Let every item reach admission and be deferred (not timed).
            tokio::time::sleep(Duration::from_millis(2)).await;
            let raised = Instant::now();
            sink.raise("resume.maintenance").ok()?;
            tokio::time::timeout(Duration::from_secs(10), started.notified())
                .await
                .ok()?;
            let (first, last) = {
                let s = starts.lock().unwrap_or_else(PoisonError::into_inner);
                (*s.iter().min()?, *s.iter().max()?)
            };
            latencies.push(first.saturating_duration_since(raised));
            latencies.push(last.saturating_duration_since(raised));
            c.drain().await.ok()?;
        }
        Some(latencies)
    })
}

// ---------------------------------------------------------------------------------------------

/// p99 of the resume-to-start latency in µs, versus the original's 100 ms poll.
pub fn resume_p99(cfg: &Config) -> Measurement {
    let rt = runtime();
    let samples = cfg.pick(1000, 100);
    let p99 = ours_resume_latencies(&rt, samples).and_then(|lat| {
        let us: Vec<f64> = lat.into_iter().map(micros).collect();
        percentile(&us, 99.0)
    });
    Measurement {
        ours: p99,
        note: p99.is_none().then(|| {
            "ours: a round could not run (coordinator refused or no start within 10 s)".into()
        }),
        ..reference(
            "defer_resume_p99",
            "us",
            "the original's 100 ms poll of deferred items",
            ORIGINAL_POLL_US,
            false,
            500.0,
        )
    }
}
