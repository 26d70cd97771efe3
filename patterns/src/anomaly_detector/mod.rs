//! Raise `anomaly.detected` / `anomaly.cleared` when matching signals exceed a rate.
//!
//! # When to use it
//!
//! To turn a stream of individual events (`error.*`, `timeout.*`) into one condition a
//! person or a coordinator can act on: when more than `threshold` signals matching the
//! pattern arrive within `window`, the detector raises `anomaly.detected` and holds
//! `anomaly.active` (so `defer_on("anomaly.active")` works); once the count within the window
//! falls back to the threshold or below, it releases the hold and raises `anomaly.cleared`.
//! The names' first segment is configurable (`anomaly.db.detected`, ...).
//!
//! Memory is bounded by the threshold (it keeps the last `threshold + 1` arrival instants),
//! not by the traffic. Arrivals are seen synchronously by a sink listener; clearing happens on
//! a timer at the exact instant the oldest counted arrival leaves the window.
//!
//! Not for: a single signal that must stop work (use the circuit breaker, which also
//! probes its way back).

mod detector;

pub use detector::{AnomalyDetector, AnomalyError};
