//! `Message`: what travels on the bus.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ephemeral::{HeaderValue, Headers, Name};

use crate::IntoPayload;

/// One message received from the bus: a topic, payload bytes, scalar headers, and where and
/// when it came from.
///
/// One type for every transport: `ephemeral-nats` delivers the same `Message` (it builds
/// them with [`Message::new`] and the `with_*` methods).
///
/// On the bus, `id` increases by one with every message a publisher sends, so `(origin, id)`
/// identifies a message and the ids from one publisher arrive in increasing order (over NATS
/// the numbers count per publisher *and topic*). The timestamp is
/// wall-clock time (it left the process); the time-to-live is the *remaining* time when it was
/// sent, never an absolute deadline, so clocks need not agree. Cloning only bumps reference
/// counts.
///
/// The payload is [`Bytes`]: [`payload`](Self::payload) reads it as a slice,
/// [`payload_shared`](Self::payload_shared) and [`into_payload`](Self::into_payload) hand it
/// out without a copy. A message received from another process shares the connection's read
/// buffer (its payload is a slice of it, never copied out), so a message kept for long keeps
/// that part of the buffer alive; copy the payload (`Bytes::copy_from_slice`) to keep a few
/// small payloads for long.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use ephemeral_bus::Bus;
///
/// let bus = Bus::open("doc-doc-message").await?;
/// let mut orders = bus.subscribe("orders.*").await?;
/// bus.publish("orders.created", b"42").await?;
///
/// let message = orders.next().await.unwrap()?;
/// assert_eq!(message.topic(), "orders.created");
/// assert_eq!(message.payload(), b"42");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Set on requests and replies, which travel to one peer (and as copies to observers),
    /// never to subscriptions.
    /// Boxed: routed messages are rare, and a published message stays small in buffers.
    pub(crate) route: Option<Box<Route>>,
    pub(crate) topic: Name,
    pub(crate) payload: Bytes,
    pub(crate) headers: Headers,
    pub(crate) id: u64,
    pub(crate) origin: u64,
    pub(crate) hops: u8,
    pub(crate) timestamp: SystemTime,
    pub(crate) ttl: Option<Duration>,
}

impl Message {
    /// A received message on `topic` with `payload` (anything [`IntoPayload`]: owned
    /// buffers such as `Bytes` or `Vec<u8>` without a copy), as a transport other than the
    /// bus builds it: no headers, id, origin and hops 0, stamped now, no time to live. Set
    /// the rest with the `with_*` methods.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral_bus::{Message, Name};
    ///
    /// let m = Message::new(Name::new("orders.created")?, &b"42"[..])
    ///     .with_id(7, 1)
    ///     .with_ttl(Some(Duration::from_secs(5)));
    /// assert_eq!((m.origin(), m.id(), m.payload()), (7, 1, &b"42"[..]));
    /// # Ok::<(), ephemeral_bus::NameError>(())
    /// ```
    #[must_use]
    pub fn new(topic: Name, payload: impl IntoPayload) -> Self {
        Self {
            route: None,
            topic,
            payload: payload.into_payload(),
            headers: Arc::from(Vec::new()),
            id: 0,
            origin: 0,
            hops: 0,
            timestamp: SystemTime::now(),
            ttl: None,
        }
    }

    /// The same message with these headers.
    #[must_use]
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The same message from publisher `origin`, numbered `id`.
    #[must_use]
    pub fn with_id(mut self, origin: u64, id: u64) -> Self {
        self.origin = origin;
        self.id = id;
        self
    }

    /// The same message, having crossed `hops` bridges.
    #[must_use]
    pub fn with_hops(mut self, hops: u8) -> Self {
        self.hops = hops;
        self
    }

    /// The same message, published at `timestamp` (the publisher's wall clock).
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same message with `ttl` left to live (`None`: it does not expire).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The payload as shared bytes: clone it to keep it (no copy).
    ///
    /// A message from another process is read with its neighbours into one block of the
    /// connection's read buffer (64 KiB), and its payload is a slice of that block: the
    /// block is freed when the last payload cut from it is dropped. To keep a small payload
    /// for long (a cache of the latest value per topic, say), keep a copy
    /// (`Bytes::copy_from_slice(message.payload())`) rather than this, or a few hundred
    /// kept payloads can hold as many blocks.
    #[must_use]
    pub fn payload_shared(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, taken out of the message (no copy; it may share a read block, see
    /// [`payload_shared`](Self::payload_shared)).
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The topic the message was published on.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }

    /// The payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text, if it is valid UTF-8.
    #[must_use]
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// All headers, in the order they were added.
    #[must_use]
    pub fn headers(&self) -> &[(Arc<str>, HeaderValue)] {
        &self.headers
    }

    /// The first header called `key`.
    #[must_use]
    pub fn header(&self, key: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// The publisher's sequence number for this message (per origin, increasing; over NATS
    /// per origin and topic; `0` when the publisher did not number it).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The process that first published the message (see [`crate::process_origin`]).
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// How many bridges the message has already crossed.
    #[must_use]
    pub fn hops(&self) -> u8 {
        self.hops
    }

    /// When the message was published, on the wall clock.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// How long the message has left to live, if it expires: for a message read from a
    /// [`Subscription`](crate::Subscription), the time left when it was handed out (time on
    /// the way and in the buffer taken off); a message whose time ran out is never handed
    /// out (it is counted in [`SubscriptionStats::expired`](crate::SubscriptionStats)).
    #[must_use]
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Whether this is a published message, a request or a reply. Subscriptions receive
    /// only published messages; requests and replies reach their server and requester, and
    /// copies of them reach observers ([`Bus::observe`](crate::Bus::observe)).
    #[must_use]
    pub fn kind(&self) -> MessageKind {
        match self.route().map(|r| r.leg) {
            None => MessageKind::Message,
            Some(Leg::Request) => MessageKind::Request,
            Some(Leg::Reply(_)) => MessageKind::Reply,
            Some(Leg::Cancel) => MessageKind::Cancel,
            Some(Leg::Broadcast) => MessageKind::Internal,
        }
    }

    /// Whether this is the bus's own traffic (a request, reply or cancel, or the state
    /// exchange of [`inspect`](crate::inspect)) rather than a message someone published on
    /// a topic. Subscriptions never receive internal traffic; observers receive copies of
    /// requests, replies and cancels.
    #[must_use]
    pub fn is_internal(&self) -> bool {
        self.route.is_some()
    }

    /// The correlation id pairing a request with its replies (`None` for a published
    /// message). Unique per requesting peer only: every peer numbers its requests from the
    /// same start, so pair by [`requester`](Self::requester) and correlation together.
    #[must_use]
    pub fn correlation(&self) -> Option<u64> {
        self.route
            .as_ref()
            .filter(|r| r.leg != Leg::Broadcast)
            .map(|r| r.correlation)
    }

    /// The peer that sent the request this request, reply or cancel belongs to (`None` for
    /// a published message): its sender for a request or cancel, its addressee for a reply.
    /// With [`correlation`](Self::correlation) it names the request, so a reply or cancel
    /// belongs to the one request with the same requester and correlation. A peer id, as
    /// [`Bus::peer_id`](crate::Bus::peer_id) and [`PeerInfo::id`](crate::PeerInfo) give it,
    /// not an [`origin`](Self::origin): one process can open several peers.
    #[must_use]
    pub fn requester(&self) -> Option<u64> {
        self.route.as_ref().and_then(|r| match r.leg {
            Leg::Request | Leg::Cancel => Some(r.from),
            Leg::Reply(_) => Some(r.to),
            Leg::Broadcast => None,
        })
    }

    /// What a reply says about its request (`None` for a published message or a request).
    #[must_use]
    pub fn reply_status(&self) -> Option<ReplyStatus> {
        match self.route().map(|r| r.leg) {
            Some(Leg::Reply(status)) => Some(status),
            _ => None,
        }
    }

    /// Where a request, reply or cancel goes (`None` for a published message).
    pub(crate) fn route(&self) -> Option<Route> {
        self.route.as_deref().copied()
    }

    /// The peer a request or reply is addressed to.
    pub(crate) fn to(&self) -> Option<u64> {
        self.route
            .as_ref()
            .filter(|r| r.leg != Leg::Broadcast)
            .map(|r| r.to)
    }

    /// Whether this is the bus's own broadcast traffic (the state exchange), delivered only
    /// to subscriptions with [`Interest::Internal`](crate::frame::Interest::Internal).
    pub(crate) fn is_broadcast(&self) -> bool {
        self.route.as_ref().is_some_and(|r| r.leg == Leg::Broadcast)
    }
}

/// What kind of traffic a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum MessageKind {
    /// Published on a topic ([`Bus::publish`](crate::Bus::publish)), delivered to every
    /// matching subscription.
    Message,
    /// A request ([`Bus::request`](crate::Bus::request)), delivered to one server.
    Request,
    /// A reply to a request, delivered to its requester.
    Reply,
    /// The requester of a stream gave up on it (it dropped the stream before the end), so
    /// the server stops producing.
    Cancel,
    /// The bus's own broadcast traffic (the state exchange of [`inspect`](crate::inspect)):
    /// never delivered to subscriptions or observers.
    Internal,
}

/// What a reply says: an answer, one item of a stream, the end of a stream, or why there is
/// no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum ReplyStatus {
    /// The answer ([`Bus::serve`](crate::Bus::serve)).
    Ok,
    /// One answer of a stream; more follow ([`Bus::serve_stream`](crate::Bus::serve_stream)).
    Item,
    /// The stream ended; no payload.
    End,
    /// The handler panicked; the payload is the panic message.
    Failed,
    /// The server was running and queueing as many requests as it allows, and refused this
    /// one.
    Busy,
    /// The server stopped serving (or no longer serves the topic) before answering.
    Gone,
}

impl ReplyStatus {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            ReplyStatus::Ok => 1,
            ReplyStatus::Item => 2,
            ReplyStatus::End => 3,
            ReplyStatus::Failed => 4,
            ReplyStatus::Busy => 5,
            ReplyStatus::Gone => 6,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => ReplyStatus::Ok,
            2 => ReplyStatus::Item,
            3 => ReplyStatus::End,
            4 => ReplyStatus::Failed,
            5 => ReplyStatus::Busy,
            6 => ReplyStatus::Gone,
            _ => return None,
        })
    }

    /// Whether no reply follows this one.
    pub(crate) fn is_final(self) -> bool {
        self != ReplyStatus::Item
    }
}

/// Which leg of a request's round trip a routed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    /// Requester to server.
    Request,
    /// Server to requester.
    Reply(ReplyStatus),
    /// Requester to server: stop working on this request.
    Cancel,
    /// To every peer with a matching internal subscription (the bus's own traffic on a
    /// topic of its own namespace); `to`, `from` and `correlation` are unused (0).
    Broadcast,
}

/// Where a request or reply goes: one peer, and back (or, for a broadcast, every peer
/// listening on the topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// The peer it is addressed to (the server of a request, the requester of a reply).
    pub(crate) to: u64,
    /// The peer that sent it (where a request's replies go).
    pub(crate) from: u64,
    /// Pairs a request with its replies; unique per requester.
    pub(crate) correlation: u64,
    /// Which leg of the round trip this is.
    pub(crate) leg: Leg,
}

impl Route {
    /// The route of the bus's own broadcasts.
    pub(crate) fn broadcast() -> Self {
        Self {
            to: 0,
            from: 0,
            correlation: 0,
            leg: Leg::Broadcast,
        }
    }
}
