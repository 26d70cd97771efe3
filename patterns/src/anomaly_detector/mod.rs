//! Raise `anomaly.detected` / `anomaly.cleared` when matching signals exceed a rate.
//!
//! # When to use it
//!
//! To turn a stream of individual events (`error.*`, `timeout.*`) into one condition a
//! person or a coordinator can act on: when `threshold` signals matching the pattern (or
//! more) arrive within `window`, the detector raises `anomaly.detected` and holds
//! `anomaly.active` (so `defer_on("anomaly.active")` works); once the count within the window
//! falls below the threshold, it releases the hold and raises `anomaly.cleared`. The
//! threshold is inclusive, as in the original and as people read it: with a threshold of 5,
//! five signals in the window are an anomaly.
//! The names' first segment is configurable (`anomaly.db.detected`, ...).
//!
//! Memory is bounded by the threshold (it keeps the last `threshold` arrival instants),
//! not by the traffic: arrivals are seen synchronously by a sink listener, and clearing
//! happens on one timer task (at most one per detector, however many signals arrive) at the
//! exact instant the oldest counted arrival leaves the window. A window whose
//! end is past what tokio's clock can hold (`Duration::MAX`) never ends: the anomaly is
//! detected and held, and never cleared.
//!
//! Not for: a single signal that must stop work (use the circuit breaker, which also
//! probes its way back).

mod detector;

pub use detector::{AnomalyDetector, AnomalyError};
