//! The enqueue error of [`SignalAware`](super::SignalAware).

use std::fmt;

use ephemeral::EnqueueError;

/// Why [`SignalAware`](super::SignalAware) did not accept an item. Always gives the item back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SignalAwareError<T> {
    /// A signal matching a `refuse_on` pattern is live: intake is refused until it expires or
    /// is retracted.
    #[error(
        "intake refused while signal `{signal}` (matching `{pattern}`) is live: retry after it expires or is retracted"
    )]
    Refused {
        /// The item.
        item: T,
        /// The name of the live signal that caused the refusal (the latest matching one).
        signal: String,
        /// The `refuse_on` pattern it matched.
        pattern: String,
    },
    /// The coordinator itself refused the item (closed, or full for `try_enqueue`).
    #[error(transparent)]
    Enqueue(#[from] EnqueueError<T>),
}

impl<T> SignalAwareError<T> {
    /// The item that was not accepted.
    pub fn into_inner(self) -> T {
        match self {
            Self::Refused { item, .. } => item,
            Self::Enqueue(e) => e.into_inner(),
        }
    }

    /// The refusing signal's name, for [`Refused`](Self::Refused).
    #[must_use]
    pub fn signal(&self) -> Option<&str> {
        match self {
            Self::Refused { signal, .. } => Some(signal),
            Self::Enqueue(_) => None,
        }
    }
}

impl<T> fmt::Debug for SignalAwareError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused {
                signal, pattern, ..
            } => f
                .debug_struct("Refused")
                .field("signal", signal)
                .field("pattern", pattern)
                .finish_non_exhaustive(),
            Self::Enqueue(e) => f.debug_tuple("Enqueue").field(e).finish(),
        }
    }
}
