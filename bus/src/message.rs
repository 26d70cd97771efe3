//! `Message`: what travels on the bus.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ephemeral::{HeaderValue, Headers, Name};

/// One message received from the bus: a topic, payload bytes, scalar headers, and where and
/// when it came from.
///
/// `id` increases by one with every message a publisher sends, so `(origin, id)` identifies a
/// message and the ids from one publisher arrive in increasing order. The timestamp is
/// wall-clock time (it left the process); the time-to-live is the *remaining* time when it was
/// sent, never an absolute deadline, so clocks need not agree. Cloning only bumps reference
/// counts.
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
    pub(crate) topic: Name,
    pub(crate) payload: Arc<[u8]>,
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

    /// The publisher's sequence number for this message (per origin, increasing).
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

    /// How long the message had left to live when it was sent, if it expires.
    #[must_use]
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}
