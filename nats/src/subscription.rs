//! `Subscription`: the messages of a pattern, as a stream of `Result<Message, Lagged>`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ephemeral::{Buffer, Lagged, Pattern};
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::sequence::Gaps;
use crate::subject::{self, MESSAGES};
use crate::{Message, Nats, NatsError, headers};

/// Delivery counters of one [`Subscription`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubscriptionStats {
    /// Messages handed to the reader.
    pub delivered: u64,
    /// Messages lost before the reader got them: gaps in a publisher's numbers (lost in the
    /// network, at a reconnect, or dropped by the server or client for a slow consumer) and
    /// messages dropped because the buffer was full. Each was reported as [`Lagged`].
    pub lagged: u64,
    /// Messages whose time to live ran out before the reader got them (never delivered).
    pub expired: u64,
    /// Messages on a subject that decodes to no valid name (a foreign publisher), dropped.
    pub undecodable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    lagged: AtomicU64,
    expired: AtomicU64,
    undecodable: AtomicU64,
}

struct Entry {
    message: Message,
    deadline: Option<Instant>,
}

/// What the buffer holds, in arrival order: a lag report sits where the loss was noticed
/// (just before the message that revealed a gap), so the reader learns of it in place.
enum Item {
    Message(Entry),
    Lag(u64),
}

#[derive(Default)]
struct Ring {
    buffer: VecDeque<Item>,
    /// Messages in `buffer` (lag items do not count against the capacity).
    messages: usize,
    /// Losses at the head of the buffer (the oldest were dropped to make room).
    unreported: u64,
    closed: bool,
}

struct Shared {
    ring: Mutex<Ring>,
    waker: AtomicWaker,
    capacity: Option<usize>,
    counters: Counters,
}

fn lock(ring: &Mutex<Ring>) -> std::sync::MutexGuard<'_, Ring> {
    ring.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Buffers a lag report of `gap` (if any), then `entry` (if any).
    fn push(&self, gap: u64, entry: Option<Entry>) {
        // Counters are statistics only (Relaxed): the ring's mutex orders the deliveries.
        let mut ring = lock(&self.ring);
        if gap > 0 {
            ring.buffer.push_back(Item::Lag(gap));
            self.counters.lagged.fetch_add(gap, Ordering::Relaxed);
        }
        if let Some(entry) = entry {
            if let Some(capacity) = self.capacity {
                while ring.messages >= capacity {
                    match ring.buffer.pop_front() {
                        Some(Item::Message(_)) => {
                            ring.messages -= 1;
                            ring.unreported += 1;
                            self.counters.lagged.fetch_add(1, Ordering::Relaxed);
                        }
                        // Already counted when it was noticed.
                        Some(Item::Lag(n)) => ring.unreported += n,
                        None => break,
                    }
                }
            }
            ring.buffer.push_back(Item::Message(entry));
            ring.messages += 1;
        }
        drop(ring);
        self.waker.wake();
    }

    fn close(&self) {
        lock(&self.ring).closed = true;
        self.waker.wake();
    }

    fn pop(&self) -> Poll<Option<Result<Message, Lagged>>> {
        let mut ring = lock(&self.ring);
        if ring.unreported > 0 {
            return Poll::Ready(Some(Err(Lagged(std::mem::take(&mut ring.unreported)))));
        }
        let now = Instant::now();
        while let Some(item) = ring.buffer.pop_front() {
            match item {
                Item::Lag(n) => return Poll::Ready(Some(Err(Lagged(n)))),
                Item::Message(entry) => {
                    ring.messages -= 1;
                    if entry.deadline.is_some_and(|d| d <= now) {
                        self.counters.expired.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    // Handed out with the time it has left now, as on the bus.
                    let message = match entry.deadline {
                        Some(deadline) => entry.message.with_ttl(Some(deadline - now)),
                        None => entry.message,
                    };
                    return Poll::Ready(Some(Ok(message)));
                }
            }
        }
        if ring.closed {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// The messages whose topic matches a pattern, from every publisher connected to the
/// cluster (this handle included), as a `Stream<Item = Result<Message, Lagged>>`.
///
/// Created by [`Nats::subscribe`]. A task reads the NATS subscription(s) into a buffer
/// ([`Buffer::default`], 1024 messages; see [`Nats::subscribe_with`]); when the reader falls
/// that far behind, the oldest is dropped. Nothing is lost silently: a loss is reported as
/// `Err(Lagged(n))` where it happened — before the message that revealed a gap in a
/// publisher's numbers (a reconnect, a slow consumer cut off by the server), or first thing
/// when the buffer overflowed. A gap is noticed from the second message a subscription gets
/// from a publisher on a topic on: losses *before* the first one (say the connection dropped
/// before a new publisher's first message arrived) look the same as messages published
/// before subscribing, and are not reported; `nats.disconnected`
/// ([`Nats::connection_signals`]) tells of every such window. A message whose time to live ran out
/// before it was read is skipped and counted ([`SubscriptionStats::expired`]); what is
/// handed out carries the time it has left then (counted from its arrival: clocks of two
/// machines need not agree). Messages of one publisher on one topic arrive in order.
///
/// Dropping the subscription unsubscribes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// use futures::StreamExt;
/// use ephemeral_nats::Nats;
///
/// let nats = Nats::connect(&server.url()).await?;
/// let mut news = nats.subscribe("news.+").await?;
/// nats.publish("news.sports.eu", "not one segment").await?;
/// nats.publish("news.sports", "goal").await?;
/// assert_eq!(news.next().await.unwrap()?.payload(), b"goal");
/// assert_eq!(news.stats().delivered, 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the subscription unsubscribes"]
pub struct Subscription {
    pattern: Pattern,
    subjects: Vec<String>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The pattern subscribed to.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The NATS subjects subscribed to (see [`subject::route`]).
    #[must_use]
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// The next message or lag report if one is buffered now, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Message, Lagged>> {
        match self.shared.pop() {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// This subscription's delivery counters.
    #[must_use]
    pub fn stats(&self) -> SubscriptionStats {
        let c = &self.shared.counters;
        SubscriptionStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            lagged: c.lagged.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            undecodable: c.undecodable.load(Ordering::Relaxed),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Message, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.shared.pop() {
            return Poll::Ready(item);
        }
        self.shared.waker.register(cx.waker());
        self.shared.pop()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Dropping the task's NATS subscribers unsubscribes.
        self.task.abort();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern.as_str())
            .field("subjects", &self.subjects)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Nats {
    /// Subscribes to the messages whose topic matches `pattern` (`orders.*`, `news.+`,
    /// `a.*,b.*`), with the default buffer of 1024 messages.
    ///
    /// Returns once the server knows the subscription (a round trip), so a message published
    /// after this returns, from anywhere, reaches it. If the connection is down it returns
    /// after the connect timeout at most, and the client subscribes when it reconnects.
    ///
    /// # Errors
    ///
    /// [`NatsError::EmptyPattern`] when the pattern matches no name,
    /// [`NatsError::Closed`] once the client is closed.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, NatsError> {
        self.subscribe_with(pattern, Buffer::default()).await
    }

    /// [`subscribe`](Self::subscribe) with a buffer of your choice
    /// ([`Buffer::Unbounded`] never drops, at the price of memory).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe).
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        buffer: Buffer,
    ) -> Result<Subscription, NatsError> {
        let routed = subject::routed(&self.inner.prefix, pattern)?;
        let mut subscribers = Vec::with_capacity(routed.subjects.len());
        for s in &routed.subjects {
            let subscriber = self
                .inner
                .client
                .subscribe(s.clone())
                .await
                .map_err(|e| NatsError::subscribe("subscribe", &e))?;
            subscribers.push(subscriber);
        }
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring::default()),
            waker: AtomicWaker::new(),
            capacity: buffer.capacity(),
            counters: Counters::default(),
        });
        let task = tokio::spawn(read(
            futures::stream::select_all(subscribers),
            Arc::clone(&shared),
            Arc::clone(&self.inner.prefix),
            routed.filter,
        ));
        self.round_trip().await;
        Ok(Subscription {
            pattern: Pattern::new(pattern),
            subjects: routed.subjects,
            shared,
            task,
        })
    }
}

/// Reads the NATS subscriptions into the buffer, stamping each message's deadline on arrival.
async fn read(
    mut messages: futures::stream::SelectAll<async_nats::Subscriber>,
    shared: Arc<Shared>,
    prefix: Arc<str>,
    filter: Option<Pattern>,
) {
    let mut gaps = Gaps::default();
    while let Some(raw) = messages.next().await {
        let Some(topic) = subject::name_of(&prefix, MESSAGES, &raw.subject) else {
            shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(filter) = &filter
            && !filter.matches(&topic)
        {
            continue;
        }
        let now = Instant::now();
        let mut decoded = headers::decode(raw.headers.as_ref());
        let gap = match decoded.publisher {
            Some(publisher) => gaps.observe(publisher, &topic, decoded.number),
            None => 0,
        };
        let deadline = decoded.ttl.map(|ttl| now.checked_add(ttl).unwrap_or(now));
        if deadline.is_some_and(|d| d <= now) {
            // Arrived already expired (a zero time to live): never buffered.
            shared.counters.expired.fetch_add(1, Ordering::Relaxed);
            shared.push(gap, None);
            continue;
        }
        let message = decoded.message(topic, raw.payload.clone());
        shared.push(gap, Some(Entry { message, deadline }));
    }
    shared.close();
}
