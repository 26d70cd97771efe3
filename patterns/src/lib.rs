//! Ready-made compositions of `ephemeral` coordinators, signals and atoms.
//!
//! # Overview
//!
//! Each pattern (circuit breaker, backpressure, dynamic concurrency, telemetry, ...) will be a
//! module behind a cargo feature of its own, pulling in only its own dependencies, plus a
//! `full` feature that enables all of them. Patterns steer coordinators only through the
//! public `Admission` hook and sink holds.
//!
//! No pattern has landed yet: this crate currently exposes no items, and its `full` feature
//! enables nothing.
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]
