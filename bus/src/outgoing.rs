//! `Outgoing`: a message to publish, with its optional parts.

use std::sync::Arc;
use std::time::Duration;

use ephemeral::{HeaderValue, Name};

use crate::BusError;

/// A message to publish, with the optional parts; see [`Bus::publish_with`](crate::Bus::publish_with).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_bus::Outgoing;
///
/// let message = Outgoing::new("orders.created")?
///     .payload(b"{\"id\":42}")
///     .header("attempt", 1)
///     .ttl(Duration::from_secs(30));
/// # Ok::<(), ephemeral_bus::BusError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Outgoing {
    pub(crate) topic: Name,
    pub(crate) payload: Arc<[u8]>,
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) origin: Option<u64>,
    pub(crate) hops: u8,
    /// A local subscription not to deliver to (a bridge's own inbound side).
    pub(crate) skip_local: Option<u64>,
}

impl Outgoing {
    /// A message on `topic` with an empty payload.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] when `topic` breaks the naming rule.
    pub fn new(topic: &str) -> Result<Self, BusError> {
        Ok(Self::from_name(Name::new(topic)?))
    }

    pub(crate) fn from_name(topic: Name) -> Self {
        Self {
            topic,
            payload: Arc::from(&[][..]),
            headers: Vec::new(),
            ttl: None,
            origin: None,
            hops: 0,
            skip_local: None,
        }
    }

    /// The payload bytes.
    pub fn payload(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.payload = Arc::from(bytes.as_ref());
        self
    }

    /// Adds a scalar header (keys longer than 255 bytes are cut).
    pub fn header(mut self, key: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((Arc::from(key), value.into()));
        self
    }

    /// How long the message stays relevant; receivers get the remaining time.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}
