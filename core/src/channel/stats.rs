//! What a channel and each of its subscribers did.

/// Whether a channel still accepts messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ChannelState {
    /// Sends are accepted.
    Open,
    /// Closed by [`Channel::close`](super::Channel::close) or by dropping its last handle:
    /// sends fail with [`ChannelClosed`](super::ChannelClosed); subscribers drain what they
    /// hold, then end.
    Closed,
}

/// Per-subscriber delivery counts. For every subscriber,
/// `sent = delivered + dropped + expired + buffered` while it is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DeliveryStats {
    /// The subscriber's id (also in [`DeliveryError`](super::DeliveryError)).
    pub subscriber: u64,
    /// Messages put into its buffer.
    pub sent: u64,
    /// Messages it read (for a callback consumer: handed to the callback, even if it panicked).
    pub delivered: u64,
    /// Messages dropped from its full buffer ([`Overflow::DropOldest`](crate::Overflow)).
    pub dropped: u64,
    /// Messages that expired in its buffer and were skipped.
    pub expired: u64,
    /// Sends that timed out waiting for room in its buffer (those messages never entered it).
    pub timed_out: u64,
    /// Messages on which its consumer callback panicked.
    pub failed: u64,
    /// Messages buffered now.
    pub buffered: usize,
}

/// A snapshot of a channel: its state, how many messages were sent, and each live
/// subscriber's [`DeliveryStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ChannelStats {
    /// Open or closed.
    pub state: ChannelState,
    /// Sends begun while the channel was open (`send`, `send_blocking`, a
    /// [`ChannelSink`](super::ChannelSink)), whether or not anyone was subscribed and
    /// whatever their outcome: one that timed out ([`SendError::TimedOut`](super::SendError),
    /// message given back), that lost a race with `close`, or that its caller cut short
    /// counts too. A send refused before it began (the channel closed, `send_blocking`
    /// inside a runtime, no runtime for a timed send) does not. Per-subscriber outcomes are
    /// in `subscribers`.
    pub sent: u64,
    /// Sends begun while nobody was subscribed (they reached no one).
    pub unheard: u64,
    /// The subscribers now registered, oldest first.
    pub subscribers: Vec<DeliveryStats>,
}
