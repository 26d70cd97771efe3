//! The transport: how frames reach other peers. One private interface, so that a second
//! transport (NATS, across machines) can slot in behind the same `Bus` API.

use std::future::Future;

use ephemeral::Name;
use tokio::time::Instant;

mod outbound;
mod unix;

pub(crate) use unix::{FRAME_OVERHEAD, UnixTransport};

/// What the bus needs from a transport.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends one encoded message frame to every peer subscribed to `topic`, waiting for a
    /// full peer until `deadline` at most; returns the number of remote subscriptions reached.
    fn send(
        &self,
        topic: &Name,
        frame: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = usize> + Send;

    /// The peers serving requests on `topic`: those subscribed to exactly that name (as
    /// `Bus::serve` does), not merely to a pattern matching it, sorted by id.
    fn servers_of(&self, topic: &Name) -> Vec<u64>;

    /// Sends one encoded message frame to peer `peer` only; false if it is not connected or
    /// stayed full past `deadline`.
    fn send_to(
        &self,
        peer: u64,
        topic: &Name,
        frame: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = bool> + Send;

    /// Resolves when peer `peer` is gone (at once if it is not connected).
    fn gone(&self, peer: u64) -> impl Future<Output = ()> + Send + 'static;

    /// Tells the other peers this peer's current subscriptions and waits (bounded) until
    /// they route by them.
    fn announce(&self) -> impl Future<Output = ()> + Send;

    /// Like [`announce`](Self::announce), without waiting (used from `Drop`).
    fn announce_now(&self);

    /// How many other peers are connected.
    fn peer_count(&self) -> usize;

    /// Counters: (frames refused as corrupt or of another version, messages dropped for
    /// peers that stayed full past the bounded wait).
    fn counters(&self) -> (u64, u64);

    /// Leaves the bus: stops all tasks and removes this peer's files.
    fn close(&self);
}
