//! How fast a deferred item starts after its resume signal, against the original's 100 ms poll.
//!
//! The baseline is a fixed reference (the original polls deferred items every 100 ms, so a
//! resume waits up to 100,000 µs). Our side is [`ours_resume_latencies`], which returns `None`
//! until the coordinators (with deferral) are on main.

use std::time::Duration;

use tokio::runtime::Runtime;

use super::{Config, micros, reference, runtime};
use crate::report::Measurement;
use crate::stats::percentile;

/// The original's poll period, as the reference latency.
const ORIGINAL_POLL_US: f64 = 100_000.0;

// ---------------------------------------------------------------------------------------------
// Ours: fill this in when deferral lands.
// ---------------------------------------------------------------------------------------------

/// Our side: `samples` rounds of "defer on `maintenance.*`, enqueue 16 items, raise
/// `maintenance.window`, then raise the resume signal and time (on the real clock) from the
/// raise to the first and to the 16th body start". Returns one duration per start measured,
/// or `None` while the coordinators do not exist.
pub fn ours_resume_latencies(rt: &Runtime, samples: usize) -> Option<Vec<Duration>> {
    let _ = (rt, samples);
    None
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
            "ours: deferral (coordinators) is not on main yet (fill in measures/defer.rs)".into()
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
