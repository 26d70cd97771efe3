//! `Cursor<T>`: one reader of a [`Ring`], reading at its own position.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::error::{RingStats, TryRecvError};
use super::ring::{ReaderShared, Ring, State};
use super::slots::{BLOCK, Segment};
use super::{Lagged, Overflow};
use crate::sync::atomic::fence;
use crate::sync::lock;

/// The most positions a reader takes under one lock. Taking them costs one `Arc` per block
/// of positions (the values are read afterwards, under their cells' locks alone); the bound
/// keeps a reader from pinning more blocks than it is about to read.
const MAX_TAKE: u64 = 256;

/// Whether `expires` has come; reads the clock at most once per call site (`now`).
fn is_expired(expires: Option<Instant>, now: &mut Option<Instant>) -> bool {
    expires.is_some_and(|at| *now.get_or_insert_with(Instant::now) >= at)
}

/// One reader of a [`Ring`]: its position and the positions it took and has not read yet.
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
    /// The positions taken from the ring and not read yet, by block: the values are read
    /// from their cells one at a time, without the ring's lock.
    segments: VecDeque<Segment<T>>,
    /// The positions in `segments` were taken as the ring's only reader: their values are
    /// moved out of their cells, not cloned (nobody else reads them, and a reader that joins
    /// later starts after them). A batch is taken only when the last one is read, so all of
    /// its positions came the same way.
    moved: bool,
    /// Read from `segments` but not yet given back to senders as room (lossless rings).
    unreleased: usize,
    /// The position after the last value read.
    read_to: u64,
    /// The reader found nothing and yielded once since it last returned an item (see
    /// `poll_recv`).
    yielded: bool,
    /// `News::changes` when this reader last looked under the lock.
    seen: u64,
    /// The ring's policy and chunk, copied here: read for every value, and the ring's
    /// fields share a cache line with its lock, which senders keep writing.
    lossy: bool,
    chunk: usize,
}

impl<T: Clone> ReadState<T> {
    /// The next position taken and not read yet: its value (cloned, or moved out as the
    /// only reader; `None` when a sender removed it meanwhile) and its expiry.
    fn next_taken(&mut self) -> Option<(u64, Option<T>, Option<Instant>)> {
        let moved = self.moved;
        loop {
            let segment = self.segments.front_mut()?;
            if segment.pos == segment.end {
                if self.segments.len() == 1 {
                    // Kept: the next take may go on in its block (see `take`).
                    return None;
                }
                self.segments.pop_front();
                continue;
            }
            let pos = segment.pos;
            let (value, expires) = {
                let mut cell = lock(segment.block.cell(segment.index));
                let value = if moved {
                    cell.value.take()
                } else {
                    cell.value.clone()
                };
                (value, cell.expires)
            };
            segment.pos += 1;
            segment.index += 1;
            if segment.index == BLOCK {
                // Read to the block's end: let go of it at once, so that the ring can reuse
                // it. A block read to a position inside is kept for the next take instead,
                // which saves a count on the block's `Arc` per take for a reader that keeps
                // up (and so takes a few positions at a time).
                self.segments.pop_front();
            }
            return Some((pos, value, expires));
        }
    }
}

impl<T> ReadState<T> {
    /// Forgets the positions below `pos` (a sender removed them for this reader).
    fn skip_to(&mut self, pos: u64) {
        while let Some(segment) = self.segments.front_mut() {
            if segment.end <= pos {
                self.segments.pop_front();
                continue;
            }
            if segment.pos < pos {
                segment.index += (pos - segment.pos) as usize;
                segment.pos = pos;
            }
            break;
        }
    }

    /// Whether every position taken was read.
    fn drained(&self) -> bool {
        // Positions are read in order: when the last segment is read, all are.
        self.segments.back().is_none_or(|s| s.pos == s.end)
    }

    /// How many positions were taken and not read yet.
    fn taken(&self) -> u64 {
        self.segments.iter().map(|s| s.end - s.pos).sum()
    }
}

impl<T> Cursor<T> {
    pub(super) fn new(ring: Arc<Ring<T>>, id: u64, shared: Arc<ReaderShared>, seen: u64) -> Self {
        Self {
            id,
            shared,
            read: ReadState {
                lossy: ring.overflow == Overflow::DropOldest && ring.capacity.is_some(),
                chunk: ring.chunk,
                segments: VecDeque::new(),
                moved: false,
                unreleased: 0,
                read_to: 0,
                yielded: false,
                seen,
            },
            ring,
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
        self.read.lossy
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
            while let Some((pos, value, expires)) = self.read.next_taken() {
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
                if !lossy && (self.read.unreleased >= self.read.chunk || self.read.drained()) {
                    self.release();
                }
                // A cell is emptied under a reader only when a sender removed its position
                // for that reader, which the claim above tells (and a lossless ring removes
                // nothing a reader took): this is a guard, not a path.
                let Some(value) = value else {
                    continue;
                };
                let expired = is_expired(expires, &mut now);
                let counter = if expired {
                    &self.shared.expired
                } else {
                    &self.shared.delivered
                };
                // Relaxed: statistics. Written only by this reader, so a load and a store
                // (no locked read-modify-write on the hot path).
                counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
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
            let more = take(&mut self.read, &mut state, at);
            self.read.seen = if more { u64::MAX } else { state.changes };
            if self.read.drained() {
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
        self.read.skip_to(consumed);
        // The sender counted the loss under the lock, before it released it.
        let mut state = lock(&self.ring.state);
        let reader = state.reader(self.id)?;
        let n = std::mem::take(&mut reader.unreported);
        (n > 0).then_some(Lagged(n))
    }
}

/// Takes the positions waiting for reader `at`, at most [`MAX_TAKE`]: the blocks that hold
/// them, whose values the reader then reads without the lock (see the ring's docs). Whether
/// more are left.
fn take<T>(read: &mut ReadState<T>, state: &mut State<T>, at: usize) -> bool {
    let tail = state.tail();
    let head = state.head;
    read.moved = state.readers.len() == 1;
    let reader = &mut state.readers[at];
    let start = reader.next;
    let end = tail.min(start + MAX_TAKE);
    reader.next = end;
    let (mut from, to) = ((start - head) as usize, (end - head) as usize);
    let mut pos = start;
    // The last segment's block goes on where this take starts: extend it, rather than
    // count one more holder of the same block.
    if let Some(last) = read.segments.back_mut()
        && last.pos == last.end
        && last.end == start
        && start < end
        && state.slots.holds(from, &last.block, last.index)
    {
        let n = (BLOCK - last.index).min(to - from);
        last.end += n as u64;
        from += n;
        pos += n as u64;
    }
    read.segments.extend(state.slots.segments(from, to, pos));
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
            .field("taken", &self.read.taken())
            .field("unreleased", &self.read.unreleased)
            .finish()
    }
}
