//! Ready-made compositions of `ephemeral` coordinators, signals and atoms.
//!
//! # Overview
//!
//! Each pattern is a module behind a cargo feature of its own, pulling in only its own
//! dependencies; `full` enables all of them. Patterns steer coordinators only through public
//! means: sink holds and signals, and the coordinator's `Admission` hook.
//!
//! | feature | module | what it does |
//! |---|---|---|
//! | `circuit_breaker` | `circuit_breaker` | opens on failure signals, holds `circuit.open`, probes its way back |
//! | `backpressure` | `backpressure` | holds `backpressure.<name>` between a high and a low watermark |
//! | `dynamic_concurrency` | `dynamic_concurrency` | scales a coordinator between min and max on `load.high` / `load.low` |
//! | `telemetry` | `telemetry` | OpenTelemetry metrics for coordinators and sinks |
//! | `anomaly_detector` | `anomaly_detector` | raises `anomaly.detected` / `anomaly.cleared` on a burst of matches |
//! | `signal_log_watcher` | `signal_log_watcher` | a handler once per matching signal, lag reported |
//! | `progress` | `progress` | `progress.<name>.*` signals for any byte stream |
//! | `adaptive_rate` | `adaptive_rate` | slows intake on `rate-limit:<d>` or `retry-after`, recovers gradually |
//! | `keyed_priority_fanout` | `keyed_priority_fanout` | a priority and a normal lane, per-key order kept across both |
//! | `reactive_fanout` | `reactive_fanout` | two stages; stage 2's backlog throttles stage 1, recovery restores it |
//! | `http` | `http` | a tower layer for HTTP clients: `http.error.<status>`, `http.timeout`, `http.slow` signals; refusal by a circuit breaker |
//!
//! Every pattern that needs a background task (an open timer, a clearing timer, a watcher)
//! takes the tokio runtime it is created in, and is a typed error outside one. Every
//! pattern's own signals are excluded from its own triggers, so a broad pattern (`*`)
//! cannot make it feed itself.
//!
//! # Getting started
//!
//! ```toml
//! ephemeral-patterns = { version = "0.1", features = ["circuit_breaker"] }
//! ```
//!
//! ```
//! # #[cfg(feature = "circuit_breaker")]
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ephemeral::SignalSink;
//! use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions};
//!
//! let sink = SignalSink::default();
//! let breaker = CircuitBreaker::new(&sink, CircuitBreakerOptions::default())?;
//! for _ in 0..5 {
//!     sink.raise("failure")?; // raised by your operations
//! }
//! // Coordinators with `cancel_on("circuit.open")` now cancel new items without running them.
//! assert!(sink.has_signal("circuit.open"));
//! # drop(breaker);
//! # Ok(())
//! # }
//! # // Without the feature there is nothing to show; with it, `main` above runs (a block
//! # // around it would make rustdoc wrap everything in a function that never calls it).
//! # #[cfg(not(feature = "circuit_breaker"))]
//! # fn main() {}
//! ```
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]

/// What the patterns need of a coordinator; defined in core (`ephemeral::CoordinatorHandle`)
/// and implemented there for every coordinator type.
#[cfg(any(
    feature = "circuit_breaker",
    feature = "backpressure",
    feature = "dynamic_concurrency",
    feature = "telemetry"
))]
pub use ephemeral::CoordinatorHandle;

#[cfg(feature = "circuit_breaker")]
pub mod circuit_breaker;

#[cfg(feature = "backpressure")]
pub mod backpressure;

#[cfg(feature = "telemetry")]
pub mod telemetry;

#[cfg(feature = "adaptive_rate")]
pub mod adaptive_rate;

#[cfg(feature = "anomaly_detector")]
pub mod anomaly_detector;

#[cfg(feature = "signal_log_watcher")]
pub mod signal_log_watcher;

#[cfg(feature = "progress")]
pub mod progress;

#[cfg(feature = "dynamic_concurrency")]
pub mod dynamic_concurrency;

#[cfg(feature = "keyed_priority_fanout")]
pub mod keyed_priority_fanout;

#[cfg(feature = "reactive_fanout")]
pub mod reactive_fanout;

#[cfg(feature = "http")]
pub mod http;
