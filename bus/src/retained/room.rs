//! `Room`: messages kept up to a count and an age; a late joiner gets the history, then
//! live messages.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ephemeral::{Lagged, Name};
use futures::stream::BoxStream;
use futures_core::Stream;

use super::StoreError;
use super::backend::RoomBackend;

/// Options of a [`Room`], fixed when the room is created (opening an existing room keeps
/// its own; [`Room::options`] tells them).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_bus::retained::RoomOptions;
///
/// let options = RoomOptions::default()
///     .max_messages(10_000)
///     .max_age(Duration::from_secs(600));
/// assert_eq!(options.get_max_messages(), 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[must_use]
pub struct RoomOptions {
    pub(crate) max_messages: u64,
    pub(crate) max_age_ms: u64,
    pub(crate) max_message_size: usize,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_age_ms: 3_600_000,
            max_message_size: 1024 * 1024,
        }
    }
}

impl RoomOptions {
    /// How many messages the room keeps (default 1,000): the oldest go first. Zero is taken
    /// as one (a room keeps at least its last message).
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = messages.max(1);
        self
    }

    /// How long a message is kept (default 1 hour; below a millisecond counts as one).
    ///
    /// Zero is refused when the room is opened, with [`StoreError::ZeroMaxAge`], on every
    /// backend. On NATS a stream keeps messages for at least 100 ms (the server refuses a
    /// shorter `max_age`): a shorter age is accepted all the same, the stream keeps messages
    /// for 100 ms, and joiners skip those older than the age asked (the server's timestamp
    /// against the joiner's clock), so what a joiner sees is what it would see on the bus.
    /// An age past about 292 years (`Duration::MAX`) keeps messages for ever on both
    /// backends (JetStream carries no longer age).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age_ms = super::max_age_ms(age);
        self
    }

    /// The largest message accepted, in bytes (default 1 MiB); larger is
    /// [`StoreError::ValueTooLarge`].
    ///
    /// On NATS the server's `max_payload` (1 MiB by default) counts a message's header too
    /// (its sender: 48 bytes), so the maximum in effect is the lower of this and
    /// `max_payload` less 48 bytes: 1,048,528 bytes with both at their defaults.
    /// [`Room::options`] tells the maximum in effect; raise `max_payload` on the server to
    /// send messages of a full mebibyte.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many messages the room keeps.
    #[must_use]
    pub fn get_max_messages(&self) -> u64 {
        self.max_messages
    }

    /// How long a message is kept.
    #[must_use]
    pub fn get_max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms)
    }

    /// The largest message accepted.
    #[must_use]
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }
}

/// One message of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMessage {
    sequence: u64,
    sender: u64,
    sent_at: SystemTime,
    payload: Arc<[u8]>,
}

impl RoomMessage {
    /// A message (for backends).
    #[must_use]
    pub fn new(sequence: u64, sender: u64, sent_at: SystemTime, payload: Arc<[u8]>) -> Self {
        Self {
            sequence,
            sender,
            sent_at,
            payload,
        }
    }

    /// Its place in the room: 1 for the first message ever sent, then increasing by one.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Who sent it: the sending connection's id (on the bus, the peer id of its handle).
    #[must_use]
    pub fn sender(&self) -> u64 {
        self.sender
    }

    /// When it was sent, on the wall clock.
    #[must_use]
    pub fn sent_at(&self) -> SystemTime {
        self.sent_at
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
}

/// A chat-like room: messages kept up to [`max_messages`](RoomOptions::max_messages) and
/// [`max_age`](RoomOptions::max_age); [`join`](Self::join) gives the history, then live
/// messages, with no gap and no duplicate at the seam — also when sends race the join.
///
/// Every message gets the next [`sequence`](RoomMessage::sequence) of the room, so all
/// joiners see one order, and messages from one sender keep the order they were sent in.
/// A joiner that falls behind the room's bound (the messages it has not read yet were
/// dropped as the oldest) is told `Err(Lagged(n))`, then carries on with the oldest kept.
/// A joiner is behind from the moment [`join`](Self::join) returns, whether it has read
/// anything yet or not: what was kept then, or sent since, and dropped before it was read
/// is counted in a `Lagged`, never lost silently.
///
/// `Room` is a cheap `Clone`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use ephemeral_bus::{Bus, BusOptions};
/// use ephemeral_bus::retained::RoomOptions;
///
/// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-room-{}", std::process::id()));
/// let bus = Bus::open_with("doc-room", BusOptions::default().dir(&parent)).await?;
/// let lobby = bus.room("lobby", RoomOptions::default().max_messages(100)).await?;
/// lobby.send(b"first").await?;
///
/// let mut late = lobby.join().await?; // joins after "first" was sent
/// lobby.send(b"second").await?;
///
/// assert_eq!(late.next().await.unwrap()?.payload(), b"first");
/// assert_eq!(late.next().await.unwrap()?.payload(), b"second");
/// # drop((late, lobby, bus)); let _ = std::fs::remove_dir_all(&parent);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Room {
    backend: Arc<dyn RoomBackend>,
}

impl Room {
    /// A room served by `backend` (for backend implementations).
    #[must_use]
    pub fn from_backend(backend: Arc<dyn RoomBackend>) -> Self {
        Self { backend }
    }

    /// The room's name.
    #[must_use]
    pub fn name(&self) -> &Name {
        self.backend.name()
    }

    /// The options in effect.
    pub fn options(&self) -> &RoomOptions {
        self.backend.options()
    }

    /// Sends `payload` to the room; returns its sequence number. When this returns, the
    /// message is kept: every joiner from now on sees it (until the room's bounds drop it).
    ///
    /// On the bus, a send in a full database ([`StoreError::DatabaseFull`]) first drops
    /// what the room's bounds drop with this message anyway (the oldest beyond
    /// [`max_messages`](RoomOptions::max_messages), those past the max age), a few per
    /// write, each freeing room for the next, then sends: a room that filled the database
    /// up to its bounds keeps taking messages. It never drops more than its bounds: when
    /// the database is still full (the room's bounds are larger than the database, or
    /// other state fills it), the send fails with `DatabaseFull` and the room is left as
    /// it was; [`clear`](Self::clear) it, or free room elsewhere. Over NATS, the server
    /// keeps the room's bounds itself, and a server (or account) out of storage refuses the
    /// send with [`StoreError::StorageFull`]: nothing of the room is dropped beyond its
    /// bounds to make room.
    ///
    /// # Errors
    ///
    /// [`StoreError::ValueTooLarge`], [`StoreError::DatabaseFull`] (bus),
    /// [`StoreError::StorageFull`] (NATS), or a backend failure.
    pub async fn send(&self, payload: impl AsRef<[u8]>) -> Result<u64, StoreError> {
        let payload = payload.as_ref();
        let max = self.options().max_message_size;
        if payload.len() > max {
            return Err(StoreError::ValueTooLarge {
                len: payload.len(),
                max,
            });
        }
        self.backend.send(payload).await
    }

    /// Removes every message the room keeps (its history); returns how many. The room
    /// stays, with its options, and its sequence numbers carry on from the last one sent.
    ///
    /// A joiner that had not read the removed messages is told, as for any message the
    /// room dropped before it was read: `Err(Lagged(n))` before the next message it reads
    /// (messages it had fetched already, in a batch, are still handed out: each removed
    /// message is delivered or counted, once).
    /// A joiner from now on starts with the next message sent. On the bus, in a full
    /// database ([`StoreError::DatabaseFull`]) the messages are removed a few per write,
    /// each freeing room for the next, so a room that filled the database can always be
    /// cleared; over NATS, the room's stream is purged.
    ///
    /// # Errors
    ///
    /// A backend failure.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ephemeral_bus::{Bus, BusOptions};
    /// use ephemeral_bus::retained::RoomOptions;
    ///
    /// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-room-clear-{}", std::process::id()));
    /// let bus = Bus::open_with("doc-room-clear", BusOptions::default().dir(&parent)).await?;
    /// let lobby = bus.room("lobby", RoomOptions::default()).await?;
    /// lobby.send(b"first").await?;
    /// lobby.send(b"second").await?;
    /// assert_eq!(lobby.clear().await?, 2);
    /// assert_eq!(lobby.send(b"third").await?, 3, "sequence numbers carry on");
    /// # drop((lobby, bus)); let _ = std::fs::remove_dir_all(&parent);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn clear(&self) -> Result<u64, StoreError> {
        self.backend.clear().await
    }

    /// Joins: the retained messages, oldest first, then every message sent from now on.
    ///
    /// The start is fixed when this returns: the messages the room keeps at that moment
    /// (older ones were gone before: not a lag), then every later one. Any of them that
    /// the room's bounds drop before the joiner reads it is reported as `Err(Lagged(n))`,
    /// also before the first read.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn join(&self) -> Result<RoomJoin, StoreError> {
        Ok(RoomJoin {
            room: self.name().clone(),
            messages: self.backend.join().await?,
        })
    }
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("backend", &self.backend)
            .finish()
    }
}

/// A joined room: `Stream<Item = Result<RoomMessage, Lagged>>`, the history then live
/// messages. Dropping it leaves the room.
///
/// It ends when its backend closes (the bus, the NATS connection). On the bus, a failed
/// read of the database is retried with a growing pause and logged as a `tracing` warning;
/// after 8 failures in a row the stream ends, logged as a `tracing` error with the
/// database's message — never silently. A joiner that has caught up is woken by a notice
/// from each sender, and reads the database again every second even without one: a sender
/// that exits (or dies) right after `send` returned may take its notice with it, which
/// delays the message by up to a second but never loses it ([`Bus::flush`](crate::Bus::flush)
/// before exiting sends the notice on its way).
#[must_use = "a joined room does nothing unless polled"]
pub struct RoomJoin {
    room: Name,
    messages: BoxStream<'static, Result<RoomMessage, Lagged>>,
}

impl RoomJoin {
    /// The room's name.
    #[must_use]
    pub fn room(&self) -> &Name {
        &self.room
    }
}

impl Stream for RoomJoin {
    type Item = Result<RoomMessage, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for RoomJoin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomJoin")
            .field("room", &self.room.as_str())
            .finish_non_exhaustive()
    }
}
