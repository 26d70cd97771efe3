//! The signal sink: a shared, bounded, expiring window of short-lived named signals.
//!
//! * [`SignalSink`] — raise, query, hold, watch, subscribe, forward.
//! * [`Signal`] / [`SignalBuilder`] — one signal and its optional parts.
//! * [`Hold`] — a condition live until released; [`Watch`] — woken on every change.
//! * [`Subscription`] — a stream of matching signals with the lag model of [`crate::Lagged`];
//!   [`Listener`] and [`Handler`] — sync and async callbacks.
//! * [`SinkOptions`] / [`SinkStats`] — the bounds, and what the sink did.
//!
//! # Events and conditions
//!
//! A raised signal is an event: it expires with the window (`max_age`, 60 s by default) or is
//! evicted when `capacity` (1000 by default) newer ones arrive. A condition that holds until
//! something changes (`circuit.open`, `backpressure.db`) is a [`Hold`]. Both answer queries
//! alike; [`Watch`] tells when either changes.
//!
//! # Locking
//!
//! One mutex guards the window and its indexes; every critical section is short and runs no
//! user code. Listeners run after it is released, so a listener may raise again. Each
//! subscription's ring has a mutex of its own, taken under the sink's (never the other way).
//!
//! # Lifetimes
//!
//! `SignalSink` clones and [`Hold`]s keep a sink alive; subscriptions, watches, listeners and
//! handlers never do (see the crate docs). All of them but the hold register through one guard
//! (`registration.rs`) that unregisters when dropped.

mod error;
mod forward;
mod hold;
mod inner;
mod listener;
mod options;
mod query;
mod registration;
mod routes;
#[allow(clippy::module_inception)]
mod signal;
mod sink;
mod stamp;
mod state;
mod stats;
mod subscription;
mod watch;

pub use error::{HandlerError, PropagationError, RaiseError};
pub use hold::Hold;
pub use listener::{Handler, Listener};
pub use options::{ErrorCallback, HandlerFailure, SinkConfigError, SinkOptions};
pub use signal::{HeaderValue, Headers, MAX_HEADER_KEY_LEN, Signal, SignalBuilder};
pub use sink::SignalSink;
pub use stats::{SinkStats, SubscriberStats};
pub use subscription::Subscription;
pub use watch::Watch;

/// The leaf signal a clear raises (with a `count` header) when it removed anything.
pub(crate) const SINK_CLEARED: &str = "sink.cleared";
