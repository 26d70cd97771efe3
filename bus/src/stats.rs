//! `BusStats`: the counters of one bus handle.

use std::time::Duration;

use crate::{HandlerStats, SubscriptionStats, TopicStats};

/// Counters of one bus handle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BusStats {
    /// Other peers connected now.
    pub peers: usize,
    /// Messages published through this handle (a publish refused with an error is not
    /// counted).
    pub published: u64,
    /// Frames refused because they were corrupt or of another format version.
    pub corrupt_frames: u64,
    /// Messages this handle dropped for a peer that stayed full past the bounded wait.
    pub dropped_sends: u64,
    /// Callbacks (of [`Bus::subscribe_fn`](crate::Bus::subscribe_fn)) that panicked.
    pub callback_panics: u64,
    /// Replies that arrived after their request gave up (timed out), dropped.
    pub late_replies: u64,
    /// Each subscription, server and observer of this handle (not the bus's own listeners:
    /// retained state's notices and inspection).
    pub subscriptions: Vec<SubscriptionStats>,
    /// Per topic: messages published and received (at most 1024 topics, then `(other)`).
    pub topics: Vec<TopicStats>,
    /// Each running server and subscription callback, with its timings.
    pub handlers: Vec<HandlerStats>,
    /// Time since this handle opened the bus (for rates between two snapshots).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "uptime_ms", with = "ephemeral::serde_ms::duration")
    )]
    pub uptime: Duration,
}

/// Another peer of the bus, as it announced itself: what it subscribes to, serves and
/// observes (see [`Bus::peer_list`](crate::Bus::peer_list)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerInfo {
    /// The peer's id (its files in the bus directory are named after it).
    pub id: u64,
    /// The patterns of its subscriptions, one per subscription.
    pub subscriptions: Vec<String>,
    /// The topics it serves requests on.
    pub serves: Vec<String>,
    /// The patterns of its observers of requests and replies.
    pub observes: Vec<String>,
}
