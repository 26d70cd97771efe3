//! `Subscription`: the messages of the bus whose topic matches a pattern.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use ephemeral::{Buffer, Lagged, Overflow, Pattern};
use futures::task::AtomicWaker;
use futures_core::Stream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Message;
use crate::bus::BusHandle;
use crate::frame::Interest;
use crate::sync::Mutex;

static NEXT_SUB: AtomicU64 = AtomicU64::new(1);

/// The receiving half of a subscription, shared with whoever delivers to it (the peer
/// connections' readers and local publishers).
pub(crate) struct LocalSub {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) interest: Interest,
    overflow: Overflow,
    ring: Mutex<Ring>,
    waker: AtomicWaker,
    space: Notify,
    /// Pushers waiting for room. `pop` only pays for a wake-up when this is non-zero; the
    /// ring's mutex orders a waiter's increment (before its last check) before the pop.
    waiting: AtomicUsize,
}

struct Ring {
    /// Each message with the instant its time to live runs out, if it has one.
    buffer: VecDeque<(Message, Option<Instant>)>,
    capacity: Option<usize>,
    unreported: u64,
    dropped: u64,
    delivered: u64,
    expired: u64,
    /// Estimated bytes held by `buffer` (see [`held`]).
    bytes: usize,
    closed: bool,
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
    std::mem::size_of::<(Message, Option<Instant>)>()
        + message.topic.len()
        + message.payload.len()
        + headers
}

/// When `message`'s time to live runs out on this process's clock; `None` if it has none.
///
/// The publisher sent the time it had left and its wall-clock timestamp. Peers of one bus
/// share a machine, hence a wall clock, so the time spent on the way (in queues, sockets, a
/// stopped process) is taken off too; a clock that went backwards counts as no time spent.
fn expiry(message: &Message) -> Option<Instant> {
    let ttl = message.ttl?;
    let spent = SystemTime::now()
        .duration_since(message.timestamp)
        .unwrap_or_default();
    let now = Instant::now();
    Some(now.checked_add(ttl.saturating_sub(spent)).unwrap_or(now))
}

/// Delivery counters of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    pub(crate) fn new(
        pattern: Pattern,
        interest: Interest,
        buffer: Buffer,
        overflow: Overflow,
    ) -> Self {
        let capacity = buffer.capacity();
        Self {
            id: NEXT_SUB.fetch_add(1, Ordering::Relaxed),
            pattern,
            interest,
            overflow,
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity.unwrap_or(16).min(1024)),
                capacity,
                unreported: 0,
                dropped: 0,
                delivered: 0,
                expired: 0,
                bytes: 0,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            space: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Buffers `message`. With `Overflow::Wait` and a full buffer, waits for room until
    /// `deadline` (forever when `None`: that is a peer connection's reader, whose waiting
    /// pushes back on the publisher through the socket). Returns whether it was buffered; a
    /// message given up on is counted and reported as lag.
    pub(crate) async fn push(&self, message: Message, deadline: Option<Instant>) -> bool {
        let mut message = match self.try_push(message) {
            Ok(buffered) => return buffered,
            Err(message) => message,
        };
        // Full, with `Overflow::Wait`: register for room, then check again (so a pop between
        // the check and the registration is not missed).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let buffered = loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            message = match self.try_push(message) {
                Ok(buffered) => break buffered,
                Err(message) => message,
            };
            match deadline {
                None => notified.await,
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        self.add_lag(1);
                        break false;
                    }
                }
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        buffered
    }

    /// Buffers `message` without waiting: for `DropOldest` subscriptions (observers), where a
    /// full buffer drops its oldest item. Returns whether it was buffered.
    pub(crate) fn push_now(&self, message: Message) -> bool {
        self.try_push(message).unwrap_or(false)
    }

    /// Buffers `message` unless the buffer is full under `Overflow::Wait`, in which case it
    /// is handed back. `Ok(false)`: closed.
    fn try_push(&self, message: Message) -> Result<bool, Message> {
        let expires = expiry(&message);
        let mut ring = self.ring.lock();
        if ring.closed {
            return Ok(false);
        }
        if expires.is_some_and(|at| at <= Instant::now()) {
            ring.expired += 1;
            return Ok(false);
        }
        let full = ring.capacity.is_some_and(|cap| ring.buffer.len() >= cap);
        if full && self.overflow == Overflow::Wait {
            return Err(message);
        }
        if full && let Some((oldest, _)) = ring.buffer.pop_front() {
            ring.bytes -= held(&oldest);
            ring.unreported += 1;
            ring.dropped += 1;
        }
        ring.bytes += held(&message);
        ring.buffer.push_back((message, expires));
        ring.delivered += 1;
        drop(ring);
        self.waker.wake();
        Ok(true)
    }

    /// Records `n` messages lost for this subscription (reported as `Lagged`).
    pub(crate) fn add_lag(&self, n: u64) {
        {
            let mut ring = self.ring.lock();
            ring.unreported += n;
            ring.dropped += n;
        }
        self.waker.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.ring.lock().closed
    }

    pub(crate) fn close(&self) {
        self.ring.lock().closed = true;
        self.waker.wake();
        self.space.notify_waiters();
    }

    pub(crate) fn stats(&self) -> SubscriptionStats {
        let ring = self.ring.lock();
        SubscriptionStats {
            pattern: self.pattern.as_str().to_owned(),
            delivered: ring.delivered,
            dropped: ring.dropped,
            expired: ring.expired,
            buffered: ring.buffer.len(),
            buffered_bytes: ring.bytes,
        }
    }

    /// Polls for the next item, registering the waker when there is none.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Lagged>>> {
        if let Poll::Ready(item) = self.pop() {
            return Poll::Ready(item);
        }
        self.waker.register(cx.waker());
        self.pop()
    }

    fn pop(&self) -> Poll<Option<Result<Message, Lagged>>> {
        let mut ring = self.ring.lock();
        if ring.unreported > 0 {
            let n = std::mem::take(&mut ring.unreported);
            return Poll::Ready(Some(Err(Lagged(n))));
        }
        let mut now = None;
        let mut freed = false;
        let next = loop {
            let Some((mut message, expires)) = ring.buffer.pop_front() else {
                break None;
            };
            ring.bytes -= held(&message);
            freed = true;
            let Some(expires) = expires else {
                break Some(message);
            };
            let now = *now.get_or_insert_with(Instant::now);
            if expires <= now {
                ring.expired += 1;
                continue;
            }
            // Handed out with the time it has left now.
            message.ttl = Some(expires - now);
            break Some(message);
        };
        match next {
            Some(message) => {
                drop(ring);
                if self.waiting.load(Ordering::SeqCst) > 0 {
                    self.space.notify_waiters();
                }
                Poll::Ready(Some(Ok(message)))
            }
            None if ring.closed => Poll::Ready(None),
            None => {
                drop(ring);
                // Expired messages left room behind them.
                if freed && self.waiting.load(Ordering::SeqCst) > 0 {
                    self.space.notify_waiters();
                }
                Poll::Pending
            }
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
}

impl Subscription {
    /// The next message or lag report if one is buffered now, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Message, Lagged>> {
        match self.local.pop() {
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
        self.local.poll_next(cx)
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
