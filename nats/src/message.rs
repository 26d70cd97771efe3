//! `Message` and `Outgoing`: what travels over NATS.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ephemeral::{HeaderValue, Headers, Name};

use crate::NatsError;

/// One message received from NATS: a topic, payload bytes, scalar headers, and where and
/// when it came from.
///
/// The same shape as the bus's [`ephemeral_bus::Message`], so code reads the same on one
/// machine and on many. `id` counts the messages one publisher (one [`Nats`](crate::Nats)
/// handle) sent **on this topic**, from 1, so `(origin, topic, id)` identifies a message and a
/// gap in `id` is a lost message (reported as [`Lagged`](ephemeral::Lagged)). The time to
/// live is the *remaining* time when it was sent, never an absolute deadline, so clocks need
/// not agree. Cloning only bumps reference counts.
///
/// Headers arrive sorted by key (NATS headers are a map, so the publisher's order is not
/// kept); values of one key keep their order.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// # let url = server.url();
/// use futures::StreamExt;
/// use ephemeral_nats::{Nats, Outgoing};
///
/// let nats = Nats::connect(&url).await?;
/// let mut orders = nats.subscribe("orders.*").await?;
/// nats.publish_with(Outgoing::new("orders.created")?.payload("42").header("attempt", 2)).await?;
///
/// let message = orders.next().await.unwrap()?;
/// assert_eq!(message.topic(), "orders.created");
/// assert_eq!(message.payload(), b"42");
/// assert_eq!(message.header("attempt"), Some(&2.into()));
/// assert_eq!(message.id(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
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

    /// The payload as shared bytes (no copy).
    #[must_use]
    pub fn payload_bytes(&self) -> &Bytes {
        &self.payload
    }

    /// The payload as UTF-8 text, if it is valid UTF-8.
    #[must_use]
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// All headers, sorted by key.
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

    /// The publisher's number for this message on its topic (1, 2, 3, …; `0` when the
    /// publisher did not number it, e.g. a plain NATS client).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the message was first published: the publishing handle, or the process a
    /// bridge forwarded it from (`0` for a plain NATS client).
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// How many bridges the message has already crossed.
    #[must_use]
    pub fn hops(&self) -> u8 {
        self.hops
    }

    /// When the message was published, on the publisher's wall clock (the receipt time for
    /// a plain NATS client's message).
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// How long the message had left to live when it was sent, if it expires.
    #[must_use]
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

/// A message to publish, with the optional parts; see [`Nats::publish_with`](crate::Nats::publish_with).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_nats::Outgoing;
///
/// let message = Outgoing::new("orders.created")?
///     .payload(b"{\"id\":42}")
///     .header("attempt", 1)
///     .ttl(Duration::from_secs(30));
/// assert_eq!(message.topic(), "orders.created");
/// # Ok::<(), ephemeral_nats::NatsError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Outgoing {
    pub(crate) topic: Name,
    pub(crate) payload: Bytes,
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) ttl: Option<Duration>,
    /// The first publisher, when forwarding (a bridge); else this handle.
    pub(crate) origin: Option<u64>,
    pub(crate) hops: u8,
}

impl Outgoing {
    /// A message on `topic` with an empty payload.
    ///
    /// # Errors
    ///
    /// [`NatsError::Name`] when `topic` breaks the naming rule.
    pub fn new(topic: &str) -> Result<Self, NatsError> {
        Ok(Self::from_name(Name::new(topic)?))
    }

    /// A message on an already validated topic.
    pub fn from_name(topic: Name) -> Self {
        Self {
            topic,
            payload: Bytes::new(),
            headers: Vec::new(),
            ttl: None,
            origin: None,
            hops: 0,
        }
    }

    /// The payload bytes (`Bytes` and `Vec<u8>` are taken without a copy).
    pub fn payload(mut self, bytes: impl Into<PayloadBytes>) -> Self {
        self.payload = bytes.into().0;
        self
    }

    /// Adds a scalar header. Keys and values of any text travel intact (escaped on the wire
    /// where NATS needs it).
    pub fn header(mut self, key: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((Arc::from(key), value.into()));
        self
    }

    /// How long the message stays relevant; receivers get the remaining time, and a
    /// subscription never delivers it once that has run out (it counts it as expired).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The topic.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }
}

/// Payload bytes for [`Outgoing::payload`]: from `Bytes`, `Vec<u8>`, `String` (no copy),
/// `&[u8]`, `&str` and byte arrays (one copy).
#[derive(Debug, Clone)]
pub struct PayloadBytes(pub(crate) Bytes);

impl From<Bytes> for PayloadBytes {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}
impl From<Vec<u8>> for PayloadBytes {
    fn from(b: Vec<u8>) -> Self {
        Self(Bytes::from(b))
    }
}
impl From<String> for PayloadBytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}
impl From<&[u8]> for PayloadBytes {
    fn from(b: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(b))
    }
}
impl From<&str> for PayloadBytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}
impl<const N: usize> From<&[u8; N]> for PayloadBytes {
    fn from(b: &[u8; N]) -> Self {
        Self(Bytes::copy_from_slice(b))
    }
}
