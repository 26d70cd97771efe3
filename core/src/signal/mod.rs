//! The signal sink: a shared, bounded, expiring window of short-lived named signals.

#[allow(clippy::module_inception)]
mod signal;

pub use signal::{HeaderValue, Headers, Signal, SignalBuilder};
