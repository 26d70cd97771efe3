//! Errors and failure records of batching.

use std::fmt;

/// A [`Batcher`](super::Batcher) that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchConfigError {
    /// `max_size` was 0.
    #[error("batch max_size is 0: a batch must be allowed at least one item")]
    ZeroMaxSize,
    /// `flush_interval` was zero.
    #[error("batch flush_interval is zero: give a positive interval such as 100ms")]
    ZeroInterval,
    /// `buffer` was 0.
    #[error("batch buffer is 0: give room for at least one pending item")]
    ZeroBuffer,
    /// `buffer` (given, or 4 × `max_size` by default) was beyond what the batcher can hold.
    #[error(
        "batch buffer of {buffer} items is too large: at most {max} pending items fit (give a smaller buffer, or a smaller max_size when the buffer is left to its default of 4 × max_size)"
    )]
    BufferTooLarge {
        /// The buffer asked for.
        buffer: usize,
        /// The largest buffer allowed.
        max: usize,
    },
    /// Built outside a tokio runtime.
    #[error(
        "a batcher needs a tokio runtime: create it inside one (for instance in #[tokio::main])"
    )]
    NoRuntime,
}

/// The item given back by a push to a closed batcher.
///
/// An error for any item type: its `Debug` does not show the item.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("the batcher is closed: the item was not accepted and is returned")]
pub struct BatchClosed<T>(pub T);

impl<T> fmt::Debug for BatchClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchClosed(..)")
    }
}

/// Why [`Batcher::try_push`](super::Batcher::try_push) gave the item back.
///
/// An error for any item type: its `Debug` does not show the item.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryPushError<T> {
    /// The buffer is full: try again later, or use `push(..).await`.
    #[error("the batcher's buffer is full: wait with push(..).await or retry later")]
    Full(T),
    /// The batcher is closed.
    #[error("the batcher is closed: the item was not accepted and is returned")]
    Closed(T),
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> TryPushError<T> {
    /// The item that was not accepted.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }
}

/// What went wrong in a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOutcome<E> {
    /// The handler returned this error.
    Error(E),
    /// The handler panicked with this message (the batcher carried on).
    Panicked(String),
}

impl<E: fmt::Display> fmt::Display for HandlerOutcome<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(e) => write!(f, "{e}"),
            Self::Panicked(message) => write!(f, "handler panicked: {message}"),
        }
    }
}

/// A batch whose handler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFailure<E> {
    /// The batch's number (1 for the first batch handed to the handler).
    pub batch: u64,
    /// How many items it had.
    pub size: usize,
    /// The error or panic.
    pub outcome: HandlerOutcome<E>,
}

impl<E: fmt::Display> fmt::Display for BatchFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch {} of {} items failed: {}",
            self.batch, self.size, self.outcome
        )
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for BatchFailure<E> {}
