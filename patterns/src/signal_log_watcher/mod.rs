//! Call a handler once per matching signal, from a subscription.
//!
//! # When to use it
//!
//! To log, forward or audit signals as they happen: every signal matching the pattern reaches
//! the handler exactly once, in sequence order, from a sink subscription (no polling of the
//! window, so nothing raised and expired between two polls is missed). Memory is bounded by
//! the subscription buffer; if the handler falls so far behind that the buffer overflows, the
//! oldest buffered signals are dropped and the lag is *reported* — to the lag callback and in
//! [`WatcherStats::lagged`] — never hidden.
//!
//! Handlers run one at a time, in order. A handler that panics — in the call itself, before
//! it returns its future, or while that future runs — is caught and counted in
//! [`WatcherStats::panicked`]; the watcher carries on with the next signal.
//!
//! Not for: reacting synchronously on the raising thread (use `SignalSink::on_signal`), or
//! running handlers concurrently (use `SignalSink::on_signal_async`).

mod watcher;

pub use watcher::{SignalLogWatcher, WatcherError, WatcherStats};
