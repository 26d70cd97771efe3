//! Retry an async body with backoff, jitter, a predicate, a budget and cancellation.
//!
//! * [`Backoff`] is a schedule of delays (constant, exponential, fibonacci) with
//!   [`Jitter`] and a max delay; it is a plain iterator, usable on its own.
//! * [`Retry`] runs a body until it succeeds, the error is not retryable, the attempts or
//!   the [`RetryBudget`] run out, or a cancellation token fires; the result is the body's
//!   value or a [`RetryError`] carrying the last error.
//!
//! With a sink, a retry raises `retry.attempt` as each retry starts (after its backoff wait)
//! and `retry.exhausted` when it gives up, so `sink.has_signal("retry.exhausted")` tells a dashboard that a downstream is
//! failing for good.
//!
//! **The concurrency slot is held during backoff** when a retry runs inside a coordinator
//! body: see [`Retry`].
//!
//! # Comparison with retrying in a loop
//!
//! A hand-written loop usually forgets one of: a cap on the delay, jitter, an error that
//! should not be retried, a budget across calls, or cancellation during the sleep. This
//! module has them all and nothing else.

mod backoff;
mod budget;
mod error;
mod policy;

pub use backoff::{Backoff, BackoffIter, Jitter};
pub use budget::RetryBudget;
pub use error::{RetryConfigError, RetryError};
pub use policy::Retry;
