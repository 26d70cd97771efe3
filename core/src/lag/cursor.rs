//! `Cursor<T>`: one reader of a [`Ring`], reading at its own position.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::error::{RingStats, TryRecvError};
use super::ring::{ReaderShared, Ring, State};
use super::{Lagged, Overflow};
use crate::sync::atomic::fence;
use crate::sync::lock;

/// The most values a reader takes under one lock: the lock is held while they are cloned,
/// and senders (a sink's `raise`, under the sink's own lock) wait meanwhile.
const MAX_TAKE: u64 = 128;

/// Whether `expires` has come; reads the clock at most once per call site (`now`).
fn is_expired(expires: Option<Instant>, now: &mut Option<Instant>) -> bool {
    expires.is_some_and(|at| *now.get_or_insert_with(Instant::now) >= at)
}

/// One reader of a [`Ring`]: its position and the batch of values it took and has not read.
///
/// Made by [`Ring::cursor`]; it reads the values pushed after it was made, with the ring's
/// lag model ([`Lagged`] reports, expiry at delivery, the end after close). Dropping it leaves
/// the ring: senders never wait for it again.
pub struct Cursor<T> {
    ring: Arc<Ring<T>>,
    id: u64,
    shared: Arc<ReaderShared>,
    read: ReadState<T>,
}

/// The reader's private state.
struct ReadState<T> {
    /// Values taken from the ring and not read yet, with their positions. Only what every
    /// value has: a value is copied in and out of here once per reader, so an entry is kept
    /// as small as the value allows.
    batch: VecDeque<(u64, T)>,
    /// The expiry instants of the values in `batch` that have one, by position, in order.
    expiries: VecDeque<(u64, Instant)>,
    /// The values in `batch` were moved out of the ring (its only reader; their weight is in
    /// the reader's `batch_bytes`), not cloned. A batch is taken whole only when the last
    /// one is read, so all of its values came the same way.
    moved: bool,
    /// Read from `batch` but not yet given back to senders as room (lossless rings).
    unreleased: usize,
    /// The position after the last value read from `batch`.
    read_to: u64,
    /// The reader found nothing and yielded once since it last returned an item (see
    /// `poll_recv`).
    yielded: bool,
    /// `News::changes` when this reader last looked under the lock.
    seen: u64,
}

impl<T> ReadState<T> {
    /// The expiry of the value at `pos`, leaving the batch now: `expiries` is in position
    /// order, so it is at the front if it has one.
    fn expiry_of(&mut self, pos: u64) -> Option<Instant> {
        while let Some(&(at_pos, at)) = self.expiries.front() {
            if at_pos > pos {
                break;
            }
            self.expiries.pop_front();
            if at_pos == pos {
                return Some(at);
            }
        }
        None
    }
}

impl<T> Cursor<T> {
    pub(super) fn new(ring: Arc<Ring<T>>, id: u64, shared: Arc<ReaderShared>, seen: u64) -> Self {
        Self {
            ring,
            id,
            shared,
            read: ReadState {
                batch: VecDeque::new(),
                expiries: VecDeque::new(),
                moved: false,
                unreleased: 0,
                read_to: 0,
                yielded: false,
                seen,
            },
        }
    }

    /// The ring this cursor reads.
    #[must_use]
    pub fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }

    /// This reader's id within its ring.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What this reader received, lost and holds.
    #[must_use]
    pub fn stats(&self) -> RingStats {
        self.ring.reader_stats(&self.shared)
    }

    /// The reader's counts, readable after the cursor is gone (with [`Ring::reader_stats`]).
    pub(crate) fn tally(&self) -> Arc<ReaderShared> {
        Arc::clone(&self.shared)
    }

    /// Whether the ring drops this reader's oldest value when it is full (rather than make
    /// senders wait): then each value is claimed from senders as it is read.
    fn lossy(&self) -> bool {
        self.ring.overflow == Overflow::DropOldest && self.ring.capacity.is_some()
    }

    /// Takes a moved value's weight off the reader's `batch_bytes` as it leaves the batch.
    fn unweigh(&self, value: &T) {
        if self.read.moved && self.ring.weigher.is_some() {
            // Relaxed: a statistic, written only by this reader.
            self.shared
                .batch_bytes
                .fetch_sub(self.ring.weigh(value), Ordering::Relaxed);
        }
    }

    /// Gives the values read from the batch back to senders as room (lossless rings).
    fn release(&mut self) {
        let n = std::mem::take(&mut self.read.unreleased);
        if n > 0 {
            // SeqCst, and the fence before `wake_senders` reads `waiting`: see the ring's
            // `register_waiter`. `fetch_max`: a sender may have moved it past an expired value.
            self.shared
                .consumed
                .fetch_max(self.read.read_to, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // Relaxed: a statistic, read on its own.
            self.shared.unreleased.store(0, Ordering::Relaxed);
            self.ring.wake_senders();
        }
    }
}

impl<T: Clone> Cursor<T> {
    /// The next value, `Err(Lagged(n))` after a loss, or `None` once the ring is closed and
    /// everything buffered for this reader was read.
    pub async fn recv(&mut self) -> Option<Result<T, Lagged>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next value or lag report without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is buffered now, [`TryRecvError::Closed`] once
    /// the ring is closed and drained.
    pub fn try_recv(&mut self) -> Result<Result<T, Lagged>, TryRecvError> {
        match self.pop(None) {
            Poll::Ready(Some(item)) => Ok(item),
            Poll::Ready(None) => Err(TryRecvError::Closed),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// The next value, a lag report, `Ready(None)` once the ring is closed and drained, or
    /// `Pending` with the task registered to be woken by the next push or close.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Lagged>>> {
        if let Poll::Ready(item) = self.pop(None) {
            self.read.yielded = false;
            return Poll::Ready(item);
        }
        // Nothing new: before parking, yield once (a self-wake, which the runtime treats as a
        // yield) so that the other ready tasks run first. A sender that keeps sending adds
        // values meanwhile, and the reader takes them in one batch under one lock instead of
        // racing the sender for the ring's lock value by value; a reader that parks at once
        // would also cost the sender a wake-up per value. Spinning instead only takes a core
        // from the sender.
        if !std::mem::replace(&mut self.read.yielded, true) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pop(Some(cx.waker()))
    }

    /// The next item, `Ready(None)` once closed and drained, or `Pending`. With `park`, the
    /// last look is made under the lock that senders push under and, finding nothing, the
    /// reader registers `park` and marks itself parked there: the next push (or close) wakes
    /// it, and no wake-up can be lost between the look and the registration. Expired values
    /// are skipped and counted here.
    fn pop(&mut self, park: Option<&Waker>) -> Poll<Option<Result<T, Lagged>>> {
        let lossy = self.lossy();
        let mut now = None;
        loop {
            while let Some((pos, value)) = self.read.batch.pop_front() {
                self.unweigh(&value);
                let expires = self.read.expiry_of(pos);
                if lossy {
                    // SeqCst: the sender dropping the oldest value makes the same exchange
                    // (see the ring's `make_room_full`); exactly one of the two succeeds.
                    let claimed = self
                        .shared
                        .consumed
                        .compare_exchange(pos, pos + 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    if !claimed {
                        drop(value);
                        if let Some(lagged) = self.lost_some() {
                            return Poll::Ready(Some(Err(lagged)));
                        }
                        continue;
                    }
                } else {
                    self.read.unreleased += 1;
                    self.read.read_to = pos + 1;
                    // Relaxed: a statistic, read on its own.
                    self.shared
                        .unreleased
                        .store(self.read.unreleased, Ordering::Relaxed);
                }
                let expired = is_expired(expires, &mut now);
                let counter = if expired {
                    &self.shared.expired
                } else {
                    &self.shared.delivered
                };
                // Relaxed: statistics. Written only by this reader, so a load and a store
                // (no locked read-modify-write on the hot path).
                counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                if !lossy && (self.read.unreleased >= self.ring.chunk || self.read.batch.is_empty())
                {
                    self.release();
                }
                if !expired {
                    return Poll::Ready(Some(Ok(value)));
                }
            }
            // Acquire: pairs with the Release stores in the ring's `bump` and `close`. A
            // stale value only makes the reader look again under the lock (`park`).
            if park.is_none()
                && self.ring.news.changes.load(Ordering::Acquire) == self.read.seen
                && !self.ring.news.closed.load(Ordering::Acquire)
            {
                return Poll::Pending;
            }
            let mut state = lock(&self.ring.state);
            let Some(at) = state.readers.iter().position(|r| r.id == self.id) else {
                return Poll::Ready(None);
            };
            if state.readers[at].unreported > 0 {
                // `seen` stays behind, so the next look comes back here for the values.
                let n = std::mem::take(&mut state.readers[at].unreported);
                return Poll::Ready(Some(Err(Lagged(n))));
            }
            let more = take(&self.ring, &self.shared, &mut self.read, &mut state, at);
            self.read.seen = if more { u64::MAX } else { state.changes };
            if self.read.batch.is_empty() {
                if state.closed {
                    return Poll::Ready(None);
                }
                if let Some(waker) = park {
                    let reader = &mut state.readers[at];
                    reader.shared.waker.register(waker);
                    if !std::mem::replace(&mut reader.parked, true) {
                        state.parked += 1;
                    }
                }
                return Poll::Pending;
            }
        }
    }

    /// A sender dropped the value the reader was about to read (and perhaps more): discards
    /// the copies below the new `consumed`, and returns the lag to report, if any (the drops
    /// of expired values are counted apart, not reported).
    fn lost_some(&mut self) -> Option<Lagged> {
        // SeqCst: see `pop`.
        let consumed = self.shared.consumed.load(Ordering::SeqCst);
        while self
            .read
            .batch
            .front()
            .is_some_and(|(pos, _)| *pos < consumed)
        {
            if let Some((pos, value)) = self.read.batch.pop_front() {
                self.unweigh(&value);
                self.read.expiry_of(pos);
            }
        }
        // The sender counted the loss under the lock, before it released it.
        let mut state = lock(&self.ring.state);
        let reader = state.reader(self.id)?;
        let n = std::mem::take(&mut reader.unreported);
        (n > 0).then_some(Lagged(n))
    }
}

/// Takes the values waiting for reader `at` into the batch, at most [`MAX_TAKE`]: a clone of
/// each, so that readers only read the slots (see the ring's docs), or the values themselves
/// when it is the ring's only reader (nobody else reads those slots, and a reader that joins
/// later starts after them). Whether more are left.
fn take<T: Clone>(
    ring: &Ring<T>,
    shared: &ReaderShared,
    read: &mut ReadState<T>,
    state: &mut State<T>,
    at: usize,
) -> bool {
    let tail = state.tail();
    let head = state.head;
    let sole = state.readers.len() == 1;
    let reader = &mut state.readers[at];
    let start = reader.next;
    let end = tail.min(start + MAX_TAKE);
    reader.next = end;
    let from = (start - head) as usize;
    let to = (end - head) as usize;
    let slots = state.slots.range_mut(from..to).zip(start..end);
    read.moved = sole;
    let expiries = &mut read.expiries;
    if sole {
        let mut moved_bytes = 0;
        read.batch.extend(slots.filter_map(|(slot, pos)| {
            let value = slot.value.take()?;
            moved_bytes += ring.weigh(&value);
            if let Some(at) = slot.expires {
                expiries.push_back((pos, at));
            }
            Some((pos, value))
        }));
        if moved_bytes > 0 {
            // Relaxed: a statistic, written only by this reader.
            shared.batch_bytes.fetch_add(moved_bytes, Ordering::Relaxed);
        }
    } else {
        read.batch.extend(slots.filter_map(|(slot, pos)| {
            let value = slot.value.clone()?;
            if let Some(at) = slot.expires {
                expiries.push_back((pos, at));
            }
            Some((pos, value))
        }));
    }
    end < tail
}

impl<T> Drop for Cursor<T> {
    fn drop(&mut self) {
        self.ring.leave(self.id);
    }
}

impl<T> fmt::Debug for Cursor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("id", &self.id)
            .field("batch", &self.read.batch.len())
            .field("unreleased", &self.read.unreleased)
            .finish()
    }
}
