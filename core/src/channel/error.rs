//! The errors of channels: sending, consuming, configuring, and failed deliveries.

use std::fmt;

/// A message was sent to a closed channel; the message is given back.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelClosed<T>(pub T);

impl<T> ChannelClosed<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for ChannelClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelClosed(..)")
    }
}

impl<T> fmt::Display for ChannelClosed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the channel is closed: no more messages can be sent (create a new channel)")
    }
}

impl<T> std::error::Error for ChannelClosed<T> {}

/// Why a send failed. Every variant gives the message back, so nothing is lost silently.
#[non_exhaustive]
pub enum SendError<T> {
    /// The channel was closed (explicitly, or its last handle was dropped).
    Closed(ChannelClosed<T>),
    /// The send timeout passed before every subscriber had room.
    TimedOut {
        /// The message.
        value: T,
        /// How many subscribers did receive it.
        reached: usize,
        /// How many subscribers did not (each also reported to the error callback).
        missed: usize,
    },
    /// [`Channel::send_blocking`](super::Channel::send_blocking) was called on a thread that
    /// runs a tokio runtime, where blocking would stall the runtime.
    InsideRuntime(T),
    /// [`Channel::send`](super::Channel::send) on a channel with a
    /// [`send_timeout`](super::ChannelOptions::send_timeout) was polled outside a tokio
    /// runtime (under another executor), where there is no timer to bound its wait. Refused
    /// before anything is sent, whether or not a buffer is full.
    NoRuntime(T),
    /// [`start_send`](futures::Sink::start_send) on a [`ChannelSink`](super::ChannelSink)
    /// whose previous message is still being sent: `poll_ready` was not called, or did not
    /// return ready, in between (the `Sink` contract asks for it; `SinkExt::send` and `feed`
    /// do it). This message is given back; the one in flight is still sent.
    NotReady(T),
}

impl<T> SendError<T> {
    /// The message that was not (fully) delivered.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(ChannelClosed(value))
            | SendError::TimedOut { value, .. }
            | SendError::InsideRuntime(value)
            | SendError::NoRuntime(value)
            | SendError::NotReady(value) => value,
        }
    }

    /// Whether this is [`SendError::Closed`].
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::TimedOut {
                reached, missed, ..
            } => f
                .debug_struct("TimedOut")
                .field("reached", reached)
                .field("missed", missed)
                .finish_non_exhaustive(),
            SendError::InsideRuntime(_) => f.write_str("InsideRuntime(..)"),
            SendError::NoRuntime(_) => f.write_str("NoRuntime(..)"),
            SendError::NotReady(_) => f.write_str("NotReady(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(closed) => fmt::Display::fmt(closed, f),
            SendError::TimedOut {
                reached, missed, ..
            } => write!(
                f,
                "send timed out: {missed} subscriber(s) had no room in time ({reached} got the \
                 message); read faster, enlarge their buffers, or raise the send timeout"
            ),
            SendError::InsideRuntime(_) => f.write_str(
                "send_blocking was called inside a tokio runtime, where it would stall the \
                 runtime: use `send(..).await` there",
            ),
            SendError::NoRuntime(_) => f.write_str(
                "send with a send timeout was polled outside a tokio runtime, which it needs \
                 for its timer: send inside a runtime, or use send_blocking on a plain thread",
            ),
            SendError::NotReady(_) => f.write_str(
                "start_send while the sink's previous message is still being sent: call \
                 poll_ready until it is ready first (SinkExt::send and feed do); this message \
                 was not sent and is given back",
            ),
        }
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        None
    }
}

/// A channel could not be created from its options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelConfigError {
    /// `expire_after` was zero, so every message would expire before anyone could read it.
    #[error("expire_after must be greater than zero: every message would expire unread")]
    ZeroExpiry,
}

/// A callback consumer was started outside a tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a channel consumer needs a tokio runtime to run on: call consume from inside one")]
pub struct NoRuntime;

/// What went wrong in one failed delivery; see [`DeliveryError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// A consumer callback panicked on a message; the message is lost for that consumer,
    /// which carries on with the next one.
    Panicked(String),
    /// The sender's timeout passed while this subscriber's buffer was full.
    TimedOut,
    /// This many messages were lost for the subscriber: its buffer overflowed
    /// ([`Overflow::DropOldest`](crate::Overflow)), or a send cut short by its caller missed it
    /// (see [`Channel::send`](super::Channel::send)). Reported for callback consumers.
    Lagged(u64),
}

/// One failed delivery, as passed to the channel's error callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// The subscriber that did not get the message.
    pub subscriber: u64,
    /// What happened.
    pub failure: DeliveryFailure,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.subscriber;
        match &self.failure {
            DeliveryFailure::Panicked(message) => {
                write!(f, "consumer of subscriber {id} panicked: {message}")
            }
            DeliveryFailure::TimedOut => {
                write!(
                    f,
                    "send to subscriber {id} timed out: its buffer stayed full"
                )
            }
            DeliveryFailure::Lagged(n) => {
                write!(f, "subscriber {id} lagged: {n} messages were dropped")
            }
        }
    }
}

impl std::error::Error for DeliveryError {}
