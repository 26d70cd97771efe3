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

/// A ring in the send path, and the first subscription epoch whose sends may go into it:
/// a send that began (read the epoch) before the ring was made skips it, since all its
/// subscribers came later.
struct Lane<T> {
    ring: Arc<Ring<T>>,
    birth: u64,
}

impl<T> Clone for Lane<T> {
    fn clone(&self) -> Self {
        Self {
            ring: Arc::clone(&self.ring),
            birth: self.birth,
        }
    }
}

type Lanes<T> = Arc<Vec<Lane<T>>>;

/// What a send goes by: the rings there were when it began, and the subscription epoch it
/// began in. Counts the send as finished when dropped, however it ends (a cancelled send
/// too).
struct Snapshot<'a, T> {
    lanes: Lanes<T>,
    epoch: u64,
    finished: &'a AtomicU64,
}

impl<T> Snapshot<'_, T> {
    /// The rings this send goes into: those that existed when it began.
    fn rings(&self) -> impl Iterator<Item = &Arc<Ring<T>>> {
        self.lanes
            .iter()
            .filter(|lane| lane.birth <= self.epoch)
            .map(|lane| &lane.ring)
    }
}

impl<T> Drop for Snapshot<'_, T> {
    fn drop(&mut self) {
        // SeqCst: see `Channel::subscribe_with_overflow`.
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// How far a send went through its rings. If the send's future is dropped (its caller gave
/// up on it, in a `select!` or a `timeout`) while it waits for room in one ring after the
/// message reached the subscribers of another, the rings it had not reached yet are told of
/// the loss (`Lagged(1)`): no subscriber misses a message silently. A send dropped before it
/// reached anyone delivered nothing, to nobody, and tells no one.
struct Progress<'s, 'a, T> {
    snapshot: &'s Snapshot<'a, T>,
    /// How many of the snapshot's rings the send is done with.
    done: usize,
    /// Whether the message reached some subscriber.
    reached: bool,
    /// The send went through every ring (or returned an error that gives the message back).
    finished: bool,
}

impl<'s, 'a, T> Progress<'s, 'a, T> {
    fn new(snapshot: &'s Snapshot<'a, T>) -> Self {
        Self {
            snapshot,
            done: 0,
            reached: false,
            finished: false,
        }
    }

    /// One more ring is done with, with this result.
    fn passed(&mut self, result: &Result<usize, PushError<T>>) {
        self.done += 1;
        self.reached |= matches!(result, Ok(n) if *n > 0);
    }
}

impl<T> Drop for Progress<'_, '_, T> {
    fn drop(&mut self) {
        if self.finished || !self.reached {
            return;
        }
        for ring in self.snapshot.rings().skip(self.done) {
            ring.add_lag(1);
        }
    }
}

pub(crate) struct Inner<T> {
    options: ChannelOptions,
    /// The rings in the send path. Subscribers with the same buffer and overflow policy
    /// share one where that is exact (see `subscribe_with_overflow`). Read on every send
    /// without a lock; replaced whole on (un)subscribe, which is rare.
    rings: ArcSwap<Vec<Lane<T>>>,
    /// Every subscriber, oldest first, for stats and reports. Its lock serialises
    /// (un)subscribe and close, so no subscriber is added after close.
    registry: Mutex<Vec<Arc<SubShared<T>>>>,
    closed: AtomicBool,
    /// Sends begun (past the closed check), and of those, sends finished: the difference is
    /// the sends in flight.
    sent: AtomicU64,
    finished: AtomicU64,
    /// Bumped by every subscribe; each send reads it when it begins.
    epoch: AtomicU64,
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
                .filter(|lane| !Arc::ptr_eq(&lane.ring, &gone.ring))
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
        for lane in self.rings.load().iter() {
            lane.ring.close();
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
/// still reaches the others. A subscriber that joins while a send is in flight also gets a
/// ring of its own, which that send skips: it began before the subscriber existed.
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
                finished: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
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
        let inner = &*self.inner;
        let mut registry = lock(&inner.registry);
        // SeqCst: see `Inner::close`.
        let (ring, cursor) = if inner.closed.load(Ordering::SeqCst) {
            // Subscribing to a closed channel gives a stream that ends at once.
            let ring = Arc::new(Ring::new(buffer, overflow));
            ring.close();
            let cursor = ring.cursor();
            (ring, cursor)
        } else {
            // This subscriber's epoch: sends that read an older one began before it and must
            // not reach it. SeqCst, with the sends' `sent` increment then `epoch` load: a
            // send that read an older epoch counted itself in `sent` before this bump, so
            // the look at `finished` then `sent` below sees it in flight unless it is done.
            let epoch = inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            let lanes = inner.rings.load();
            let shared = if self.shares(buffer, overflow) {
                lanes
                    .iter()
                    .find(|lane| lane.ring.buffer() == buffer && lane.ring.overflow() == overflow)
            } else {
                None
            };
            let ring = match shared {
                Some(lane) => Arc::clone(&lane.ring),
                None => {
                    // A send in flight never reaches this ring (it began before `epoch`).
                    let ring = Arc::new(Ring::new(buffer, overflow));
                    let mut list = Vec::clone(&lanes);
                    list.push(Lane {
                        ring: Arc::clone(&ring),
                        birth: epoch,
                    });
                    inner.rings.store(Arc::new(list));
                    ring
                }
            };
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

    /// Whether a new subscriber with these settings may read a ring it shares with others
    /// and still see exactly what a buffer of its own would give it. Called under the
    /// registry's lock, after the subscriber's epoch was bumped.
    ///
    /// * Not when a send can time out on a bounded `Wait` ring: the timeout is the ring's,
    ///   so the message would miss every reader of the ring, including those that had room.
    /// * Not while a send is in flight: a send that began before this subscriber may still
    ///   push into the ring, and a shared ring cannot keep a message from one of its readers.
    ///   The subscriber then gets a ring of its own, which that send skips.
    fn shares(&self, buffer: Buffer, overflow: Overflow) -> bool {
        let inner = &*self.inner;
        let can_time_out = overflow == Overflow::Wait
            && buffer.capacity().is_some()
            && inner.options.send_timeout.is_some();
        if can_time_out {
            return false;
        }
        // SeqCst: see the caller. `finished` first: every send counted there is counted in
        // `sent` too, so the difference never misses a send in flight.
        let finished = inner.finished.load(Ordering::SeqCst);
        inner.sent.load(Ordering::SeqCst) == finished
    }

    fn open_snapshot(&self) -> Option<Snapshot<'_, T>> {
        // SeqCst: see `Inner::close`.
        if self.inner.closed.load(Ordering::SeqCst) {
            return None;
        }
        // SeqCst, the increment before the epoch load: see `subscribe_with_overflow`.
        self.inner.sent.fetch_add(1, Ordering::SeqCst);
        let snapshot = Snapshot {
            epoch: self.inner.epoch.load(Ordering::SeqCst),
            lanes: self.inner.rings.load_full(),
            finished: &self.inner.finished,
        };
        if snapshot.rings().next().is_none() {
            // Relaxed: a statistic.
            self.inner.unheard.fetch_add(1, Ordering::Relaxed);
        }
        Some(snapshot)
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
    /// Dropping the future before it completes (in a `select!`, or under
    /// `tokio::time::timeout`) stops the send where it waits: the subscribers it reached
    /// keep the message, and each one it had not reached yet is told with
    /// [`Lagged(1)`](crate::Lagged) before its next message, so none misses it silently.
    /// Dropped before it reached anyone, the send delivered nothing and tells no one. To
    /// bound the wait with a message given back instead, set
    /// [`send_timeout`](ChannelOptions::send_timeout).
    ///
    /// Without a send timeout the send needs no timer, so any executor may drive it; with
    /// one it waits on tokio's timer, so it must be polled inside a tokio runtime (with
    /// timers enabled).
    ///
    /// # Errors
    ///
    /// * [`SendError::Closed`] when the channel is closed;
    /// * [`SendError::TimedOut`] when the send timeout passed before every subscriber had room
    ///   (the message is given back, and each missed subscriber is reported to the error
    ///   callback);
    /// * [`SendError::NoRuntime`] when a send timeout is set and the send is polled outside a
    ///   tokio runtime (the message is given back; nothing was sent).
    pub async fn send(&self, value: T) -> Result<usize, SendError<T>> {
        // The timeout's timer is tokio's: outside a runtime it would panic once a buffer is
        // full. Checked whatever the buffers hold, so the outcome does not depend on timing.
        if self.inner.options.send_timeout.is_some()
            && tokio::runtime::Handle::try_current().is_err()
        {
            return Err(SendError::NoRuntime(value));
        }
        let Some(snapshot) = self.open_snapshot() else {
            return Err(SendError::Closed(ChannelClosed(value)));
        };
        let expires = self.expiry();
        let deadline = self
            .inner
            .options
            .send_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let mut outcome = Outcome::new();
        let mut progress = Progress::new(&snapshot);
        match deadline {
            // Without a timeout nothing is given back, so the last ring takes the original
            // instead of a clone.
            None => {
                let mut rings = snapshot.rings().peekable();
                let mut value = Some(value);
                while let Some(ring) = rings.next() {
                    let v = if rings.peek().is_none() {
                        value.take()
                    } else {
                        value.clone()
                    };
                    if let Some(v) = v {
                        let result = push(ring, v, expires, None).await;
                        progress.passed(&result);
                        outcome.record(&self.inner, ring, result);
                    }
                }
                progress.finished = true;
                match outcome.last_closed {
                    Some(v) if outcome.reached == 0 && self.is_closed() => {
                        Err(SendError::Closed(ChannelClosed(v)))
                    }
                    _ => Ok(outcome.reached),
                }
            }
            Some(at) => {
                for ring in snapshot.rings() {
                    let result = push(ring, value.clone(), expires, Some(at)).await;
                    progress.passed(&result);
                    outcome.record(&self.inner, ring, result);
                }
                progress.finished = true;
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
        let Some(snapshot) = self.open_snapshot() else {
            return Err(SendError::Closed(ChannelClosed(value)));
        };
        let expires = self.expiry();
        let deadline = self
            .inner
            .options
            .send_timeout
            .and_then(|t| std::time::Instant::now().checked_add(t));
        let mut outcome = Outcome::new();
        for ring in snapshot.rings() {
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
            // `send_blocking` refuses inside a runtime before it pushes, and `push` never
            // returns this; counted as missed if it ever did.
            Err(PushError::InsideRuntime(_) | PushError::NoRuntime(_)) => {
                self.missed += ring.readers();
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
