//! `SinkStats`: what a sink has done and what it holds, as one consistent snapshot.

/// Counters kept under the sink's lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) raised: u64,
    pub(crate) expired: u64,
    pub(crate) evicted: u64,
    pub(crate) retracted: u64,
    pub(crate) cleared: u64,
    pub(crate) holds_acquired: u64,
    pub(crate) holds_released: u64,
    pub(crate) names_reclaimed: u64,
    pub(crate) memo_recomputes: u64,
    pub(crate) memo_resets: u64,
    /// Drops of the subscriptions that have closed (see `SinkStats::subscriber_dropped`).
    pub(crate) closed_subscriber_dropped: u64,
}

/// One subscription's delivery counters.
///
/// `delivered` counts what entered its buffer; each of those is then read, dropped, expired
/// or still buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubscriberStats {
    /// The pattern it subscribed with.
    pub pattern: String,
    /// Signals pushed into its buffer.
    pub delivered: u64,
    /// Signals dropped because its buffer was full (reported to it as `Lagged`).
    pub dropped: u64,
    /// Signals whose time ran out while they waited in its buffer: skipped, never handed
    /// out, and not reported as `Lagged`.
    pub expired: u64,
    /// Signals waiting in its buffer now.
    pub buffered: usize,
}

/// A consistent snapshot of a sink's counters and table sizes, taken under its lock.
///
/// The counters always add up: `raised == live + expired + evicted + retracted + cleared`,
/// and `holds_acquired == held + holds_released`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SinkStats {
    /// Signals raised (held conditions not included).
    pub raised: u64,
    /// Raised signals that reached their max age or own expiry.
    pub expired: u64,
    /// Raised signals evicted because the window was at capacity.
    pub evicted: u64,
    /// Raised signals removed by `retract*`.
    pub retracted: u64,
    /// Raised signals removed by `clear*`.
    pub cleared: u64,
    /// Raised signals live now.
    pub live: usize,
    /// Held conditions live now.
    pub held: usize,
    /// Holds ever taken.
    pub holds_acquired: u64,
    /// Holds released (dropped or released explicitly).
    pub holds_released: u64,
    /// Slots in the window now, tombstones of removed signals included (at most
    /// `2 × live + 64`: tombstones are compacted away).
    pub window_slots: usize,
    /// Entries in the expiry queue of signals with their own expiry (at most
    /// `2 × capacity + 64`).
    pub expiry_entries: usize,
    /// Distinct names interned now (live or kept idle for reuse).
    pub interned_names: usize,
    /// Interned names with no live signal now.
    pub idle_names: usize,
    /// Interned names reclaimed so far.
    pub names_reclaimed: u64,
    /// Patterns memoised now.
    pub memo_entries: usize,
    /// Memo entries computed (first use, or after the set of names changed).
    pub memo_recomputes: u64,
    /// Times the memo was forgotten whole because it reached its bound.
    pub memo_resets: u64,
    /// Live subscriptions, the queue of each async handler
    /// ([`on_signal_async`](crate::SignalSink::on_signal_async)) included: a handler reads
    /// one subscription, listed in `subscribers` too.
    pub subscriptions: usize,
    /// Live watches.
    pub watches: usize,
    /// Live listeners ([`on_signal`](crate::SignalSink::on_signal)), forwardings
    /// ([`forward_to`](crate::SignalSink::forward_to)) included. Async handlers are counted
    /// in `subscriptions`.
    pub listeners: usize,
    /// Listener or handler failures reported to the error callback.
    pub handler_failures: u64,
    /// Signals dropped by async handlers whose queue was full. A handler's queue is a
    /// subscription, so these are counted in `subscriber_dropped` too.
    pub handler_dropped: u64,
    /// Forwarded copies of this sink's signals that a target of
    /// [`SignalSink::forward_to`](crate::SignalSink::forward_to) refused (e.g. a payload over
    /// the target's `max_payload`). Each is also reported to this sink's error callback and
    /// counted in `handler_failures`. (Absent from serialised stats of older versions: read
    /// as 0.)
    #[cfg_attr(feature = "serde", serde(default))]
    pub forward_refused: u64,
    /// Signals dropped because a subscription's buffer was full, over every subscription
    /// since the sink was made, closed ones included: the sum of `subscribers[..].dropped`
    /// plus what the closed subscriptions had dropped. It never goes down. (Absent from
    /// serialised stats of older versions: read as 0.)
    #[cfg_attr(feature = "serde", serde(default))]
    pub subscriber_dropped: u64,
    /// Per subscription: delivered, dropped, expired and buffered.
    pub subscribers: Vec<SubscriberStats>,
}
