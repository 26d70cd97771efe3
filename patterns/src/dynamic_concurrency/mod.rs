//! Scale a coordinator's concurrency between a minimum and a maximum on load signals.
//!
//! # When to use it
//!
//! When the right concurrency depends on conditions only something else can see: a monitor
//! raises `load.high` (the downstream has headroom, go faster) or `load.low` (it struggles,
//! back off), and [`DynamicConcurrency`] moves the coordinator's `max_concurrency` one step
//! at a time — doubling or adding a fixed step up, halving or subtracting down — waiting a
//! cooldown after each change so the effect can show before the next. It never moves the
//! limit out of `min..=max` (a coordinator that starts outside it is left there until a step
//! toward it: up never lowers, down never raises), and it stops changing as soon as the
//! signal is gone (the .NET original kept doubling forever). It wakes on sink changes, never
//! polls.
//!
//! Not for: a fixed limit (set `max_concurrency`), or stopping work entirely (use a defer or
//! cancel pattern, or the circuit breaker).

mod scaler;

pub use scaler::{DynamicConcurrency, DynamicConcurrencyError, DynamicConcurrencyOptions, Step};
