//! `DurableSubscription`: messages kept for a named subscriber while it is away.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ephemeral::{HeaderValue, Headers, Lagged, Name, Pattern};
use futures_core::Stream;

use super::StoreError;
use super::backend::DurableBackend;

/// Bounds of a [`DurableSubscription`]: how much is kept for it while it is away.
///
/// The overflow policy is **drop oldest**: a publisher never waits for an absent
/// subscriber; when a bound is reached the oldest kept messages are dropped, and the
/// subscriber is told how many with `Err(Lagged(n))` at that point of the stream. Set when
/// the subscription is created; attaching again with other bounds
/// ([`Bus::subscribe_durable_with`](crate::Bus::subscribe_durable_with)) changes them for
/// the messages kept from then on, while attaching without bounds
/// ([`Bus::subscribe_durable`](crate::Bus::subscribe_durable)) keeps them.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_bus::retained::DurableOptions;
///
/// let options = DurableOptions::default()
///     .max_messages(1_000)
///     .max_bytes(1 << 20)
///     .max_age(Duration::from_secs(3600));
/// assert_eq!(options.get_max_messages(), 1_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[must_use]
pub struct DurableOptions {
    pub(crate) max_messages: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_age_ms: u64,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 64 * 1024 * 1024,
            max_age_ms: 24 * 3_600_000,
        }
    }
}

impl DurableOptions {
    /// The most messages kept (default 10,000). Zero is taken as one.
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = messages.max(1);
        self
    }

    /// The most bytes of messages kept (default 64 MiB), each message counted as stored:
    /// its payload with its topic, headers and timestamps (on the bus, the topic's length
    /// plus a few dozen bytes over the payload; JetStream counts its own stored size the
    /// same way). So `max_bytes(10_000)` keeps fewer than a hundred 100-byte payloads. One
    /// message larger than this is still kept on its own (then dropped by the next one).
    /// Zero is taken as one byte (each message then kept alone, as any larger one).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// How long a message is kept (default 24 hours; below a millisecond counts as one).
    ///
    /// Zero is refused when attaching, with [`StoreError::ZeroMaxAge`], on every backend.
    /// On NATS a stream keeps messages for at least 100 ms (the server refuses a shorter
    /// `max_age`): a shorter age is accepted all the same, the stream keeps messages for
    /// 100 ms, and the subscriber skips those older than the age asked (the server's
    /// timestamp against the subscriber's clock) and is told `Lagged`, as on the bus.
    /// An age past about 292 years (`Duration::MAX`) keeps messages for ever on both
    /// backends (JetStream carries no longer age).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age_ms = super::max_age_ms(age);
        self
    }

    /// The most messages kept.
    #[must_use]
    pub fn get_max_messages(&self) -> u64 {
        self.max_messages
    }

    /// The most bytes of messages kept, each counted as stored (see
    /// [`max_bytes`](Self::max_bytes)).
    #[must_use]
    pub fn get_max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How long a message is kept.
    #[must_use]
    pub fn get_max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }
}

/// One message kept for a durable subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableMessage {
    sequence: u64,
    topic: Name,
    payload: Arc<[u8]>,
    headers: Headers,
    timestamp: SystemTime,
    origin: u64,
}

impl DurableMessage {
    /// A message (for backends).
    #[must_use]
    pub fn new(sequence: u64, topic: Name, payload: Arc<[u8]>, timestamp: SystemTime) -> Self {
        Self {
            sequence,
            topic,
            payload,
            headers: Arc::from(Vec::new()),
            timestamp,
            origin: 0,
        }
    }

    /// The same message with `headers` and `origin` (for backends).
    #[must_use]
    pub fn with_source(mut self, headers: Headers, origin: u64) -> Self {
        self.headers = headers;
        self.origin = origin;
        self
    }

    /// Its place among the messages kept for this subscription (increasing; a gap is a
    /// dropped message, reported as [`Lagged`]). Acknowledge with it.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The topic it was published on.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }

    /// The payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text, if it is.
    #[must_use]
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// Its headers.
    #[must_use]
    pub fn headers(&self) -> &[(Arc<str>, HeaderValue)] {
        &self.headers
    }

    /// When it was published, on the wall clock.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// The process that first published it (see [`process_origin`](crate::process_origin)).
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }
}

/// Messages that persist until consumed: every message published on a topic matching the
/// pattern is kept for the subscription `name`, also while no subscriber is attached, and
/// delivered when one attaches; [`ack`](Self::ack) removes them.
///
/// * **Delivery.** In the order kept (per publisher, the order it published in), at least
///   once: what was delivered but not acknowledged when a subscriber went away is
///   delivered again to the next one. Acknowledgement is cumulative: acknowledging a
///   message acknowledges every one before it.
/// * **Bounds.** [`DurableOptions`]: count, bytes and age; beyond them the oldest are
///   dropped and the subscriber is told `Err(Lagged(n))` where they were. Never silent.
/// * **A loss is reported once per subscription, not once per attach.** A `Lagged(n)` is
///   recorded with the subscription as it is handed out (on the bus a database write
///   queued at once, in line before any later write of the process; over NATS a write to
///   the subscription's state, done before its lock is released), so the next subscriber
///   of the name is not told it again, although it gets the messages after it that were
///   not acknowledged: counting a loss twice is as wrong as missing one. A `Lagged` never
///   handed out (the subscriber went away or died before reading that far) is not
///   recorded, and is reported to the next subscriber. The one window for a second report:
///   a process killed between the hand-out and the record.
/// * **One subscriber at a time.** Attaching while another subscriber is attached is
///   [`StoreError::InUse`] (on the bus, by a lock the attached one holds, so a dead
///   subscriber never keeps the name).
/// * **From when.** Messages are kept from the moment the subscription is first created
///   (the first `subscribe_durable` call returned) until [`remove`](Self::remove).
///
/// A message whose own time to live ran out while kept is skipped and counted
/// ([`expired`](Self::expired)), as everywhere in `ephemeral`.
///
/// The stream ends when its backend closes. On the bus, a failed read of the database is
/// retried with a growing pause and logged as a `tracing` warning; after 8 failures in a
/// row the stream ends, logged as a `tracing` error — never silently. Attaching again
/// resumes from the last acknowledgement. A caught-up subscription also reads the database
/// again every second without a notice, so a publisher that exits right after publishing
/// delays its message by up to a second, never loses it ([`Bus::flush`](crate::Bus::flush)
/// before exiting sends the notice on its way).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use ephemeral_bus::{Bus, BusOptions};
///
/// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-durable-{}", std::process::id()));
/// let bus = Bus::open_with("doc-durable", BusOptions::default().dir(&parent)).await?;
/// let billing = bus.subscribe_durable("orders.*", "billing").await?;
/// drop(billing); // away
///
/// bus.publish("orders.created", b"42").await?;
///
/// let mut billing = bus.subscribe_durable("orders.*", "billing").await?; // back
/// let message = billing.next().await.unwrap()?;
/// assert_eq!(message.payload(), b"42");
/// billing.ack(&message).await?;
/// # billing.remove().await?; drop(bus); let _ = std::fs::remove_dir_all(&parent);
/// # Ok(())
/// # }
/// ```
pub struct DurableSubscription {
    backend: Box<dyn DurableBackend>,
}

impl DurableSubscription {
    /// A subscription served by `backend` (for backend implementations).
    #[must_use]
    pub fn from_backend(backend: Box<dyn DurableBackend>) -> Self {
        Self { backend }
    }

    /// The subscription's name.
    #[must_use]
    pub fn name(&self) -> &Name {
        self.backend.name()
    }

    /// The pattern it keeps messages for.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        self.backend.pattern()
    }

    /// The bounds in effect.
    pub fn options(&self) -> &DurableOptions {
        self.backend.options()
    }

    /// Messages skipped because their own time to live ran out while kept.
    #[must_use]
    pub fn expired(&self) -> u64 {
        self.backend.expired()
    }

    /// Acknowledges `message` and every message before it: they are removed and will not
    /// be delivered again.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub fn ack(
        &self,
        message: &DurableMessage,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.backend.ack(message.sequence())
    }

    /// Acknowledges every message up to and including `sequence`. A sequence past the
    /// last message kept (`u64::MAX`, say) acknowledges every message kept so far, and none
    /// published later, on both backends. ("Kept": on the bus a publish returns once it is
    /// kept; over NATS the subscription's stream keeps a message shortly after the server
    /// received it, so one published just before such an acknowledgement may still come.)
    /// Messages acknowledged before this subscriber
    /// read them (a backlog skipped this way) are passed over without a [`Lagged`], on both
    /// backends: they were not dropped by a bound.
    ///
    /// On the bus, in a full database ([`StoreError::DatabaseFull`]) a big acknowledgement
    /// (or [`remove`](Self::remove)) removes the messages a few at a time, each step freeing
    /// room for the next, so a backlog that filled the database can always be let go.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub fn ack_sequence(
        &self,
        sequence: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        self.backend.ack(sequence)
    }

    /// Removes the subscription and everything kept for it: messages are no longer kept.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn remove(self) -> Result<(), StoreError> {
        self.backend.remove().await
    }
}

impl Stream for DurableSubscription {
    type Item = Result<DurableMessage, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut *self.backend).poll_next(cx)
    }
}

impl fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("backend", &self.backend)
            .finish()
    }
}
