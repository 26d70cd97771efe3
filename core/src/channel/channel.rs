//! `Channel<T>`: typed fan-out from many publishers to many subscribers.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::error::{ChannelClosed, ChannelConfigError, DeliveryError, DeliveryFailure, SendError};
use super::options::ChannelOptions;
use super::shared::SubShared;
use super::stats::{ChannelState, ChannelStats};
use super::subscriber::Subscriber;
use crate::lag::{PushError, Ring, TryPushError};
use crate::sync::{Mutex, lock};
use crate::{Buffer, Overflow};

type Rings<T> = Arc<Vec<Arc<Ring<T>>>>;

pub(crate) struct Inner<T> {
    options: ChannelOptions,
    /// One ring per buffer and overflow policy in use, each read by every subscriber with
    /// those settings. Read on every send without a lock; replaced whole on (un)subscribe,
    /// which is rare.
    rings: ArcSwap<Vec<Arc<Ring<T>>>>,
    /// Every subscriber, for stats and reports. Its lock serialises (un)subscribe and close,
    /// so no subscriber is added after close.
    registry: Mutex<Vec<Arc<SubShared<T>>>>,
    closed: AtomicBool,
    sent: AtomicU64,
    unheard: AtomicU64,
    next_id: AtomicU64,
}

impl<T> Inner<T> {
    pub(crate) fn unregister(&self, id: u64) {
        let mut registry = lock(&self.registry);
        let Some(at) = registry.iter().position(|s| s.id == id) else {
            return;
        };
        // `remove`, not `swap_remove`: the registry stays in subscription order, which
        // `ChannelStats::subscribers` promises (oldest first).
        let gone = registry.remove(at);
        // The last subscriber of a ring takes the ring out of the send path.
        if !registry.iter().any(|s| Arc::ptr_eq(&s.ring, &gone.ring)) {
            let rest: Vec<_> = self
                .rings
                .load()
                .iter()
                .filter(|r| !Arc::ptr_eq(r, &gone.ring))
                .cloned()
                .collect();
            self.rings.store(Arc::new(rest));
        }
    }

    fn close(&self) {
        let _registry = lock(&self.registry);
        // SeqCst pairs with the load in `send`: a send that sees "open" after this store
        // would still be refused by each closed ring.
        self.closed.store(true, Ordering::SeqCst);
        for ring in self.rings.load().iter() {
            ring.close();
        }
    }

    /// Reports a timed-out send to every subscriber of `ring`.
    fn report_timed_out(&self, ring: &Arc<Ring<T>>) {
        let missed: Vec<u64> = lock(&self.registry)
            .iter()
            .filter(|s| Arc::ptr_eq(&s.ring, ring))
            .map(|s| s.id)
            .collect();
        for id in missed {
            self.report(id, DeliveryFailure::TimedOut);
        }
    }

    /// Reports a failed delivery; never under a lock, never unwinding into the caller.
    pub(crate) fn report(&self, subscriber: u64, failure: DeliveryFailure) {
        report(self.options.on_error.as_deref(), subscriber, failure);
    }
}

pub(crate) fn report(
    callback: Option<&(dyn Fn(&DeliveryError) + Send + Sync)>,
    subscriber: u64,
    failure: DeliveryFailure,
) {
    if let Some(callback) = callback {
        let error = DeliveryError {
            subscriber,
            failure,
        };
        if std::panic::catch_unwind(AssertUnwindSafe(|| callback(&error))).is_err() {
            tracing::warn!(%error, "the channel's error callback panicked");
        }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// A typed broadcast channel: every message goes to every subscriber that existed when it
/// was sent, in order per publisher.
///
/// * **Handles.** `Channel` is a cheap `Clone`; every clone can send and subscribe. The
///   channel closes on [`close`](Self::close) or when its last handle is dropped.
/// * **Buffers.** Each subscriber has its own [`Buffer`] (the channel's default, or its own
///   via [`subscribe_with`](Self::subscribe_with)). When one is full, [`Overflow::Wait`]
///   makes the sender wait (nothing is lost; bounded by
///   [`send_timeout`](ChannelOptions::send_timeout) if set) and [`Overflow::DropOldest`]
///   drops that subscriber's oldest message and tells it with
///   [`Lagged`](crate::Lagged). A slow subscriber with `Wait` slows every sender: that is
///   the price of losing nothing.
/// * **Expiry.** With [`expire_after`](ChannelOptions::expire_after), a message older than
///   that is skipped and counted, never delivered.
/// * **Nobody listening.** A message sent while no one is subscribed reaches no one: `send`
///   returns `Ok(0)` and the channel counts it as `unheard`. Dropping every subscriber never
///   blocks senders.
/// * **Closing.** After close, sends fail with [`ChannelClosed`] (the message is given back)
///   and subscribers drain what they hold, then end. A send racing with `close` reaches the
///   subscribers that had not closed yet and reports how many.
///
/// There is no channel-wide lock per message: a send reads the list of rings lock-free and
/// stores the message once per ring, briefly under that ring's lock. Subscribers with the
/// same buffer and overflow policy (all of them, unless some ask for their own) read one
/// shared [`lag::Ring`](crate::lag::Ring), each at its own cursor, wherever that is exact:
/// each still sees exactly what a buffer of its own of that size would give it. With
/// [`Overflow::Wait`], a bounded buffer and a [`send_timeout`](ChannelOptions::send_timeout),
/// each subscriber has a ring of its own, so a send that times out on a slow subscriber
/// still reaches the others.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::Channel;
///
/// let events = Channel::<String>::new();
/// let mut logger = events.subscribe();
/// let mut alerter = events.subscribe();
///
/// let reached = events.send("disk.full".to_string()).await?;
/// assert_eq!(reached, 2);
/// assert_eq!(logger.recv().await, Some(Ok("disk.full".to_string())));
/// assert_eq!(alerter.recv().await, Some(Ok("disk.full".to_string())));
///
/// events.close();
/// assert!(events.send("late".to_string()).await.is_err());
/// assert_eq!(logger.recv().await, None);
/// # Ok(())
/// # }
/// ```
///
/// # Comparison with `tokio::sync::broadcast`
///
/// `broadcast` has one ring shared by all receivers, so a slow receiver always loses
/// messages (it cannot make senders wait). Use `Channel` when you need lossless fan-out with
/// back-pressure, per-subscriber buffers, expiry or delivery statistics; use `broadcast` when
/// losing old messages is always acceptable.
pub struct Channel<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone + Send + 'static> Default for Channel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + 'static> Channel<T> {
    /// A channel with [`ChannelOptions::default()`].
    #[must_use]
    pub fn new() -> Self {
        Self::build(ChannelOptions::default())
    }

    /// A channel with the given options.
    ///
    /// # Errors
    ///
    /// [`ChannelConfigError::ZeroExpiry`] when `expire_after` is zero.
    pub fn with_options(options: ChannelOptions) -> Result<Self, ChannelConfigError> {
        if options.expire_after.is_some_and(|ttl| ttl.is_zero()) {
            return Err(ChannelConfigError::ZeroExpiry);
        }
        Ok(Self::build(options))
    }

    fn build(options: ChannelOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                rings: ArcSwap::from_pointee(Vec::new()),
                registry: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                unheard: AtomicU64::new(0),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// A new subscriber with the channel's buffer and overflow policy. It receives messages
    /// sent from now on.
    pub fn subscribe(&self) -> Subscriber<T> {
        let options = &self.inner.options;
        self.subscribe_with_overflow(options.buffer, options.overflow)
    }

    /// A new subscriber with its own buffer and the channel's overflow policy.
    pub fn subscribe_with(&self, buffer: Buffer) -> Subscriber<T> {
        self.subscribe_with_overflow(buffer, self.inner.options.overflow)
    }

    /// A new subscriber with its own buffer and overflow policy (for example a lossy
    /// dashboard next to lossless consumers).
    pub fn subscribe_with_overflow(&self, buffer: Buffer, overflow: Overflow) -> Subscriber<T> {
        // Relaxed: ids only need to be unique.
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut registry = lock(&self.inner.registry);
        // SeqCst: see `Inner::close`.
        let (ring, cursor) = if self.inner.closed.load(Ordering::SeqCst) {
            // Subscribing to a closed channel gives a stream that ends at once.
            let ring = Arc::new(Ring::new(buffer, overflow));
            ring.close();
            let cursor = ring.cursor();
            (ring, cursor)
        } else {
            let rings = self.inner.rings.load();
            // A bounded `Wait` ring with a send timeout is never shared: the timeout is the
            // ring's, so a send that timed out on one slow reader would miss every reader of
            // the ring, including those that had room.
            let can_time_out = overflow == Overflow::Wait
                && buffer.capacity().is_some()
                && self.inner.options.send_timeout.is_some();
            let shared = rings
                .iter()
                .find(|r| !can_time_out && r.buffer() == buffer && r.overflow() == overflow);
            let ring = match shared {
                Some(ring) => Arc::clone(ring),
                None => {
                    let ring = Arc::new(Ring::new(buffer, overflow));
                    let mut list = Vec::clone(&rings);
                    list.push(Arc::clone(&ring));
                    self.inner.rings.store(Arc::new(list));
                    ring
                }
            };
            // Joined under the registry's lock: a concurrent send either stored its message
            // before (this subscriber did not exist yet) or stores it for this cursor too.
            let cursor = ring.cursor();
            (ring, cursor)
        };
        let shared = Arc::new(SubShared::new(id, ring, cursor.tally()));
        if !self.inner.closed.load(Ordering::SeqCst) {
            registry.push(Arc::clone(&shared));
        }
        drop(registry);
        Subscriber {
            cursor,
            shared,
            channel: Arc::downgrade(&self.inner),
        }
    }

    fn open_snapshot(&self) -> Option<Rings<T>> {
        // SeqCst: see `Inner::close`.
        if self.inner.closed.load(Ordering::SeqCst) {
            return None;
        }
        // Relaxed: a statistic.
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let rings = self.inner.rings.load_full();
        if rings.is_empty() {
            self.inner.unheard.fetch_add(1, Ordering::Relaxed);
        }
        Some(rings)
    }

    fn expiry(&self) -> Option<Instant> {
        self.inner
            .options
            .expire_after
            .and_then(|ttl| Instant::now().checked_add(ttl))
    }

    /// Sends `value` to every current subscriber and returns how many received it.
    ///
    /// With [`Overflow::Wait`] it waits while a subscriber's buffer is full (up to the send
    /// timeout, if one is set). A subscriber that goes away meanwhile is skipped.
    ///
    /// # Errors
    ///
    /// * [`SendError::Closed`] when the channel is closed;
    /// * [`SendError::TimedOut`] when the send timeout passed before every subscriber had room
    ///   (the message is given back, and each missed subscriber is reported to the error
    ///   callback).
    pub async fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let Some(rings) = self.open_snapshot() else {
            return Err(SendError::Closed(ChannelClosed(value)));
        };
        let expires = self.expiry();
        let deadline = self
            .inner
            .options
            .send_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let mut outcome = Outcome::new();
        match deadline {
            // Without a timeout nothing is given back, so the last ring takes the original
            // instead of a clone.
            None => {
                let mut value = Some(value);
                for (i, ring) in rings.iter().enumerate() {
                    let v = if i + 1 == rings.len() {
                        value.take()
                    } else {
                        value.clone()
                    };
                    if let Some(v) = v {
                        let result = push(ring, v, expires, None).await;
                        outcome.record(&self.inner, ring, result);
                    }
                }
                match outcome.last_closed {
                    Some(v) if outcome.reached == 0 && self.is_closed() => {
                        Err(SendError::Closed(ChannelClosed(v)))
                    }
                    _ => Ok(outcome.reached),
                }
            }
            Some(at) => {
                for ring in rings.iter() {
                    let result = push(ring, value.clone(), expires, Some(at)).await;
                    outcome.record(&self.inner, ring, result);
                }
                outcome.finish(value, self.is_closed())
            }
        }
    }

    /// Like [`send`](Self::send), blocking the current thread; for plain threads outside any
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), plus [`SendError::InsideRuntime`] when called on a thread
    /// that runs a tokio runtime (blocking there would stall it). The check cannot tell a
    /// `spawn_blocking` thread from a worker, so it refuses there too; in `spawn_blocking`
    /// use `tokio::runtime::Handle::current().block_on(channel.send(value))`.
    pub fn send_blocking(&self, value: T) -> Result<usize, SendError<T>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(SendError::InsideRuntime(value));
        }
        let Some(rings) = self.open_snapshot() else {
            return Err(SendError::Closed(ChannelClosed(value)));
        };
        let expires = self.expiry();
        let deadline = self
            .inner
            .options
            .send_timeout
            .and_then(|t| std::time::Instant::now().checked_add(t));
        let mut outcome = Outcome::new();
        for ring in rings.iter() {
            let result = ring.push_blocking(value.clone(), expires, deadline);
            outcome.record(&self.inner, ring, result);
        }
        outcome.finish(value, self.is_closed())
    }

    /// Closes the channel: sends fail from now on, subscribers drain what they hold and then
    /// end. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether the channel is closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        // SeqCst: see `Inner::close`.
        self.inner.closed.load(Ordering::SeqCst)
    }

    /// Open or closed.
    #[must_use]
    pub fn state(&self) -> ChannelState {
        if self.is_closed() {
            ChannelState::Closed
        } else {
            ChannelState::Open
        }
    }

    /// How many subscribers are registered now.
    #[must_use]
    pub fn subscriber_count(&self) -> usize {
        lock(&self.inner.registry).len()
    }

    /// The channel's state, message counts and each subscriber's delivery counts.
    #[must_use]
    pub fn stats(&self) -> ChannelStats {
        ChannelStats {
            state: self.state(),
            // Relaxed: statistics.
            sent: self.inner.sent.load(Ordering::Relaxed),
            unheard: self.inner.unheard.load(Ordering::Relaxed),
            subscribers: lock(&self.inner.registry)
                .iter()
                .map(|s| s.stats())
                .collect(),
        }
    }

    /// The options this channel was made with.
    pub fn options(&self) -> &ChannelOptions {
        &self.inner.options
    }
}

/// Buffers `value` in one ring, for all its subscribers: without building a waiting future
/// when there is room at once (the common case; it keeps the send cheap), else waiting as the
/// ring's `push` does. How many subscribers it reached.
async fn push<T>(
    ring: &Ring<T>,
    value: T,
    expires: Option<Instant>,
    deadline: Option<Instant>,
) -> Result<usize, PushError<T>> {
    match ring.try_push(value, expires) {
        Ok(reached) => Ok(reached),
        Err(TryPushError::Closed(value)) => Err(PushError::Closed(value)),
        Err(TryPushError::Full(value)) => ring.push(value, expires, deadline).await,
    }
}

/// Tallies one send across subscribers.
struct Outcome<T> {
    reached: usize,
    missed: usize,
    last_closed: Option<T>,
}

impl<T> Outcome<T> {
    fn new() -> Self {
        Self {
            reached: 0,
            missed: 0,
            last_closed: None,
        }
    }

    fn record(
        &mut self,
        inner: &Inner<T>,
        ring: &Arc<Ring<T>>,
        result: Result<usize, PushError<T>>,
    ) {
        match result {
            Ok(reached) => self.reached += reached,
            // Gone meanwhile (the channel closed): nothing to deliver to.
            Err(PushError::Closed(v)) => self.last_closed = Some(v),
            Err(PushError::TimedOut(_)) => {
                self.missed += ring.readers();
                inner.report_timed_out(ring);
            }
        }
    }

    fn finish(self, value: T, closed: bool) -> Result<usize, SendError<T>> {
        if self.missed > 0 {
            Err(SendError::TimedOut {
                value,
                reached: self.reached,
                missed: self.missed,
            })
        } else if self.reached == 0 && self.last_closed.is_some() && closed {
            Err(SendError::Closed(ChannelClosed(value)))
        } else {
            Ok(self.reached)
        }
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("subscribers", &lock(&self.inner.registry).len())
            .field("options", &self.inner.options)
            .finish()
    }
}
