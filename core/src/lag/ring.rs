//! `Ring<T>`: one buffer shared by every reader of a stream, each reading at its own cursor,
//! written by any number of senders, with the lag model.
//!
//! # How it works
//!
//! The ring is tokio's broadcast design with the crate's lag model on top. Values live once,
//! at increasing positions, in blocks of cells (see `slots`): the ring's mutex guards which
//! blocks hold which positions, and each cell has a small lock of its own. Each reader has a
//! position of its own. A sender pushes a value once, whatever the number of readers, and
//! touches no reader's cache lines on the common path. The mutex is a leaf (a cell's lock is
//! taken under it, never the other way round), and no user code runs under it (values that
//! leave the ring unread are dropped after it is released).
//!
//! A reader takes the positions waiting for it in one batch per lock: the blocks that hold
//! them (one `Arc` per block, not a copy per value), which it then reads one value at a time
//! under each cell's lock alone: a clone of each (readers only read the cells), or, as the
//! ring's only reader, the value itself moved out (nobody else reads it). Copying values never
//! holds the ring's lock, so senders never wait for it. The ring keeps its own copy of a
//! value until every reader is done with it *and* a sender needs the room (or a reader
//! leaves), as tokio's broadcast does: a bounded ring holds at most its capacity of values
//! (a removed position's cell is emptied at once; a block a reader still holds keeps only
//! empty cells alive). What the reader took still counts against the bound until it is
//! *consumed*: each reader publishes `consumed`, the position below which it
//! is done, in an atomic of its own, and the room a bounded ring has is `capacity − (tail −
//! min consumed)`. The sender keeps a lower bound of that minimum (`low`) and looks at the
//! readers' atomics only when the bound says the ring is full, which with readers that keep
//! up is once per `capacity` pushes.
//!
//! * [`Overflow::Wait`]: a reader gives room back in chunks (`fetch_max` on `consumed`), so a
//!   waiting sender is woken once per chunk rather than once per value. The only value a
//!   sender may remove is an expired one that no reader has taken yet.
//! * [`Overflow::DropOldest`]: the sender removes the oldest slot when the ring is full. A
//!   reader may have taken that position and not read it yet, so the reader and the sender
//!   decide who had it with one compare-and-swap on the reader's `consumed` (from `p` to
//!   `p + 1`), which the reader makes after it read the cell: the reader wins and delivers
//!   what it read, or the sender wins and counts it lost for that reader (as lag, or as
//!   expired when its time was up), and the reader discards its copy (or found the cell
//!   already emptied by the sender, which can only have happened after the sender won).
//!   Every value is thus delivered or counted exactly once per reader, as with one buffer of
//!   `capacity` per reader.
//!
//! A reader with nothing new learns so from one atomic (`changes`) without taking the lock,
//! and yields once (values a busy sender adds meanwhile are then taken in one batch, under
//! one lock); one that then finds nothing under the lock parks there (registers its waker,
//! marks itself parked), and the next push or close wakes it. The ring counts its parked
//! readers, so that a push while none is parked (the common case with busy readers) touches
//! no reader's entry: the readers write theirs as they take, and a sender reading them would
//! miss the cache.
//!
//! # Invariants
//!
//! * `head ≤ consumed ≤ next ≤ tail` for every reader (`next`: the next position it takes).
//! * `tail − head ≤ capacity` for a bounded ring; a push happens only after `make_room`
//!   found room under the lock.
//! * `low ≤ consumed` of every reader (a lower bound, refreshed from the readers' atomics).
//! * a reader never misses a wake-up: it parks only under the lock, after finding nothing to
//!   take, nothing to report and the ring open; every push and close after that wakes it.
//! * the ring's `parked` count is the number of readers whose `parked` flag is set.
//! * a waiting sender never misses room: it counts itself in `waiting` and looks at the
//!   readers' `consumed` again before it sleeps; a reader giving room back writes `consumed`
//!   then reads `waiting` (a SeqCst fence between each write and read on both sides), so one
//!   of the two sees the other.
//! * a position's cell holds its value from the push until the position is removed (or
//!   its only reader moved the value out); a reader reads a cell only at positions it took
//!   under the lock, so the value was written before it looks.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::cursor::Cursor;
use super::error::{PushError, RingStats, TryPushError};
use super::slots::Slots;
use super::{Buffer, Overflow};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
use crate::sync::{AtomicWaker, Condvar, Mutex, Notify, lock, wait_until};

/// What a reader shares with senders without the lock, on a cache line of its own; it
/// outlives the reader's place in the ring, so its counts can be read after it left.
#[repr(align(128))]
pub(crate) struct ReaderShared {
    /// The tail when it joined.
    joined: u64,
    /// The tail when it left; `u64::MAX` while it reads.
    left: AtomicU64,
    /// Counted by senders under the ring's lock; read without it (statistics).
    dropped: AtomicU64,
    lost: AtomicU64,
    /// Expired values that senders removed before this reader read them.
    expired_early: AtomicU64,
    /// Sends that timed out while this reader was there (each missed it).
    timed_out: AtomicU64,
    /// Positions below this one are done for this reader: read, skipped, or lost. Raised by
    /// the reader (compare-and-swap for a lossy ring, `fetch_max` for a lossless one) and, for
    /// values it lost, by senders under the lock.
    pub(super) consumed: AtomicU64,
    /// Statistics, written only by the reader.
    pub(super) delivered: AtomicU64,
    pub(super) expired: AtomicU64,
    /// Values read from the batch but not yet given back as room (lossless rings).
    pub(super) unreleased: AtomicUsize,
    pub(super) waker: AtomicWaker,
}

/// A reader as the ring sees it, under the lock.
pub(super) struct Reader {
    pub(super) id: u64,
    pub(super) shared: Arc<ReaderShared>,
    /// The next position this reader takes.
    pub(super) next: u64,
    /// Lost since the reader was last told.
    pub(super) unreported: u64,
    /// The reader registered its waker after finding nothing; the next push wakes it.
    pub(super) parked: bool,
}

pub(super) struct State<T> {
    pub(super) slots: Slots<T>,
    /// The position of `slots[0]`.
    pub(super) head: u64,
    pub(super) readers: Vec<Reader>,
    /// How many readers are `parked`: a push looks at the readers only when one is, so the
    /// sender leaves the readers' entries (which they write as they take) alone otherwise.
    pub(super) parked: usize,
    /// At most the `consumed` of every reader.
    low: u64,
    next_id: u64,
    pushed: u64,
    timed_out: u64,
    /// Bumped by every push and every `add_lag`; mirrored in `News::changes`.
    pub(super) changes: u64,
    /// No more pushes.
    pub(super) closed: bool,
}

impl<T> State<T> {
    pub(super) fn tail(&self) -> u64 {
        self.head + self.slots.len() as u64
    }

    pub(super) fn reader(&mut self, id: u64) -> Option<&mut Reader> {
        self.readers.iter_mut().find(|r| r.id == id)
    }

    /// Counts a send that gave up at its deadline, for the ring and for each reader there
    /// now (each missed the value); a reader that joins later does not count it.
    fn count_timed_out(&mut self) {
        self.timed_out += 1;
        for reader in &self.readers {
            // Relaxed: a statistic, written under the lock.
            reader.shared.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What readers poll without the lock, on its own cache line so that their looking does not
/// slow senders taking the ring's lock.
#[repr(align(128))]
pub(super) struct News {
    /// `State::changes`.
    pub(super) changes: AtomicU64,
    pub(super) closed: AtomicBool,
}

/// Values a push removed, dropped by the pushing caller after the lock is released (a
/// value's `Drop` is user code).
struct Evicted<T>(Vec<T>);

/// One buffer shared by every reader of a stream, with the crate's lag model: a [`Buffer`]
/// bound, an [`Overflow`] policy, [`Lagged`](crate::Lagged) reports, expiry at delivery, and
/// close.
///
/// Any number of senders push (from tasks with [`push`](Self::push), from threads with
/// [`push_blocking`](Self::push_blocking), or without ever waiting with
/// [`try_push`](Self::try_push)); each reader reads through its own [`Cursor`]
/// ([`cursor`](Self::cursor)), from the values pushed after it joined. This is the buffer
/// under every receiver of the crate — sink subscriptions, channel subscribers — and it is
/// public so that other transports give their receivers the very same behaviour. Every reader
/// sees exactly what it would see with a buffer of its own of the ring's size:
///
/// * **Bound and overflow.** Each reader has at most `n` values waiting. When one has `n`,
///   [`Overflow::Wait`] makes senders wait for room (up to their deadline), and
///   [`Overflow::DropOldest`] drops that reader's oldest value and counts it. The one
///   exception to "a buffer of its own": a deadline is the push's, not a reader's, so a push
///   that gives up because one reader is full misses every reader, those with room too (it
///   counts in each one's [`RingStats::timed_out`]). Readers that each need a deadline of
///   their own need rings of their own, as channel subscribers with a send timeout have.
/// * **Lag.** Values dropped, or lost on the way ([`add_lag`](Self::add_lag)), are reported to
///   the reader as one `Err(Lagged(n))` before its next value; then delivery carries on with
///   the oldest value still buffered.
/// * **Expiry.** A value pushed with an expiry instant is never delivered at or after it: it
///   is skipped when read (or when a sender needs its room) and counted as expired, apart
///   from lag.
/// * **Close.** [`close`](Self::close) refuses further pushes; readers drain what is
///   buffered, then read the end (`None`). A reader that goes away (its cursor dropped)
///   leaves at once: senders never wait for it again.
/// * **Weight.** With a weigher ([`with_weigher`](Self::with_weigher)), [`stats`](Self::stats)
///   reports the bytes the buffer holds.
///
/// The values are cloned once per reader, so `T` is `Clone` to read. Like tokio's broadcast,
/// the ring keeps its own copy of a value that every reader has read until a sender needs the
/// room: a bounded ring holds at most its capacity of values (an unbounded one gives back
/// what every reader read every 64 pushes), and a ring with no reader keeps nothing.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::sync::Arc;
/// use ephemeral::lag::Ring;
/// use ephemeral::{Buffer, Lagged, Overflow};
///
/// let ring = Arc::new(Ring::new(Buffer::bounded(2).unwrap(), Overflow::DropOldest));
/// let mut fast = ring.cursor();
/// let mut slow = ring.cursor();
/// ring.try_push(1, None).unwrap();
/// assert_eq!(fast.recv().await, Some(Ok(1)));
/// for n in 2..=3 {
///     assert_eq!(ring.try_push(n, None), Ok(2)); // reached two readers; never waits
/// }
/// ring.close();
///
/// let mut got = Vec::new();
/// while let Some(item) = slow.recv().await {
///     got.push(item);
/// }
/// assert_eq!(got, [Err(Lagged(1)), Ok(2), Ok(3)]); // 1 was dropped for the slow one only
/// assert_eq!(fast.recv().await, Some(Ok(2)));
/// # }
/// ```
pub struct Ring<T> {
    pub(super) capacity: Option<usize>,
    pub(super) overflow: Overflow,
    /// How many read values a lossless reader gives back as room at once.
    pub(super) chunk: usize,
    pub(super) weigher: Option<fn(&T) -> usize>,
    pub(super) state: Mutex<State<T>>,
    /// Senders (async or blocking) waiting for room.
    waiting: AtomicUsize,
    /// Async senders waiting for room.
    space: Notify,
    /// Blocking senders waiting for room (used with `state`'s mutex).
    space_blocking: Condvar,
    pub(super) news: News,
}

impl<T> Ring<T> {
    /// An empty, open ring with this bound and overflow policy, and no reader yet.
    #[must_use]
    pub fn new(buffer: Buffer, overflow: Overflow) -> Self {
        let capacity = buffer.capacity();
        Self {
            capacity,
            overflow,
            chunk: capacity.map_or(64, |cap| (cap / 8).clamp(1, 64)),
            weigher: None,
            state: Mutex::new(State {
                slots: Slots::new(),
                head: 0,
                readers: Vec::new(),
                parked: 0,
                low: 0,
                next_id: 1,
                pushed: 0,
                timed_out: 0,
                changes: 0,
                closed: false,
            }),
            waiting: AtomicUsize::new(0),
            space: Notify::new(),
            space_blocking: Condvar::new(),
            news: News {
                changes: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            },
        }
    }

    /// Measures each value with `weigh` (for example its payload length), so that
    /// [`RingStats::bytes`] tells how much the buffer holds. Costs one call per buffered value
    /// when statistics are taken, nothing on the paths that push and read.
    #[must_use]
    pub fn with_weigher(mut self, weigh: fn(&T) -> usize) -> Self {
        self.weigher = Some(weigh);
        self
    }

    /// A new reader, which reads the values pushed from now on. Dropping the cursor leaves
    /// the ring: what it had not read is discarded for it, and senders never wait for it
    /// again.
    #[must_use]
    pub fn cursor(self: &Arc<Self>) -> Cursor<T> {
        let mut state = lock(&self.state);
        let tail = state.tail();
        let shared = Arc::new(ReaderShared {
            joined: tail,
            left: AtomicU64::new(u64::MAX),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            expired_early: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            // Published to senders by the lock, which they read it under or after.
            consumed: AtomicU64::new(tail),
            delivered: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            unreleased: AtomicUsize::new(0),
            waker: AtomicWaker::new(),
        });
        let id = state.next_id;
        state.next_id += 1;
        state.readers.push(Reader {
            id,
            shared: Arc::clone(&shared),
            next: tail,
            unreported: 0,
            parked: false,
        });
        let seen = state.changes;
        drop(state);
        Cursor::new(Arc::clone(self), id, shared, seen)
    }

    /// How many readers the ring has now.
    #[must_use]
    pub fn readers(&self) -> usize {
        lock(&self.state).readers.len()
    }

    /// Removes reader `id`: the values it had not taken are released for it.
    pub(super) fn leave(&self, id: u64) {
        let mut released = Evicted(Vec::new());
        {
            let mut state = lock(&self.state);
            let Some(at) = state.readers.iter().position(|r| r.id == id) else {
                return;
            };
            let reader = state.readers.swap_remove(at);
            if reader.parked {
                state.parked -= 1;
            }
            let tail = state.tail();
            // Relaxed: a statistic.
            reader.shared.left.store(tail, Ordering::Relaxed);
            // The slots only it still needed go now (all of them when it was the last one).
            self.refresh_low(&mut state, &mut released);
        }
        // Dropped outside the lock: a value's `Drop` is user code.
        drop(released);
        // Its room is free now.
        self.space.notify_waiters();
        self.space_blocking.notify_all();
    }

    /// The bound.
    #[must_use]
    pub fn buffer(&self) -> Buffer {
        self.capacity
            .and_then(std::num::NonZeroUsize::new)
            .map_or(Buffer::Unbounded, Buffer::Bounded)
    }

    /// The overflow policy.
    #[must_use]
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    pub(super) fn weigh(&self, value: &T) -> usize {
        self.weigher.map_or(0, |weigh| weigh(value))
    }

    /// Raises `low` to the least `consumed` of the readers and removes the slots below it,
    /// which every reader is done with, into `evicted` (dropped after the lock).
    fn refresh_low(&self, state: &mut State<T>, evicted: &mut Evicted<T>) {
        let tail = state.tail();
        // SeqCst: pairs with the readers' release (see the module docs).
        state.low = state
            .readers
            .iter()
            .map(|r| r.shared.consumed.load(Ordering::SeqCst))
            .min()
            .unwrap_or(tail);
        while state.head < state.low
            && let Some(value) = state.slots.pop_front()
        {
            state.head += 1;
            evicted.0.extend(value);
        }
    }

    /// Makes room for one more value if the policy allows; values removed go to `evicted`.
    /// Whether there is room.
    #[inline]
    fn make_room(&self, state: &mut State<T>, evicted: &mut Evicted<T>) -> bool {
        let Some(cap) = self.capacity else {
            // Unbounded: every 64 pushes, give back the slots every reader is done with.
            if state.slots.len() >= 64 && state.changes.is_multiple_of(64) {
                self.refresh_low(state, evicted);
            }
            return true;
        };
        if state.slots.len() < cap {
            return true;
        }
        self.make_room_full(state, evicted)
    }

    /// `make_room` when the ring is full: expired values at the front go first (as many as
    /// there are), then, with `DropOldest`, the oldest one.
    #[inline(never)]
    fn make_room_full(&self, state: &mut State<T>, evicted: &mut Evicted<T>) -> bool {
        self.refresh_low(state, evicted);
        if self.has_room(state) {
            return true;
        }
        let mut now = None;
        while let Some(Some(at)) = state.slots.front_expires()
            && *now.get_or_insert_with(Instant::now) >= at
        {
            if !self.remove_head(state, evicted, true) {
                break;
            }
        }
        if self.has_room(state) {
            return true;
        }
        match self.overflow {
            Overflow::Wait => false,
            Overflow::DropOldest => self.remove_head(state, evicted, false),
        }
    }

    fn has_room(&self, state: &State<T>) -> bool {
        self.capacity.is_none_or(|cap| state.slots.len() < cap)
    }

    /// Removes the oldest slot, which some reader may still need, counting it for each reader
    /// that had not read it: as expired (`expired`) or as dropped, to be reported as lag.
    /// With `Wait`, only an expired value that no reader has taken may go (a reader that took
    /// it skips it by itself when it reads it, and gives its room back then); false when it
    /// may not.
    fn remove_head(&self, state: &mut State<T>, evicted: &mut Evicted<T>, expired: bool) -> bool {
        let head = state.head;
        match self.overflow {
            Overflow::Wait => {
                if state.readers.iter().any(|r| {
                    // SeqCst: see the module docs.
                    r.next > head && r.shared.consumed.load(Ordering::SeqCst) == head
                }) {
                    return false;
                }
                for reader in &mut state.readers {
                    if reader.next == head {
                        reader.next = head + 1;
                        // Relaxed: a statistic.
                        reader.shared.expired_early.fetch_add(1, Ordering::Relaxed);
                        // SeqCst: see the module docs. `fetch_max`: the reader only raises it.
                        reader.shared.consumed.fetch_max(head + 1, Ordering::SeqCst);
                    }
                }
            }
            Overflow::DropOldest => {
                for reader in &mut state.readers {
                    // The reader's compare-and-swap and this one decide who had the value.
                    let won = reader
                        .shared
                        .consumed
                        .compare_exchange(head, head + 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    if !won {
                        continue;
                    }
                    if reader.next == head {
                        reader.next = head + 1;
                    }
                    // Relaxed: statistics.
                    if expired {
                        reader.shared.expired_early.fetch_add(1, Ordering::Relaxed);
                    } else {
                        reader.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        reader.unreported = reader.unreported.saturating_add(1);
                    }
                }
            }
        }
        if let Some(value) = state.slots.pop_front() {
            state.head += 1;
            evicted.0.extend(value);
        }
        true
    }

    /// Counts a sender as waiting, then looks again. The sender writes `waiting` then reads
    /// the readers' `consumed`; a reader giving room back writes `consumed` then reads
    /// `waiting`; a SeqCst fence between the write and the read on both sides means that at
    /// least one of the two reads sees the other side's write: either this second look sees
    /// the room, or the reader sees this waiter and wakes it. (Fences rather than SeqCst
    /// accesses alone, because loom models SeqCst fences exactly and SeqCst accesses only as
    /// acquire/release.)
    fn register_waiter(&self, state: &mut State<T>, evicted: &mut Evicted<T>) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let room = self.make_room(state, evicted);
        if room {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        room
    }

    /// Appends `value` (room was made under this same lock) and wakes parked readers.
    /// Returns how many readers it reached.
    #[inline]
    fn append(&self, state: &mut State<T>, value: T, expires: Option<Instant>) -> usize {
        let readers = state.readers.len();
        if readers == 0 {
            // Nobody to keep it for. Dropped by the caller, after the lock.
            return 0;
        }
        state.slots.push_back(value, expires);
        state.pushed += 1;
        self.bump(state);
        readers
    }

    /// Publishes a change and wakes the readers parked on it.
    fn bump(&self, state: &mut State<T>) {
        state.changes += 1;
        // Release: a reader that sees the new count (Acquire) then locks and finds the change.
        // It is only a hint; parking is decided under the lock.
        self.news.changes.store(state.changes, Ordering::Release);
        if state.parked == 0 {
            return;
        }
        state.parked = 0;
        for reader in &mut state.readers {
            if std::mem::take(&mut reader.parked) {
                // A waker is the executor's code, not the user's: waking under the lock keeps
                // the park protocol simple, and the woken reader takes the lock only later.
                reader.shared.waker.wake();
            }
        }
    }

    /// Buffers `value` for every reader without ever waiting, and returns how many readers
    /// it reached. With [`Overflow::DropOldest`] (or an unbounded ring) it fails only when
    /// the ring is closed; with [`Overflow::Wait`] it also fails when a reader's buffer is
    /// full. `expires`: the instant from which the value must not be delivered.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] or [`TryPushError::Full`], with the value.
    #[inline]
    pub fn try_push(&self, value: T, expires: Option<Instant>) -> Result<usize, TryPushError<T>> {
        let mut evicted = Evicted(Vec::new());
        let result = {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(TryPushError::Closed(value));
            }
            if self.make_room(&mut state, &mut evicted) {
                Ok(self.append(&mut state, value, expires))
            } else {
                Err(TryPushError::Full(value))
            }
        };
        // The lock is released: what made room may be dropped now.
        drop(evicted);
        result
    }

    /// Buffers `value` for every reader, waiting for room under [`Overflow::Wait`] until
    /// `deadline` (forever when `None`), and returns how many readers it reached.
    /// Cancel-safe: dropping the future leaves the ring as it was.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] when the ring is or becomes closed, [`PushError::TimedOut`] when
    /// the deadline passed with a reader's buffer still full (counted in
    /// [`RingStats::timed_out`]), [`PushError::NoRuntime`] when a deadline is given and the
    /// push is polled outside a tokio runtime (whose timer keeps it; checked whether or not
    /// there is room, so the outcome does not depend on timing); all give the value back.
    pub async fn push(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<usize, PushError<T>> {
        if deadline.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return Err(PushError::NoRuntime(value));
        }
        // The common case, room at once, in a small future of its own.
        match self.try_push(value, expires) {
            Ok(reached) => Ok(reached),
            Err(TryPushError::Closed(value)) => Err(PushError::Closed(value)),
            Err(TryPushError::Full(value)) => self.push_full(value, expires, deadline).await,
        }
    }

    /// `push` when the buffer was full: make room if the policy allows, else wait for it.
    async fn push_full(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<usize, PushError<T>> {
        let mut evicted = Evicted(Vec::new());
        loop {
            let notified = {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(PushError::Closed(value));
                }
                if self.make_room(&mut state, &mut evicted) {
                    return Ok(self.append(&mut state, value, expires));
                }
                // Created before the second look: a `notify_waiters` after it wakes it.
                let notified = self.space.notified();
                if self.register_waiter(&mut state, &mut evicted) {
                    return Ok(self.append(&mut state, value, expires));
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
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(PushError::Closed(value));
                }
                // One last look: room may have come with the deadline.
                if self.make_room(&mut state, &mut evicted) {
                    return Ok(self.append(&mut state, value, expires));
                }
                state.count_timed_out();
                return Err(PushError::TimedOut(value));
            }
        }
    }

    /// Like [`push`](Self::push), blocking the thread instead of awaiting; for plain threads
    /// outside any tokio runtime.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push), plus [`PushError::InsideRuntime`] when called on a thread that
    /// runs a tokio runtime, whether or not the ring has room (so the outcome does not
    /// depend on timing): waiting there would stall the runtime, and on a current-thread
    /// runtime never end. As for [`Channel::send_blocking`](crate::Channel::send_blocking),
    /// a `spawn_blocking` thread counts as inside; use `Handle::current().block_on(ring.push(..))`
    /// there.
    pub fn push_blocking(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<std::time::Instant>,
    ) -> Result<usize, PushError<T>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(PushError::InsideRuntime(value));
        }
        let mut evicted = Evicted(Vec::new());
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(PushError::Closed(value));
            }
            if self.make_room(&mut state, &mut evicted)
                || self.register_waiter(&mut state, &mut evicted)
            {
                return Ok(self.append(&mut state, value, expires));
            }
            let guard = WaitGuard(&self.waiting);
            let (again, timed_out) = wait_until(&self.space_blocking, state, deadline);
            state = again;
            drop(guard);
            if timed_out {
                state.count_timed_out();
                return Err(PushError::TimedOut(value));
            }
        }
    }

    /// Records `n` values lost for every reader before they reached the ring (a sender that
    /// could not wait, a gap seen upstream). Readers are told with `Lagged` before their next
    /// value, as for values dropped here. Counts saturate: a loss past `u64::MAX` is told
    /// as `Lagged(u64::MAX)`, never wrapped round to a smaller (or no) report.
    pub fn add_lag(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut state = lock(&self.state);
        for reader in &mut state.readers {
            // Saturating: a loss too large to count is still reported (as `u64::MAX`), never
            // wrapped to nothing, and never a panic under the lock.
            reader.unreported = reader.unreported.saturating_add(n);
            // Written only under the lock, so a load and a store do not race. Relaxed: a
            // statistic.
            let lost = reader.shared.lost.load(Ordering::Relaxed);
            reader
                .shared
                .lost
                .store(lost.saturating_add(n), Ordering::Relaxed);
        }
        self.bump(&mut state);
    }

    /// No more pushes; readers drain what is buffered, then read the end. Waiting senders
    /// get their value back. Idempotent.
    pub fn close(&self) {
        {
            let mut state = lock(&self.state);
            state.closed = true;
            // Release: see `bump`.
            self.news.closed.store(true, Ordering::Release);
            state.parked = 0;
            for reader in &mut state.readers {
                reader.parked = false;
                reader.shared.waker.wake();
            }
        }
        self.space.notify_waiters();
        self.space_blocking.notify_all();
    }

    /// Whether the ring takes no more values (values still buffered can be read).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Wakes senders waiting for room, if any; a reader calls it after giving room back.
    pub(super) fn wake_senders(&self) {
        // SeqCst: see `register_waiter`.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock once orders this wake-up after a blocking sender's look-then-
            // wait, which it does while holding the lock.
            drop(lock(&self.state));
            self.space.notify_waiters();
            self.space_blocking.notify_all();
        }
    }

    /// What the reader behind `reader` did and holds; after it left, what it had done.
    #[must_use]
    pub(crate) fn reader_stats(&self, reader: &ReaderShared) -> RingStats {
        let state = lock(&self.state);
        let mut one = reader_stats(reader, state.tail());
        if one.bytes_from != u64::MAX {
            one.stats.bytes += self.weigh_from(&state, one.bytes_from);
        }
        one.stats
    }

    /// What the ring did and holds, summed over its readers (see [`RingStats`]).
    #[must_use]
    pub fn stats(&self) -> RingStats {
        let state = lock(&self.state);
        let tail = state.tail();
        let mut total = RingStats {
            pushed: state.pushed,
            timed_out: state.timed_out,
            ..RingStats::default()
        };
        let mut bytes_from = u64::MAX;
        for reader in &state.readers {
            let one = reader_stats(&reader.shared, tail);
            total.delivered += one.stats.delivered;
            total.dropped += one.stats.dropped;
            total.expired += one.stats.expired;
            total.lost = total.lost.saturating_add(one.stats.lost);
            total.buffered = total.buffered.max(one.stats.buffered);
            bytes_from = bytes_from.min(one.bytes_from);
            total.bytes += one.stats.bytes;
        }
        total.bytes += self.weigh_from(&state, bytes_from);
        total
    }

    /// The weight of the values at positions from `from` on: what some reader has not read
    /// yet (the ring keeps the ones every reader read until it needs their room).
    fn weigh_from(&self, state: &State<T>, from: u64) -> usize {
        if self.weigher.is_none() {
            return 0;
        }
        let skip = from.saturating_sub(state.head);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let mut bytes = 0;
        state
            .slots
            .for_each_from(skip, |value| bytes += self.weigh(value));
        bytes
    }
}

/// One reader's statistics (no `bytes`: the values are in the ring), and the position
/// from which it has not read (`u64::MAX` once it left): the caller adds the weight of the
/// values from there.
struct ReaderStats {
    stats: RingStats,
    bytes_from: u64,
}

fn reader_stats(shared: &ReaderShared, tail: u64) -> ReaderStats {
    // Relaxed: statistics, each read on its own; `consumed` and `unreleased` may be a chunk
    // apart, which the saturating arithmetic absorbs.
    let left = shared.left.load(Ordering::Relaxed);
    let (tail, buffered, bytes_from) = if left == u64::MAX {
        let consumed = shared.consumed.load(Ordering::Relaxed);
        let unreleased = shared.unreleased.load(Ordering::Relaxed) as u64;
        let buffered = tail.saturating_sub(consumed).saturating_sub(unreleased);
        (tail, buffered as usize, consumed.saturating_add(unreleased))
    } else {
        // Gone: what it had not read was discarded.
        (left, 0, u64::MAX)
    };
    ReaderStats {
        stats: RingStats {
            pushed: tail - shared.joined,
            delivered: shared.delivered.load(Ordering::Relaxed),
            dropped: shared.dropped.load(Ordering::Relaxed),
            expired: shared.expired_early.load(Ordering::Relaxed)
                + shared.expired.load(Ordering::Relaxed),
            lost: shared.lost.load(Ordering::Relaxed),
            timed_out: shared.timed_out.load(Ordering::Relaxed),
            buffered,
            bytes: 0,
        },
        bytes_from,
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("buffer", &self.buffer())
            .field("overflow", &self.overflow)
            .field("readers", &self.readers())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Keeps the `waiting` count right however a wait ends, including when a waiting send is
/// cancelled (its future dropped).
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        // SeqCst: see `Ring::register_waiter`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(all(test, ephemeral_loom))]
mod loom_model {
    //! Every interleaving (up to a preemption bound; `LOOM_MAX_PREEMPTIONS` raises it) of a
    //! sending thread and a reading thread on one ring of one slot, for each way of sending.
    //! The reading thread reads through two cursors in turn, so the per-reader positions, the
    //! lower bound senders keep of them, and the reader/sender compare-and-swap over the
    //! oldest value are all exercised, with two threads (a third makes loom far slower).
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    use super::{Cursor, Ring};
    use crate::{Buffer, Lagged, Overflow};

    /// Runs `body` under loom, exploring interleavings with up to `preemptions` preemptions
    /// (or `LOOM_MAX_PREEMPTIONS`), and checks that loom explored more than one.
    fn model(name: &str, preemptions: usize, body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        let explored = Arc::new(AtomicUsize::new(0));
        let counter = explored.clone();
        builder.check(move || {
            // Relaxed: a plain count of explored interleavings, read after the model.
            counter.fetch_add(1, Ordering::Relaxed);
            body();
        });
        let explored = explored.load(Ordering::Relaxed);
        println!("loom: {name}: {explored} interleavings");
        assert!(explored > 1, "loom explored a single interleaving");
    }

    fn one_slot(overflow: Overflow) -> Arc<Ring<u32>> {
        Arc::new(Ring::new(Buffer::bounded(1).unwrap(), overflow))
    }

    /// What one reader read: the values in order and the total of its `Lagged` reports.
    #[derive(Debug, Default, PartialEq)]
    struct Read {
        seen: Vec<u32>,
        lost: u64,
        done: bool,
    }

    /// Reads every cursor until its end, polling them in turn on this thread.
    fn read_all(cursors: &mut [Cursor<u32>]) -> Vec<Read> {
        let mut reads: Vec<Read> = cursors.iter().map(|_| Read::default()).collect();
        loom::future::block_on(poll_fn(|cx| {
            for (cursor, read) in cursors.iter_mut().zip(&mut reads) {
                while !read.done {
                    match cursor.poll_recv(cx) {
                        Poll::Pending => break,
                        Poll::Ready(Some(Ok(value))) => read.seen.push(value),
                        Poll::Ready(Some(Err(Lagged(n)))) => read.lost += n,
                        Poll::Ready(None) => read.done = true,
                    }
                }
            }
            if reads.iter().all(|r| r.done) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        reads
    }

    /// `DropOldest`, two readers: whatever the interleaving, each reader reads every value
    /// or is told it lost it (exactly once: the compare-and-swap over the oldest value), in
    /// order, the newest is never the one dropped, and both see the end.
    #[test]
    fn loom_drop_oldest_accounts_for_every_value_for_each_reader() {
        model("drop-oldest", 2, || {
            let ring = one_slot(Overflow::DropOldest);
            let mut cursors = [ring.cursor(), ring.cursor()];
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for value in 1..=3 {
                        assert_eq!(ring.try_push(value, None), Ok(2));
                    }
                    ring.close();
                })
            };
            let reads = read_all(&mut cursors);
            sender.join().unwrap();
            for (read, cursor) in reads.iter().zip(&cursors) {
                let n = read.seen.len() as u64;
                assert_eq!(n + read.lost, 3, "{read:?}");
                assert!(read.seen.is_sorted(), "out of order: {read:?}");
                assert_eq!(read.seen.last(), Some(&3));
                let stats = cursor.stats();
                assert_eq!(
                    (stats.pushed, stats.delivered, stats.dropped),
                    (3, n, read.lost)
                );
            }
        });
    }

    /// `DropOldest`, one reader, which moves values out of their cells rather than clone
    /// them: the sender emptying the oldest cell and the reader taking its value decide who
    /// had it by the same compare-and-swap, so each value is delivered or counted once, and
    /// a block the reader still holds is never reused under it.
    #[test]
    fn loom_the_only_reader_moves_values_out_and_accounts_for_each() {
        model("drop-oldest-sole", 3, || {
            let ring = one_slot(Overflow::DropOldest);
            let mut cursors = [ring.cursor()];
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for value in 1..=4 {
                        assert_eq!(ring.try_push(value, None), Ok(1));
                    }
                    ring.close();
                })
            };
            let reads = read_all(&mut cursors);
            sender.join().unwrap();
            let read = &reads[0];
            let n = read.seen.len() as u64;
            assert_eq!(n + read.lost, 4, "{read:?}");
            assert!(read.seen.is_sorted(), "out of order: {read:?}");
            assert_eq!(read.seen.last(), Some(&4));
            let stats = cursors[0].stats();
            assert_eq!(
                (stats.pushed, stats.delivered, stats.dropped),
                (4, n, read.lost)
            );
        });
    }

    /// `Wait` with an async sender, two readers: nothing is lost, order is kept, and a sender
    /// waiting for room is always woken (a lost wake-up is a deadlock, which loom reports).
    #[test]
    fn loom_wait_loses_nothing_and_wakes_the_sender() {
        // Three preemptions: losing the sender's wake-up takes two, at the lock and between
        // its two looks, plus the reader's.
        model("wait-async", 3, || {
            let ring = one_slot(Overflow::Wait);
            let mut cursors = [ring.cursor(), ring.cursor()];
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    loom::future::block_on(async {
                        for value in 1..=2 {
                            assert_eq!(ring.push(value, None, None).await, Ok(2));
                        }
                    });
                    ring.close();
                })
            };
            let reads = read_all(&mut cursors);
            sender.join().unwrap();
            for read in reads {
                assert_eq!((read.seen, read.lost), (vec![1, 2], 0));
            }
        });
    }

    /// `Wait` with a blocking sender (a plain thread on the condition variable).
    #[test]
    fn loom_wait_wakes_a_blocking_sender() {
        model("wait-blocking", 3, || {
            let ring = one_slot(Overflow::Wait);
            let mut cursors = [ring.cursor()];
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for value in 1..=2 {
                        ring.push_blocking(value, None, None).unwrap();
                    }
                    ring.close();
                })
            };
            let reads = read_all(&mut cursors);
            sender.join().unwrap();
            assert_eq!((&reads[0].seen, reads[0].lost), (&vec![1, 2], 0));
        });
    }

    /// `Wait`: a reader that goes away without reading frees the sender waiting on it (else
    /// loom reports a deadlock), and a value pushed after it left reaches nobody.
    #[test]
    fn loom_a_reader_leaving_frees_a_waiting_sender() {
        model("wait-leave", 3, || {
            let ring = one_slot(Overflow::Wait);
            let leaves = ring.cursor();
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    loom::future::block_on(async {
                        let mut reached = Vec::new();
                        for value in 1..=2 {
                            reached.push(ring.push(value, None, None).await.unwrap());
                        }
                        reached
                    })
                })
            };
            drop(leaves);
            let reached = sender.join().unwrap();
            assert!(reached.is_sorted_by(|a, b| a >= b), "{reached:?}");
            assert_eq!(ring.push_blocking(3, None, None), Ok(0));
        });
    }
}
