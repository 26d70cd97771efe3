//! The per-subscriber buffer shared between senders (who push) and one subscriber (who pops).
//!
//! Each subscriber has its own mutex, so senders contend only per subscriber, never on a
//! channel-wide lock. The mutex is a leaf: nothing else is locked while it is held, and no
//! user callback runs under it.
//!
//! Lossless subscribers (`Overflow::Wait`, or unbounded) read in batches: one lock moves the
//! whole buffer into the subscriber's private [`Local`] queue. Those messages still count
//! against the buffer bound (`taken`) until the subscriber has read them, so the bound stays
//! exact; the subscriber gives the room back in chunks, so a waiting sender is woken once per
//! chunk rather than once per message. Lossy subscribers (`DropOldest` with a bound) pop one
//! message at a time, because a message can only be dropped while it is in the shared buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use futures::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::stats::DeliveryStats;
use crate::{Lagged, Overflow};

const SPINS: u32 = 50;

/// One buffered message and the instant it expires, if the channel expires messages.
pub(crate) struct Entry<T> {
    pub(crate) value: T,
    pub(crate) expires: Option<Instant>,
}

impl<T> Entry<T> {
    fn is_expired(&self, now: &mut Option<Instant>) -> bool {
        self.expires
            .is_some_and(|at| *now.get_or_insert_with(Instant::now) >= at)
    }
}

/// Why a push did not buffer the message; the message is given back.
pub(crate) enum PushFail<T> {
    /// The subscriber is gone or the channel closed.
    Closed(T),
    /// The deadline passed while the buffer was full.
    TimedOut(T),
}

/// The subscriber's private side: the batch it took and has not read yet.
pub(crate) struct Local<T> {
    batch: VecDeque<Entry<T>>,
    /// Read from `batch` but not yet given back to senders as room.
    unreleased: usize,
    /// `SubShared::published` when this subscriber last took a batch.
    seen: u64,
}

impl<T> Local<T> {
    pub(crate) fn new() -> Self {
        Self {
            batch: VecDeque::new(),
            unreleased: 0,
            seen: 0,
        }
    }
}

/// What subscribers poll without the lock, on its own cache line so that their spinning
/// does not slow senders taking the ring's lock.
#[repr(align(128))]
struct News {
    published: AtomicU64,
    closed_hint: std::sync::atomic::AtomicBool,
}

/// Keeps the subscriber's hot counters off the cache line the senders write.
#[repr(align(128))]
struct ReaderSide {
    delivered: AtomicU64,
    expired: AtomicU64,
    /// Mirror of `Local::unreleased`, for stats.
    unreleased: AtomicUsize,
}

pub(crate) struct SubShared<T> {
    pub(crate) id: u64,
    capacity: Option<usize>,
    overflow: Overflow,
    /// Whether the subscriber reads in batches (see the module docs).
    batching: bool,
    /// How many read messages the subscriber gives back as room at once.
    chunk: usize,
    ring: Mutex<Ring<T>>,
    /// Messages the subscriber took out of `ring` and has not given back as room yet.
    /// Changed under the ring lock when taken; decreased without it when given back.
    taken: AtomicUsize,
    /// Senders (async or blocking) waiting for room.
    waiting: AtomicUsize,
    /// The subscriber's task, woken on every push and on close.
    reader: AtomicWaker,
    /// Async senders waiting for room.
    space: Notify,
    /// Blocking senders waiting for room (used with `ring`'s mutex).
    space_blocking: Condvar,
    reader_side: ReaderSide,
    /// How many messages were ever pushed (`Ring::sent`), and whether the ring is closed;
    /// written under the lock, read without it so that a subscriber with nothing new to read
    /// does not touch the lock senders use.
    news: News,
    /// Consumer callbacks that panicked (counted by the consumer task).
    pub(crate) failed: AtomicU64,
}

struct Ring<T> {
    buffer: VecDeque<Entry<T>>,
    /// Dropped since the subscriber was last told.
    unreported: u64,
    sent: u64,
    dropped: u64,
    /// Expired messages purged by senders to make room.
    expired: u64,
    timed_out: u64,
    /// No more pushes: the channel closed or the subscriber went away.
    closed: bool,
    /// The subscriber registered its waker after finding nothing (under this lock); the
    /// next push wakes it. A busy subscriber costs senders no wake-up at all.
    parked: bool,
}

impl<T> SubShared<T> {
    pub(crate) fn new(id: u64, capacity: Option<usize>, overflow: Overflow) -> Self {
        let batching = capacity.is_none() || overflow == Overflow::Wait;
        Self {
            id,
            capacity,
            overflow,
            batching,
            chunk: capacity.map_or(64, |cap| (cap / 8).clamp(1, 64)),
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity.unwrap_or(16).min(1024)),
                unreported: 0,
                sent: 0,
                dropped: 0,
                expired: 0,
                timed_out: 0,
                closed: false,
                parked: false,
            }),
            taken: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            reader: AtomicWaker::new(),
            space: Notify::new(),
            space_blocking: Condvar::new(),
            reader_side: ReaderSide {
                delivered: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                unreleased: AtomicUsize::new(0),
            },
            news: News {
                published: AtomicU64::new(0),
                closed_hint: std::sync::atomic::AtomicBool::new(false),
            },
            failed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring<T>> {
        // A poisoned lock only means a thread panicked while holding it; every update is a
        // single push, pop, swap or counter change, so the ring is still consistent.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more entry if the policy allows: expired entries go first, then
    /// (with `DropOldest`) the oldest one. Returns whether there is room now.
    fn make_room(&self, ring: &mut Ring<T>) -> bool {
        let Some(cap) = self.capacity else {
            return true;
        };
        // SeqCst: pairs with `release` (see `register_waiter`).
        let used = |ring: &Ring<T>| ring.buffer.len() + self.taken.load(Ordering::SeqCst);
        if used(ring) < cap {
            return true;
        }
        if ring.buffer.front().is_some_and(|e| e.expires.is_some()) {
            let mut now = None;
            while ring.buffer.front().is_some_and(|e| e.is_expired(&mut now)) {
                ring.buffer.pop_front();
                ring.expired += 1;
            }
            if used(ring) < cap {
                return true;
            }
        }
        match self.overflow {
            Overflow::Wait => false,
            Overflow::DropOldest => {
                // Lossy subscribers never batch, so the oldest message is in `buffer`.
                ring.buffer.pop_front();
                ring.dropped += 1;
                ring.unreported += 1;
                true
            }
        }
    }

    /// Counts a sender as waiting, then looks again. SeqCst on `waiting` and `taken` (here
    /// and in `release`) means that either this second look sees the room the subscriber
    /// gave back, or the subscriber sees this waiter and wakes it: no lost wake-up.
    fn register_waiter(&self, ring: &mut Ring<T>) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.make_room(ring) {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn buffer(&self, mut ring: MutexGuard<'_, Ring<T>>, entry: Entry<T>) {
        ring.buffer.push_back(entry);
        ring.sent += 1;
        // Release: a subscriber that sees the new count (Acquire) then locks and finds the
        // message. It is only a hint; parking is decided under the lock.
        self.news.published.store(ring.sent, Ordering::Release);
        let wake = std::mem::take(&mut ring.parked);
        drop(ring);
        if wake {
            self.reader.wake();
        }
    }

    /// Buffers `entry`, waiting for room until `deadline` under [`Overflow::Wait`].
    pub(crate) async fn push(
        &self,
        entry: Entry<T>,
        deadline: Option<Instant>,
    ) -> Result<(), PushFail<T>> {
        loop {
            let notified = {
                let mut ring = self.lock();
                if ring.closed {
                    return Err(PushFail::Closed(entry.value));
                }
                if self.make_room(&mut ring) {
                    self.buffer(ring, entry);
                    return Ok(());
                }
                // Created before the second look: a `notify_waiters` after it wakes it.
                let notified = self.space.notified();
                if self.register_waiter(&mut ring) {
                    self.buffer(ring, entry);
                    return Ok(());
                }
                notified
            };
            let guard = WaitGuard(&self.waiting);
            let woken = match deadline {
                None => {
                    notified.await;
                    true
                }
                Some(at) => tokio::time::timeout_at(at, notified).await.is_ok(),
            };
            drop(guard);
            if !woken {
                let mut ring = self.lock();
                if ring.closed {
                    return Err(PushFail::Closed(entry.value));
                }
                // One last look: room may have come with the deadline.
                if self.make_room(&mut ring) {
                    self.buffer(ring, entry);
                    return Ok(());
                }
                ring.timed_out += 1;
                return Err(PushFail::TimedOut(entry.value));
            }
        }
    }

    /// Like [`push`](Self::push), blocking the thread instead of awaiting.
    pub(crate) fn push_blocking(
        &self,
        entry: Entry<T>,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), PushFail<T>> {
        let mut ring = self.lock();
        loop {
            if ring.closed {
                return Err(PushFail::Closed(entry.value));
            }
            if self.make_room(&mut ring) || self.register_waiter(&mut ring) {
                self.buffer(ring, entry);
                return Ok(());
            }
            let guard = WaitGuard(&self.waiting);
            ring = match deadline {
                None => self
                    .space_blocking
                    .wait(ring)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        drop(guard);
                        ring.timed_out += 1;
                        return Err(PushFail::TimedOut(entry.value));
                    }
                    self.space_blocking
                        .wait_timeout(ring, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            drop(guard);
        }
    }

    fn wake_senders(&self) {
        // SeqCst: see `register_waiter`.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock once orders this wake-up after a blocking sender's look-then-
            // wait, which it does while holding the lock.
            drop(self.lock());
            self.space.notify_waiters();
            self.space_blocking.notify_all();
        }
    }

    /// Gives the messages read from the batch back to senders as room.
    fn release(&self, local: &mut Local<T>) {
        let n = std::mem::take(&mut local.unreleased);
        if n > 0 {
            // SeqCst: see `register_waiter`.
            self.taken.fetch_sub(n, Ordering::SeqCst);
            // Relaxed: a statistic, read on its own.
            self.reader_side.unreleased.store(0, Ordering::Relaxed);
            self.wake_senders();
        }
    }

    /// The next message, a lag report, `Ready(None)` once closed and empty, or `Pending`.
    /// Expired messages are skipped and counted here.
    pub(crate) fn pop(&self, local: &mut Local<T>) -> Poll<Option<Result<T, Lagged>>> {
        if !self.batching {
            return self.pop_one();
        }
        let mut now = None;
        loop {
            while let Some(entry) = local.batch.pop_front() {
                local.unreleased += 1;
                let expired = entry.is_expired(&mut now);
                // Relaxed: statistics, written only by this subscriber.
                let counter = if expired {
                    &self.reader_side.expired
                } else {
                    &self.reader_side.delivered
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.reader_side
                    .unreleased
                    .store(local.unreleased, Ordering::Relaxed);
                if local.unreleased >= self.chunk || local.batch.is_empty() {
                    self.release(local);
                }
                if !expired {
                    return Poll::Ready(Some(Ok(entry.value)));
                }
            }
            // Acquire: pairs with the Release stores in `buffer` and `close`. A stale value
            // only sends the subscriber to `park`, which looks again under the lock.
            if self.news.published.load(Ordering::Acquire) == local.seen
                && !self.news.closed_hint.load(Ordering::Acquire)
            {
                return Poll::Pending;
            }
            let mut ring = self.lock();
            local.seen = ring.sent;
            if ring.buffer.is_empty() {
                return if ring.closed {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            std::mem::swap(&mut ring.buffer, &mut local.batch);
            // SeqCst: see `register_waiter`. Under the lock, so a sender's look sees
            // `buffer` and `taken` change together.
            self.taken.fetch_add(local.batch.len(), Ordering::SeqCst);
        }
    }

    fn pop_one(&self) -> Poll<Option<Result<T, Lagged>>> {
        let mut ring = self.lock();
        if ring.unreported > 0 {
            let n = std::mem::take(&mut ring.unreported);
            return Poll::Ready(Some(Err(Lagged(n))));
        }
        let mut now = None;
        while let Some(entry) = ring.buffer.pop_front() {
            // Relaxed: statistics, written only by this subscriber.
            if entry.is_expired(&mut now) {
                self.reader_side.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.reader_side.delivered.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Some(Ok(entry.value)));
        }
        if ring.closed {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }

    /// Spins briefly waiting for a new message; whether one arrived.
    pub(crate) fn spin_for_news(&self) -> bool {
        let seen = self.news.published.load(Ordering::Acquire);
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.news.published.load(Ordering::Acquire) != seen {
                return true;
            }
        }
        false
    }

    /// The last look before the subscriber parks, under the lock that senders push under:
    /// either it finds something to return, or it registers its waker and the next push
    /// (or close) wakes it. No wake-up can be lost between the look and the registration.
    pub(crate) fn park(
        &self,
        local: &mut Local<T>,
        waker: &std::task::Waker,
    ) -> Poll<Option<Result<T, Lagged>>> {
        loop {
            if let Poll::Ready(item) = self.pop(local) {
                return Poll::Ready(item);
            }
            let mut ring = self.lock();
            if ring.buffer.is_empty() && ring.unreported == 0 && !ring.closed {
                self.reader.register(waker);
                ring.parked = true;
                return Poll::Pending;
            }
        }
    }

    /// No more pushes. With `discard`, the buffered messages are dropped too (the subscriber
    /// went away); without, the subscriber drains them, then ends.
    pub(crate) fn close(&self, discard: bool) {
        let discarded = {
            let mut ring = self.lock();
            ring.closed = true;
            ring.parked = false;
            // Release: see `published`.
            self.news.closed_hint.store(true, Ordering::Release);
            if discard {
                std::mem::take(&mut ring.buffer)
            } else {
                VecDeque::new()
            }
        };
        // Dropped outside the lock: a message's `Drop` is user code.
        drop(discarded);
        self.space.notify_waiters();
        self.space_blocking.notify_all();
        self.reader.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn stats(&self) -> DeliveryStats {
        let ring = self.lock();
        // Relaxed/SeqCst loads of statistics: each is read on its own; under the ring lock
        // `buffer` and `taken` are consistent with each other.
        let in_batch = self.taken.load(Ordering::SeqCst)
            - self
                .reader_side
                .unreleased
                .load(Ordering::Relaxed)
                .min(self.taken.load(Ordering::SeqCst));
        DeliveryStats {
            subscriber: self.id,
            sent: ring.sent,
            delivered: self.reader_side.delivered.load(Ordering::Relaxed),
            dropped: ring.dropped,
            expired: ring.expired + self.reader_side.expired.load(Ordering::Relaxed),
            timed_out: ring.timed_out,
            failed: self.failed.load(Ordering::Relaxed),
            buffered: ring.buffer.len() + in_batch,
        }
    }
}

/// Keeps the `waiting` count right however a wait ends, including when a waiting send is
/// cancelled (its future dropped).
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        // SeqCst: see `SubShared::register_waiter`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
