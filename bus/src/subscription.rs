//! `Subscription`: the messages of the bus whose topic matches a pattern.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use ephemeral::lag::{Cursor, PushError, Ring, TryPushError};
use ephemeral::{Buffer, Lagged, Overflow, Pattern};
use futures_core::Stream;
use tokio::time::Instant;

use crate::Message;
use crate::bus::BusHandle;
use crate::frame::Interest;

static NEXT_SUB: AtomicU64 = AtomicU64::new(1);

/// The sending half of a subscription, shared with whoever delivers to it (the peer
/// connections' readers and local publishers). The buffer is core's lag ring, so a bus
/// subscription has the very lag model of a sink subscription or a channel subscriber; its
/// one reader is the [`Subscription`].
pub(crate) struct LocalSub {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) interest: Interest,
    ring: Arc<Ring<Buffered>>,
    /// Messages whose time ran out on the way, before they reached the ring.
    expired_on_arrival: AtomicU64,
    /// Messages whose time ran out between the ring's check and the hand-out.
    expired_at_hand_out: AtomicU64,
    /// A publisher in this process gave up waiting for this `Wait` subscription: later
    /// publishes do not wait for it again until it has room (has caught up), as a peer
    /// that fell behind is not waited for again.
    behind: AtomicBool,
}

/// What became of [`LocalSub::try_push`].
pub(crate) enum TryPush {
    /// Buffered, or not needed: it expired on the way, or the subscription is closed.
    Done,
    /// The `Wait` buffer is full: the message, to wait with.
    Full(Message),
}

/// A message in the ring, with the instant its time to live runs out, if it has one (so
/// that it is handed out with the time it has left).
#[derive(Clone)]
pub(crate) struct Buffered {
    message: Message,
    expires: Option<Instant>,
}

/// The memory one buffered message keeps alive, estimated: the message itself, its topic,
/// payload and headers (shared parts counted in each buffer that holds them).
fn held(message: &Message) -> usize {
    let headers: usize = message
        .headers
        .iter()
        .map(|(k, v)| {
            k.len()
                + std::mem::size_of_val(v)
                + match v {
                    ephemeral::HeaderValue::Str(s) => s.len(),
                    _ => 0,
                }
        })
        .sum();
    std::mem::size_of::<Buffered>() + message.topic.len() + message.payload.len() + headers
}

/// When `message`'s time to live runs out on this process's clock; `None` if it has none.
///
/// The publisher sent the time it had left and its wall-clock timestamp. Peers of one bus
/// share a machine, hence a wall clock, so the time spent on the way (in queues, sockets, a
/// stopped process) is taken off too; a clock that went backwards counts as no time spent.
/// A time to live past what the clock can count (`Duration::MAX`) is a very long life
/// (`crate::after` saturates), never an instant death.
fn expiry(message: &Message) -> Option<Instant> {
    let ttl = message.ttl?;
    let spent = SystemTime::now()
        .duration_since(message.timestamp)
        .unwrap_or_default();
    Some(crate::after(ttl.saturating_sub(spent)))
}

/// Delivery counters of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubscriptionStats {
    /// The pattern.
    pub pattern: String,
    /// Messages buffered for it so far.
    pub delivered: u64,
    /// Messages it lost (dropped here, or by a publisher that could not wait for it),
    /// reported to it as `Lagged`.
    pub dropped: u64,
    /// Messages skipped because their time to live ran out before they were read (on the
    /// way or in the buffer); never delivered, and not counted as lag.
    pub expired: u64,
    /// Messages waiting to be read now.
    pub buffered: usize,
    /// The memory those messages hold, estimated in bytes: each message's own size, topic,
    /// payload and headers (a payload shared by several subscriptions of one process is
    /// counted in each).
    pub buffered_bytes: usize,
}

impl LocalSub {
    /// A subscription's sending half and its reader (made together, so that the reader
    /// gets every message pushed from the start).
    pub(crate) fn new(
        pattern: Pattern,
        interest: Interest,
        buffer: Buffer,
        overflow: Overflow,
    ) -> (Self, Cursor<Buffered>) {
        let ring =
            Arc::new(Ring::new(buffer, overflow).with_weigher(|b: &Buffered| held(&b.message)));
        let cursor = ring.cursor();
        let local = Self {
            id: NEXT_SUB.fetch_add(1, Ordering::Relaxed),
            pattern,
            interest,
            ring,
            expired_on_arrival: AtomicU64::new(0),
            expired_at_hand_out: AtomicU64::new(0),
            behind: AtomicBool::new(false),
        };
        (local, cursor)
    }

    /// The message with its expiry instant, or `None` (counted) when its time already ran
    /// out on the way.
    fn buffered(&self, message: Message) -> Option<(Buffered, Option<Instant>)> {
        let expires = expiry(&message);
        if expires.is_some_and(|at| at <= Instant::now()) {
            // Relaxed: a statistic.
            self.expired_on_arrival.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some((Buffered { message, expires }, expires))
    }

    /// Buffers `message`. With `Overflow::Wait` and a full buffer, waits for room until
    /// `deadline` (forever when `None`: that is a peer connection's reader, whose waiting
    /// pushes back on the publisher through the socket). Returns whether it was buffered; a
    /// message given up on is counted and reported as lag.
    ///
    /// A publisher (a `deadline`) that gave up on this subscription once does not wait for
    /// it again until it has room: meanwhile its messages are dropped for it at once (and
    /// reported as lag), so a subscription nobody reads costs publishers one wait, not one
    /// per message.
    pub(crate) async fn push(&self, message: Message, deadline: Option<Instant>) -> bool {
        let Some((buffered, expires)) = self.buffered(message) else {
            return false;
        };
        // Relaxed: a hint; a publisher that misses a change waits once more, or not at all.
        if deadline.is_some() && self.behind.load(Ordering::Relaxed) {
            return match self.ring.try_push(buffered, expires) {
                Ok(reached) => {
                    self.behind.store(false, Ordering::Relaxed);
                    reached > 0
                }
                Err(TryPushError::Closed(_)) => false,
                Err(TryPushError::Full(_)) => {
                    self.ring.add_lag(1);
                    false
                }
            };
        }
        match self.ring.push(buffered, expires, deadline).await {
            Ok(reached) => reached > 0,
            Err(PushError::Closed(_)) => false,
            Err(PushError::TimedOut(_)) => {
                // Lost for this subscription: its reader is told with `Lagged`.
                self.ring.add_lag(1);
                self.behind.store(true, Ordering::Relaxed);
                false
            }
            // The awaited `push` fails with no other error (`InsideRuntime` is
            // `push_blocking`'s); nothing was buffered.
            Err(_) => false,
        }
    }

    /// Buffers `message` if that needs no wait, or gives it back when a `Wait` buffer is
    /// full, for [`push`](Self::push) to wait with.
    pub(crate) fn try_push(&self, message: Message) -> TryPush {
        let Some((buffered, expires)) = self.buffered(message) else {
            return TryPush::Done;
        };
        match self.ring.try_push(buffered, expires) {
            Ok(_) | Err(TryPushError::Closed(_)) => TryPush::Done,
            Err(TryPushError::Full(buffered)) => TryPush::Full(buffered.message),
        }
    }

    /// Buffers `message` without waiting: for `DropOldest` subscriptions (observers), where a
    /// full buffer drops its oldest item. Returns whether it was buffered.
    pub(crate) fn push_now(&self, message: Message) -> bool {
        let Some((buffered, expires)) = self.buffered(message) else {
            return false;
        };
        match self.ring.try_push(buffered, expires) {
            Ok(reached) => reached > 0,
            Err(TryPushError::Closed(_) | TryPushError::Full(_)) => false,
        }
    }

    /// Records `n` messages lost for this subscription (reported as `Lagged`).
    pub(crate) fn add_lag(&self, n: u64) {
        self.ring.add_lag(n);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    pub(crate) fn close(&self) {
        self.ring.close();
    }

    pub(crate) fn stats(&self) -> SubscriptionStats {
        let ring = self.ring.stats();
        // Relaxed: statistics.
        let expired = self.expired_on_arrival.load(Ordering::Relaxed)
            + self.expired_at_hand_out.load(Ordering::Relaxed);
        SubscriptionStats {
            pattern: self.pattern.as_str().to_owned(),
            delivered: ring.pushed,
            dropped: ring.dropped + ring.lost,
            expired: ring.expired + expired,
            buffered: ring.buffered,
            buffered_bytes: ring.bytes,
        }
    }

    /// The next item from `cursor`, this subscription's reader: a message carries the time
    /// it has left now (one whose time ran out since the ring looked is skipped and counted).
    pub(crate) fn poll_next(
        &self,
        cursor: &mut Cursor<Buffered>,
        cx: Option<&mut Context<'_>>,
    ) -> Poll<Option<Result<Message, Lagged>>> {
        let mut cx = cx;
        loop {
            let item = match cx.as_deref_mut() {
                Some(cx) => std::task::ready!(cursor.poll_recv(cx)),
                None => match cursor.try_recv() {
                    Ok(item) => Some(item),
                    Err(ephemeral::lag::TryRecvError::Closed) => None,
                    Err(ephemeral::lag::TryRecvError::Empty) => return Poll::Pending,
                },
            };
            let Some(Ok(Buffered {
                mut message,
                expires,
            })) = item
            else {
                return Poll::Ready(item.map(|lagged| lagged.map(|b| b.message)));
            };
            if let Some(at) = expires {
                let now = Instant::now();
                if at <= now {
                    // Relaxed: a statistic.
                    self.expired_at_hand_out.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                message.ttl = Some(at - now);
            }
            return Poll::Ready(Some(Ok(message)));
        }
    }
}

/// The messages whose topic matches a pattern, from every peer of the bus (this process
/// included), as a `Stream<Item = Result<Message, Lagged>>`.
///
/// The buffer and overflow follow the core model: with [`Overflow::Wait`] (the default)
/// nothing is lost while the subscriber keeps up, and a publisher waits for room for at most
/// [`BusOptions::send_timeout`](crate::BusOptions::send_timeout); past that the message is
/// dropped *for this subscriber*, counted, and the stream yields `Err(Lagged(n))` before the
/// next message. With [`Overflow::DropOldest`] publishers never wait. Messages from one
/// publisher arrive in the order it published them; messages of different publishers
/// interleave.
///
/// A message published with a time to live ([`Outgoing::ttl`](crate::Outgoing::ttl), or a
/// bridged signal's remaining life) whose time runs out before it is read, on the way or
/// in the buffer, is skipped: never handed out, counted in [`SubscriptionStats::expired`],
/// and not reported as lag. What is handed out carries the time it has left.
///
/// Dropping the subscription unsubscribes (the other peers stop sending to it).
///
/// A full `Wait` subscription holds back what the same publisher sends to *this process*
/// (one connection per pair of peers keeps the order), until it is read or the publisher's
/// bounded wait drops for it. Read every `Wait` subscription you keep, or use
/// `DropOldest` for one you only sample.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use ephemeral_bus::Bus;
///
/// let bus = Bus::open("doc-doc-subscription").await?;
/// let mut news = bus.subscribe("news.+").await?;
/// assert_eq!(bus.publish("news.sports", b"goal").await?, 1);
/// assert_eq!(bus.publish("news.sports.eu", b"not one segment").await?, 0);
///
/// assert_eq!(news.next().await.unwrap()?.payload(), b"goal");
/// assert!(news.try_recv().is_none());
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the Subscription unsubscribes at once"]
pub struct Subscription {
    pub(crate) local: Arc<LocalSub>,
    pub(crate) bus: Arc<BusHandle>,
    cursor: Cursor<Buffered>,
}

impl Subscription {
    pub(crate) fn new(local: Arc<LocalSub>, cursor: Cursor<Buffered>, bus: Arc<BusHandle>) -> Self {
        Self { local, bus, cursor }
    }

    /// The next message or lag report if one is buffered now, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Message, Lagged>> {
        match self.local.poll_next(&mut self.cursor, None) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// The pattern subscribed to.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.local.pattern
    }

    /// This subscription's delivery counters.
    #[must_use]
    pub fn stats(&self) -> SubscriptionStats {
        self.local.stats()
    }
}

impl Stream for Subscription {
    type Item = Result<Message, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.local.poll_next(&mut this.cursor, Some(cx))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.local.close();
        self.bus.shared.unsubscribe(self.local.id);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.local.pattern.as_str())
            .field("stats", &self.local.stats())
            .finish()
    }
}
