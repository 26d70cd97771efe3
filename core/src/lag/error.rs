//! What a send or a read of a [`Ring`](super::Ring) can fail with, and what a ring reports.

use std::fmt;

/// Why a send did not buffer its value; the value is given back.
///
/// An error for any value type: its `Debug` does not show the value. Non-exhaustive: match
/// the variants you handle and keep a catch-all.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError<T> {
    /// The ring is closed: the reader went away or its source closed it.
    #[error("the receiver is closed: it takes no more values")]
    Closed(T),
    /// The deadline passed while the bounded buffer was full ([`Overflow::Wait`](crate::Overflow::Wait)).
    #[error(
        "the receiver's buffer stayed full until the send's deadline: read faster, give it a bigger buffer or a longer deadline"
    )]
    TimedOut(T),
    /// [`Ring::push_blocking`](super::Ring::push_blocking) was called on a thread that runs
    /// a tokio runtime, where waiting for room would stall the runtime (and, on a
    /// current-thread runtime, never end: the reader could not run).
    #[error(
        "push_blocking was called inside a tokio runtime, where waiting would stall it: use `push(..).await` there"
    )]
    InsideRuntime(T),
    /// [`Ring::push`](super::Ring::push) with a deadline was polled outside a tokio runtime:
    /// the deadline is kept by tokio's timer, which needs one (without a deadline any
    /// executor may drive a push).
    #[error(
        "push with a deadline was polled outside a tokio runtime, whose timer keeps the deadline: push inside a runtime, or without a deadline"
    )]
    NoRuntime(T),
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed(_) => "Closed(..)",
            Self::TimedOut(_) => "TimedOut(..)",
            Self::InsideRuntime(_) => "InsideRuntime(..)",
            Self::NoRuntime(_) => "NoRuntime(..)",
        })
    }
}

impl<T> PushError<T> {
    /// The value that was not buffered.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Closed(value)
            | PushError::TimedOut(value)
            | PushError::InsideRuntime(value)
            | PushError::NoRuntime(value) => value,
        }
    }
}

/// Why [`Ring::try_push`](super::Ring::try_push) did not buffer its value; the value is given back.
///
/// An error for any value type: its `Debug` does not show the value.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryPushError<T> {
    /// The ring is closed.
    #[error("the receiver is closed: it takes no more values")]
    Closed(T),
    /// The bounded buffer is full and the ring's overflow policy is [`Overflow::Wait`](crate::Overflow::Wait): send
    /// with [`Ring::push`](super::Ring::push) to wait for room.
    #[error("the receiver's buffer is full: wait for room with `push`")]
    Full(T),
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed(_) => "Closed(..)",
            Self::Full(_) => "Full(..)",
        })
    }
}

impl<T> TryPushError<T> {
    /// The value that was not buffered.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Closed(value) | TryPushError::Full(value) => value,
        }
    }
}

/// Why [`Cursor::try_recv`](super::Cursor::try_recv) returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is buffered now; more may come.
    #[error("nothing is buffered now")]
    Empty,
    /// The ring is closed and everything buffered was read: nothing more will come.
    #[error("the ring is closed and drained")]
    Closed,
}

/// What a [`Ring`](super::Ring) did and holds, for one reader
/// ([`Cursor::stats`](super::Cursor::stats)) or summed over its readers
/// ([`Ring::stats`](super::Ring::stats)).
///
/// For one reader, `pushed == delivered + dropped + expired + buffered` whenever it is between
/// two reads. Values lost before they reached the ring ([`Ring::add_lag`](super::Ring::add_lag))
/// are counted in `lost` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RingStats {
    /// Values pushed while the reader was there (for the whole ring: values pushed while it
    /// had at least one reader).
    pub pushed: u64,
    /// Values the reader received.
    pub delivered: u64,
    /// Values dropped from the full buffer to make room ([`Overflow::DropOldest`](crate::Overflow)).
    pub dropped: u64,
    /// Values whose expiry passed while they were buffered: skipped, never delivered.
    pub expired: u64,
    /// Values lost before reaching the buffer, as told by [`Ring::add_lag`](super::Ring::add_lag).
    pub lost: u64,
    /// Sends that gave up at their deadline while the buffer was full (those values never
    /// entered it and were given back to their senders): for one reader, those while it was
    /// there; for the whole ring, all of them.
    pub timed_out: u64,
    /// Values buffered for the reader now, including those it took in a batch and has not
    /// read yet (for the whole ring: the most any reader has buffered).
    pub buffered: usize,
    /// The size of the values the ring holds now, plus those the reader took in a batch, as
    /// measured by the ring's weigher ([`Ring::with_weigher`](super::Ring::with_weigher)); 0
    /// without one.
    pub bytes: usize,
}
