//! [`Link`]: what a [`Bridge`](crate::Bridge) needs from a transport, so that the bus and
//! NATS (`ephemeral-nats`) bridge signal sinks through one code path.
//!
//! A bridge publishes the signals of its sink as [`Outgoing`] messages and raises the
//! [`Message`]s it receives; headers, origin and hop count, de-duplication, holds as leases
//! and loop prevention are all the bridge's (see [`Bridge`](crate::Bridge)). A link only
//! carries messages, and tells the bridge of every loss it can detect as [`Lagged`]:
//!
//! * the bus from its peers' lag reports (a subscriber that stayed full);
//! * NATS from gaps in each publisher's numbers (a reconnect, a slow consumer cut off).
//!
//! Both deliver what a handle publishes to that handle's own matching subscriptions too; a
//! bridge recognises and skips its own messages by the [`BRIDGE_ID_HEADER`] it stamps.
//!
//! [`BRIDGE_ID_HEADER`]: crate::BRIDGE_ID_HEADER

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use ephemeral::{Lagged, Name, Pattern};
use futures::Stream;

use crate::{Bus, BusError, Message, Outgoing, Subscription};

/// A transport a [`Bridge`](crate::Bridge) can join a signal sink to: publish messages,
/// subscribe to patterns, and say which medium it is.
///
/// Implemented by [`Bus`] (processes of one machine) and by `ephemeral_nats::Nats`
/// (machines, through NATS). Implement it for another medium and [`Bridge::start`] bridges
/// sinks over it with the same rules.
///
/// [`Bridge::start`]: crate::Bridge::start
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
/// use ephemeral_bus::{Bridge, BridgeOptions, Bus};
/// use ephemeral_bus::link::Link;
///
/// let bus = Bus::open("doc-link").await?;
/// assert_eq!(bus.default_hold_lease(), std::time::Duration::from_secs(1));
/// let sink = SignalSink::default();
/// // What `bus.bridge(&sink, "error.*")` does:
/// let bridge = Bridge::start(&bus, &sink, "error.*", BridgeOptions::default()).await?;
/// # drop(bridge);
/// # Ok(())
/// # }
/// ```
pub trait Link: Clone + Send + Sync + 'static {
    /// The transport's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A subscription: the matching messages, and a [`Lagged`] for each loss noticed.
    type Subscription: Stream<Item = Result<Message, Lagged>> + Send + Unpin + 'static;

    /// Identifies the medium: two links with the same `via` carry the same traffic (one
    /// bus directory, one NATS cluster and prefix). A bridge never forwards a signal back
    /// onto the medium it came by.
    fn via(&self) -> u64;

    /// How long a mirrored hold lives without a refresh when
    /// [`BridgeOptions::hold_lease`](crate::BridgeOptions::hold_lease) is not set: 1 s on
    /// the bus, 3 s over NATS (a network has longer hiccups than a machine).
    fn default_hold_lease(&self) -> Duration;

    /// Whether a signal of this name is about this process's own link (NATS's
    /// `nats.offline`, say) and so is never forwarded: another process's link is not down
    /// because this one is. None by default.
    fn is_local_signal(&self, name: &Name) -> bool {
        let _ = name;
        false
    }

    /// Publishes one message to every subscription matching its topic, this handle's own
    /// included.
    fn publish(&self, out: Outgoing) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Subscribes to the messages whose topic matches `pattern`; returns once messages
    /// published afterwards, from anywhere, reach the subscription.
    fn subscribe(
        &self,
        pattern: &Pattern,
    ) -> impl Future<Output = Result<Self::Subscription, Self::Error>> + Send;
}

/// A hash of `parts`, for [`Link::via`].
pub fn via_of(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl Link for Bus {
    type Error = BusError;
    type Subscription = Subscription;

    fn via(&self) -> u64 {
        via_of(self.dir())
    }

    fn default_hold_lease(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn publish(&self, out: Outgoing) -> Result<(), BusError> {
        self.publish_with(out).await.map(|_| ())
    }

    /// As [`Bus::subscribe`], which refuses a pattern matching no name
    /// ([`BusError::EmptyPattern`]) as NATS's link does: a bridge on it would carry nothing.
    async fn subscribe(&self, pattern: &Pattern) -> Result<Subscription, BusError> {
        Bus::subscribe(self, pattern.as_str()).await
    }
}
