//! The transport: how frames reach other peers. One private interface, so that a second
//! transport (NATS, across machines) can slot in behind the same `Bus` API.

use std::future::Future;

use ephemeral::Name;
use tokio::time::Instant;

#[cfg(doc)]
use crate::frame::Interest;
use crate::frame::{self, MessageRef};
use crate::{Deadline, PeerInfo};

mod outbound;
mod unix;

pub(crate) use unix::{FRAME_OVERHEAD, UnixTransport};

/// A frame to queue for a peer: bytes encoded already, or a message encoded straight into
/// each peer's queue (no intermediate buffer on the publishing path).
#[derive(Clone, Copy)]
pub(crate) enum Encoded<'a> {
    /// A whole frame, length prefix included.
    Bytes(&'a [u8]),
    /// A message to encode.
    Message(&'a MessageRef<'a>),
}

impl Encoded<'_> {
    /// Appends the frame to `out`.
    pub(crate) fn write_to(self, out: &mut Vec<u8>) {
        match self {
            Encoded::Bytes(bytes) => out.extend_from_slice(bytes),
            Encoded::Message(message) => frame::encode_message(message, out),
        }
    }
}

/// What the bus needs from a transport.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends one message frame to every peer subscribed to `topic`, waiting for a full peer
    /// until `deadline` at most; returns the number of remote subscriptions reached.
    fn send(
        &self,
        topic: &Name,
        frame: Encoded<'_>,
        deadline: &Deadline,
    ) -> impl Future<Output = usize> + Send;

    /// The peers serving requests on `topic` (registered with [`Interest::Serve`] for exactly
    /// that name; a subscriber or observer never is one), sorted by id.
    fn servers_of(&self, topic: &Name) -> Vec<u64>;

    /// Sends one encoded request or reply frame to peer `peer` only; false if it is not
    /// connected or stayed full past `deadline`.
    fn send_to(
        &self,
        peer: u64,
        frame: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = bool> + Send;

    /// Sends one encoded request or reply frame, as a copy, to every peer observing `topic`
    /// ([`Interest::Observe`]) except `except` (its addressee, which copies it to its own
    /// observers); returns how many peers it reached.
    fn send_copies(
        &self,
        topic: &Name,
        frame: &[u8],
        deadline: Instant,
        except: u64,
    ) -> impl Future<Output = usize> + Send;

    /// Sends one encoded broadcast frame (the bus's own traffic) to every peer with an
    /// internal subscription ([`Interest::Internal`]) matching `topic`; returns how many
    /// remote subscriptions it reached.
    fn send_internal(
        &self,
        topic: &Name,
        frame: &[u8],
        deadline: Instant,
    ) -> impl Future<Output = usize> + Send;

    /// Every connected peer with what it announced.
    fn peer_list(&self) -> Vec<PeerInfo>;

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
