//! `Outgoing`: a message to publish, with its optional parts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ephemeral::{HeaderValue, Name, NameError};

use crate::IntoPayload;

/// A message to publish, with the optional parts; see [`Bus::publish_with`](crate::Bus::publish_with).
///
/// One type for every transport: the bus publishes it, and so does `ephemeral-nats`
/// (`Nats::publish_with`), which re-exports it. A transport takes it apart with
/// [`into_parts`](Self::into_parts).
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
/// assert_eq!(message.topic(), "orders.created");
/// # Ok::<(), ephemeral_bus::NameError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Outgoing {
    pub(crate) topic: Name,
    pub(crate) payload: Bytes,
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) origin: Option<u64>,
    pub(crate) hops: u8,
}

/// The parts of an [`Outgoing`] message, for a transport that sends it
/// ([`Outgoing::into_parts`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutgoingParts {
    /// The topic.
    pub topic: Name,
    /// The payload bytes.
    pub payload: Bytes,
    /// The headers, in the order they were added.
    pub headers: Vec<(Arc<str>, HeaderValue)>,
    /// How long the message stays relevant, if it expires.
    pub ttl: Option<Duration>,
    /// The first publisher when the message is forwarded (a bridge); `None`: the sender.
    pub origin: Option<u64>,
    /// How many bridges the message has crossed.
    pub hops: u8,
}

impl Outgoing {
    /// A message on `topic` with an empty payload.
    ///
    /// # Errors
    ///
    /// [`NameError`] when `topic` breaks the naming rule (both `BusError` and
    /// `NatsError` convert from it, so `?` works in either).
    pub fn new(topic: &str) -> Result<Self, NameError> {
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

    /// The payload bytes: owned buffers (`Bytes`, `Vec<u8>`, `String`, ...) are taken
    /// without a copy, borrowed ones copied (see [`IntoPayload`]).
    pub fn payload(mut self, bytes: impl IntoPayload) -> Self {
        self.payload = bytes.into_payload();
        self
    }

    /// The payload, shared rather than copied (the same as [`payload`](Self::payload) with
    /// `Bytes`).
    pub fn payload_shared(mut self, bytes: Bytes) -> Self {
        self.payload = bytes;
        self
    }

    /// Adds a scalar header. A bus message carries at most [`MAX_HEADERS`](crate::MAX_HEADERS)
    /// headers, keys of up to [`MAX_HEADER_KEY`](crate::MAX_HEADER_KEY) bytes and string values
    /// of up to [`MAX_HEADER_STR`](crate::MAX_HEADER_STR) bytes; publishing more is
    /// [`BusError::HeadersTooLarge`](crate::BusError::HeadersTooLarge), nothing is cut.
    pub fn header(mut self, key: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((Arc::from(key), value.into()));
        self
    }

    /// How long the message stays relevant; receivers get the remaining time, and never
    /// receive it once that has run out. A time past what the clock can count
    /// (`Duration::MAX`) means "for ever" (decades), never "already expired".
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Marks the message as forwarded: `origin` first published it (see
    /// [`Message::origin`](crate::Message::origin)). Bridges use it to recognise their own
    /// signals coming back around a loop.
    pub fn origin(mut self, origin: u64) -> Self {
        self.origin = Some(origin);
        self
    }

    /// How many bridges the message has already crossed (see
    /// [`Message::hops`](crate::Message::hops)).
    pub fn hops(mut self, hops: u8) -> Self {
        self.hops = hops;
        self
    }

    /// The topic.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }

    /// Every part, for a transport to send.
    #[must_use]
    pub fn into_parts(self) -> OutgoingParts {
        OutgoingParts {
            topic: self.topic,
            payload: self.payload,
            headers: self.headers,
            ttl: self.ttl,
            origin: self.origin,
            hops: self.hops,
        }
    }
}
