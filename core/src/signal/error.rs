//! Errors of raising, holding and handling signals.

use crate::{Name, NameError};

/// Why a signal was not raised (or a condition not held).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RaiseError {
    /// The name breaks the naming rule.
    #[error("bad signal name: {0}")]
    Name(#[from] NameError),
    /// The payload is larger than the sink accepts.
    #[error(
        "signal payload is {len} bytes, more than this sink's max_payload of {max}: send a reference to the data instead, or raise the limit"
    )]
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The sink's limit.
        max: usize,
    },
    /// The signal has more headers than the sink accepts.
    #[error(
        "signal has {count} headers, more than this sink's max_headers of {max}: carry the rest in the payload, or raise the limit"
    )]
    TooManyHeaders {
        /// How many headers the signal had.
        count: usize,
        /// The sink's limit.
        max: usize,
    },
    /// A header key is empty, or longer than [`MAX_HEADER_KEY_LEN`](crate::MAX_HEADER_KEY_LEN)
    /// bytes (the bus carries no longer key, so such a signal could not cross it).
    #[error(
        "header key `{key}` is {reason}: give each header a short, non-empty key (at most 255 bytes)"
    )]
    BadHeaderKey {
        /// The key (its first 64 characters, `…` after them when it was longer).
        key: String,
        /// What is wrong with it: `empty`, or `N bytes long`.
        reason: String,
    },
    /// The sink already holds as many conditions as it may.
    #[error(
        "this sink already holds as many conditions as its max_holds ({max}) allows: release some holds or raise the limit"
    )]
    TooManyHolds {
        /// The sink's limit.
        max: usize,
    },
    /// A time to live of zero: the signal would never be live, yet it would take a place in
    /// the window (evicting a live signal from a full one).
    #[error(
        "signal time to live is zero: it would never be live; give a positive time to live, or raise nothing"
    )]
    ZeroTimeToLive,
    /// A propagation guard refused a signal raised as caused by another.
    #[error(transparent)]
    Propagation(#[from] PropagationError),
}

/// Why [`SignalSink::raise_caused`](crate::SignalSink::raise_caused) refused a signal.
///
/// These guards keep signal-driven reactions (a listener raising in response to a signal) from
/// looping forever.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropagationError {
    /// The chain of causes is already as long as the sink allows.
    #[error(
        "signal `{name}` would be at depth {depth}, past this sink's max_depth of {max}: a reaction chain is probably looping"
    )]
    TooDeep {
        /// The refused signal's name.
        name: Name,
        /// The depth it would have had (1 for a signal raised on its own).
        depth: usize,
        /// The sink's limit.
        max: usize,
    },
    /// The signal's name already appears among its causes.
    #[error("signal `{name}` would close a cycle: it is already among its own causes")]
    Cycle {
        /// The refused signal's name.
        name: Name,
    },
    /// The cause is a terminal signal, which ends its chain.
    #[error(
        "signal `{name}` was raised as caused by terminal signal `{cause}`, which ends its chain"
    )]
    AfterTerminal {
        /// The refused signal's name.
        name: Name,
        /// The terminal cause.
        cause: Name,
    },
    /// The cause is a leaf signal, which causes nothing.
    #[error("signal `{name}` was raised as caused by leaf signal `{cause}`, which causes nothing")]
    FromLeaf {
        /// The refused signal's name.
        name: Name,
        /// The leaf cause.
        cause: Name,
    },
}

/// An async handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// There is no tokio runtime to run the handler on.
    #[error(
        "no tokio runtime: register async signal handlers from inside a runtime (e.g. #[tokio::main])"
    )]
    NoRuntime,
    /// The concurrency limit was zero.
    #[error("handler concurrency is zero: it must be at least 1")]
    ZeroConcurrency,
}
