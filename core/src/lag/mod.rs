//! The one model of buffers, overflow and lag shared by sink subscriptions, channels and the bus.
//!
//! A receiver has a [`Buffer`]: bounded (`n ≥ 1` items) or unbounded. When a bounded buffer is
//! full, the sender's [`Overflow`] policy decides: [`Overflow::Wait`] (the sender waits for room,
//! nothing is lost) or [`Overflow::DropOldest`] (the sender never waits; the oldest buffered
//! item is dropped). A receiver that lost items is told so: the next item it reads is
//! `Err(Lagged(n))`, `n` being how many were dropped since the last report, and delivery then
//! carries on with the oldest retained item. No receiver ever misses silently.
//!
//! Expiry is honoured at delivery too: a value whose time to live ran out while it waited in
//! a buffer is skipped and counted as expired (apart from lag), never handed out.
//!
//! [`Ring`] is the one buffer that implements this model, shared by the readers of one stream,
//! each reading at its own [`Cursor`] (tokio's broadcast design): a value is stored once
//! whatever the number of readers, and each reader sees exactly what a buffer of its own of
//! the same size would give it, with one exception: a push that gives up at its deadline
//! misses every reader of the ring, those with room too, so readers that each need a
//! deadline of their own need rings of their own. Every receiver of the crate reads one: a
//! sink [`Subscription`](crate::Subscription) (always `DropOldest`, so `raise` never waits;
//! subscriptions with the same pattern and buffer share a ring) and a channel
//! [`Subscriber`](crate::Subscriber) (either policy, with a send timeout; subscribers with the
//! same buffer and policy share a ring, except bounded `Wait` ones on a channel with a send
//! timeout, which have one each). It is public so that receivers of other transports behave
//! the same.

use std::fmt;
use std::num::NonZeroUsize;

mod cursor;
mod error;
mod ring;
mod slots;

pub use cursor::Cursor;
pub use error::{PushError, RingStats, TryPushError, TryRecvError};
pub(crate) use ring::ReaderShared;
pub use ring::Ring;

/// How many items a receiver may hold before its sender's [`Overflow`] policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// At most this many items.
    Bounded(NonZeroUsize),
    /// No bound: the sender never waits and nothing is dropped, at the price of memory.
    Unbounded,
}

impl Buffer {
    /// A bounded buffer of `n` items.
    ///
    /// # Errors
    ///
    /// Returns [`ZeroBuffer`] when `n` is zero: a receiver needs room for at least one item.
    pub fn bounded(n: usize) -> Result<Self, ZeroBuffer> {
        NonZeroUsize::new(n).map(Buffer::Bounded).ok_or(ZeroBuffer)
    }

    /// The bound, or `None` for [`Buffer::Unbounded`].
    #[must_use]
    pub fn capacity(self) -> Option<usize> {
        match self {
            Buffer::Bounded(n) => Some(n.get()),
            Buffer::Unbounded => None,
        }
    }
}

impl Default for Buffer {
    /// 1024 items.
    fn default() -> Self {
        Buffer::Bounded(NonZeroUsize::new(1024).expect("1024 is not zero"))
    }
}

/// A bounded [`Buffer`] of zero items was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a bounded buffer needs room for at least one item: use Buffer::bounded(1) or more")]
pub struct ZeroBuffer;

/// What a sender does when a receiver's bounded [`Buffer`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Overflow {
    /// The sender waits for room; nothing is lost. Where offered, the wait can be bounded by a
    /// timeout, after which the send fails with a typed error.
    #[default]
    Wait,
    /// The sender never waits: the receiver's oldest buffered item is dropped and counted, and
    /// the receiver is told with [`Lagged`].
    DropOldest,
}

/// `n` items were lost for this receiver since it was last told.
///
/// Receivers are streams of `Result<T, Lagged>`; after a `Lagged` item, delivery carries on
/// with the oldest item still buffered. The loss is most often a full buffer
/// ([`Overflow::DropOldest`]), but not only: a channel send cut short by its caller, or a
/// transport's gap (a bus or NATS receiver that fell behind, a room trimmed by age), is
/// reported the same way, so the message does not name one cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error(
    "receiver lagged: {0} items were lost before it read them; delivery carries on with the oldest one still buffered (read faster, or give it a bigger buffer)"
)]
pub struct Lagged(pub u64);

impl Lagged {
    /// How many items were dropped.
    #[must_use]
    pub fn count(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffer::Bounded(n) => write!(f, "bounded({n})"),
            Buffer::Unbounded => f.write_str("unbounded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message names no single cause (it said "because its buffer was full", also for a
    /// send cut short or a transport's gap) and says what to do.
    #[test]
    fn lagged_says_what_was_lost_and_what_to_do() {
        let text = Lagged(3).to_string();
        assert!(
            text.starts_with("receiver lagged: 3 items were lost"),
            "{text}"
        );
        assert!(!text.contains("because its buffer was full"), "{text}");
        assert!(text.contains("read faster"), "{text}");
    }

    #[test]
    fn zero_is_refused() {
        assert_eq!(Buffer::bounded(0), Err(ZeroBuffer));
        assert_eq!(Buffer::bounded(4).unwrap().capacity(), Some(4));
        assert_eq!(Buffer::Unbounded.capacity(), None);
    }
}
