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
//! | `telemetry` | `telemetry` | OpenTelemetry metrics for sinks |
//! | `anomaly_detector` | `anomaly_detector` | raises `anomaly.detected` / `anomaly.cleared` on a burst of matches |
//! | `signal_log_watcher` | `signal_log_watcher` | a handler once per matching signal, lag reported |
//! | `progress` | `progress` | `progress.<name>.*` signals for any byte stream |
//! | `adaptive_rate` | `adaptive_rate` | slows intake on `rate-limit:<d>` or `retry-after`, recovers gradually |
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]

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
