//! Typed channels: fan-out of messages from many publishers to many subscribers.
//!
//! * [`Channel`] — send (async or blocking), subscribe, close, stats.
//! * [`Subscriber`] — one subscriber's `Stream<Item = Result<T, Lagged>>`.
//! * [`Consumer`] — a callback on every message, on its own task, panics caught.
//! * [`ChannelOptions`] — default buffer, overflow, send timeout, expiry, error callback.
//!
//! Channels follow the crate's one lag model ([`Buffer`](crate::Buffer),
//! [`Overflow`](crate::Overflow), [`Lagged`](crate::Lagged)): each subscriber reads a
//! [`lag::Ring`](crate::lag::Ring), the same ring as a sink subscription's, shared with
//! subscribers of the same buffer and policy wherever each still sees exactly what a buffer
//! of its own would give it; so a sender contends only per ring, never on a channel-wide
//! lock.
//!
//! # Delivery guarantees
//!
//! * A message goes to every subscriber registered when `send` was called, never to one that
//!   subscribed later. Messages from one publisher (one task calling `send` in sequence)
//!   arrive in the order sent, at every subscriber.
//! * Nothing is lost silently: with `Wait` nothing is lost at all; with `DropOldest` the
//!   subscriber is told with `Lagged(n)`; an expired message is counted in the subscriber's
//!   stats; a timed-out send returns the message and reports the missed subscribers; a
//!   panicking consumer callback is reported to the error callback.
//!
//! # When handles go away
//!
//! * **All `Channel` handles dropped** (all publishers gone): the channel closes; each
//!   subscriber drains what it holds, then its stream ends (`None`).
//! * **All subscribers dropped**: sends succeed and return `Ok(0)` (counted as `unheard`);
//!   a sender waiting for room in a subscriber's buffer carries on when that subscriber is
//!   dropped. Nothing ever waits for a subscriber that no longer exists.

#[allow(clippy::module_inception)]
mod channel;
mod consumer;
mod error;
mod options;
mod shared;
mod sink;
mod stats;
mod subscriber;

pub use channel::Channel;
pub use consumer::Consumer;
pub use error::{
    ChannelClosed, ChannelConfigError, DeliveryError, DeliveryFailure, NoRuntime, SendError,
};
pub use options::{ChannelOptions, DeliveryErrorCallback};
pub use sink::ChannelSink;
pub use stats::{ChannelState, ChannelStats, DeliveryStats};
pub use subscriber::Subscriber;
