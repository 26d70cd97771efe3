//! The per-subscriber buffer shared between senders (who push) and one subscriber (who pops).
//!
//! Each subscriber has its own mutex, so senders contend only per subscriber, never on a
//! channel-wide lock. The mutex is a leaf: nothing else is locked while it is held, and no
//! user callback runs under it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use futures::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::stats::DeliveryStats;
use crate::{Lagged, Overflow};

/// One buffered message and the instant it expires, if the channel expires messages.
pub(crate) struct Entry<T> {
    pub(crate) value: T,
    pub(crate) expires: Option<Instant>,
}

/// Why a push did not buffer the message; the message is given back.
pub(crate) enum PushFail<T> {
    /// The subscriber is gone or the channel closed.
    Closed(T),
    /// The deadline passed while the buffer was full.
    TimedOut(T),
}

pub(crate) struct SubShared<T> {
    pub(crate) id: u64,
    capacity: Option<usize>,
    overflow: Overflow,
    ring: Mutex<Ring<T>>,
    /// The subscriber's task, woken on every push and on close.
    reader: AtomicWaker,
    /// Async senders waiting for room.
    space: Notify,
    /// Blocking senders waiting for room (used with `ring`'s mutex).
    space_blocking: Condvar,
    /// Consumer callbacks that panicked (counted by the consumer task, outside the ring).
    pub(crate) failed: AtomicU64,
}

struct Ring<T> {
    buffer: VecDeque<Entry<T>>,
    /// Dropped since the subscriber was last told.
    unreported: u64,
    sent: u64,
    delivered: u64,
    dropped: u64,
    expired: u64,
    timed_out: u64,
    /// Senders (async or blocking) waiting for room; a pop wakes them only when > 0.
    waiting: usize,
    /// No more pushes: the channel closed or the subscriber went away.
    closed: bool,
}

impl<T> SubShared<T> {
    pub(crate) fn new(id: u64, capacity: Option<usize>, overflow: Overflow) -> Self {
        Self {
            id,
            capacity,
            overflow,
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity.unwrap_or(16).min(1024)),
                unreported: 0,
                sent: 0,
                delivered: 0,
                dropped: 0,
                expired: 0,
                timed_out: 0,
                waiting: 0,
                closed: false,
            }),
            reader: AtomicWaker::new(),
            space: Notify::new(),
            space_blocking: Condvar::new(),
            failed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring<T>> {
        // A poisoned lock only means a thread panicked while holding it; every update is a
        // single push, pop or counter change, so the ring is still consistent.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more entry if the policy allows: expired entries go first, then
    /// (with `DropOldest`) the oldest one. Returns whether there is room now.
    fn make_room(&self, ring: &mut Ring<T>) -> bool {
        let Some(cap) = self.capacity else {
            return true;
        };
        if ring.buffer.len() < cap {
            return true;
        }
        if ring.buffer.front().is_some_and(|e| e.expires.is_some()) {
            let now = Instant::now();
            while ring
                .buffer
                .front()
                .is_some_and(|e| e.expires.is_some_and(|at| now >= at))
            {
                ring.buffer.pop_front();
                ring.expired += 1;
            }
            if ring.buffer.len() < cap {
                return true;
            }
        }
        match self.overflow {
            Overflow::Wait => false,
            Overflow::DropOldest => {
                ring.buffer.pop_front();
                ring.dropped += 1;
                ring.unreported += 1;
                true
            }
        }
    }

    /// Buffers `entry`, waiting for room until `deadline` under [`Overflow::Wait`].
    pub(crate) async fn push(
        &self,
        entry: Entry<T>,
        deadline: Option<Instant>,
    ) -> Result<(), PushFail<T>> {
        let mut waiter = WaitGuard {
            shared: self,
            registered: false,
        };
        loop {
            let notified = {
                let mut ring = self.lock();
                waiter.unregister(&mut ring);
                if ring.closed {
                    return Err(PushFail::Closed(entry.value));
                }
                if self.make_room(&mut ring) {
                    ring.buffer.push_back(entry);
                    ring.sent += 1;
                    drop(ring);
                    self.reader.wake();
                    return Ok(());
                }
                ring.waiting += 1;
                waiter.registered = true;
                // Created under the lock: a pop (which takes the lock first) notifies it.
                self.space.notified()
            };
            match deadline {
                None => notified.await,
                Some(at) => {
                    if tokio::time::timeout_at(at, notified).await.is_err() {
                        let mut ring = self.lock();
                        waiter.unregister(&mut ring);
                        ring.timed_out += 1;
                        return Err(PushFail::TimedOut(entry.value));
                    }
                }
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
            if self.make_room(&mut ring) {
                ring.buffer.push_back(entry);
                ring.sent += 1;
                drop(ring);
                self.reader.wake();
                return Ok(());
            }
            ring.waiting += 1;
            ring = match deadline {
                None => self
                    .space_blocking
                    .wait(ring)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        ring.waiting -= 1;
                        ring.timed_out += 1;
                        return Err(PushFail::TimedOut(entry.value));
                    }
                    self.space_blocking
                        .wait_timeout(ring, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            ring.waiting -= 1;
        }
    }

    fn wake_senders(&self) {
        self.space.notify_waiters();
        self.space_blocking.notify_all();
    }

    /// The next message, a lag report, `Ready(None)` once closed and empty, or `Pending`.
    /// Expired messages are skipped and counted here.
    pub(crate) fn pop(&self) -> Poll<Option<Result<T, Lagged>>> {
        let mut ring = self.lock();
        if ring.unreported > 0 {
            let n = std::mem::take(&mut ring.unreported);
            return Poll::Ready(Some(Err(Lagged(n))));
        }
        let mut now = None;
        let mut freed = false;
        let outcome = loop {
            match ring.buffer.pop_front() {
                Some(entry) => {
                    freed = true;
                    if let Some(at) = entry.expires
                        && *now.get_or_insert_with(Instant::now) >= at
                    {
                        ring.expired += 1;
                        continue;
                    }
                    ring.delivered += 1;
                    break Poll::Ready(Some(Ok(entry.value)));
                }
                None if ring.closed => break Poll::Ready(None),
                None => break Poll::Pending,
            }
        };
        let wake = freed && ring.waiting > 0;
        drop(ring);
        if wake {
            self.wake_senders();
        }
        outcome
    }

    /// Registers the reader's waker; a push after this wakes it.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.reader.register(waker);
    }

    /// No more pushes. With `discard`, the buffered messages are dropped too (the subscriber
    /// went away); without, the subscriber drains them, then ends.
    pub(crate) fn close(&self, discard: bool) {
        let discarded = {
            let mut ring = self.lock();
            ring.closed = true;
            if discard {
                std::mem::take(&mut ring.buffer)
            } else {
                VecDeque::new()
            }
        };
        // Dropped outside the lock: a message's `Drop` is user code.
        drop(discarded);
        self.wake_senders();
        self.reader.wake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn stats(&self) -> DeliveryStats {
        let ring = self.lock();
        DeliveryStats {
            subscriber: self.id,
            sent: ring.sent,
            delivered: ring.delivered,
            dropped: ring.dropped,
            expired: ring.expired,
            timed_out: ring.timed_out,
            // Relaxed: a statistic, read on its own.
            failed: self.failed.load(Ordering::Relaxed),
            buffered: ring.buffer.len(),
        }
    }
}

/// Keeps the `waiting` count right when a waiting send is cancelled (its future dropped).
struct WaitGuard<'a, T> {
    shared: &'a SubShared<T>,
    registered: bool,
}

impl<T> WaitGuard<'_, T> {
    fn unregister(&mut self, ring: &mut Ring<T>) {
        if std::mem::take(&mut self.registered) {
            ring.waiting -= 1;
        }
    }
}

impl<T> Drop for WaitGuard<'_, T> {
    fn drop(&mut self) {
        if self.registered {
            let mut ring = self.shared.lock();
            self.unregister(&mut ring);
        }
    }
}
