//! `Ring<T>`: one reader's buffer, written by any number of senders, with the lag model.
//!
//! # How it works
//!
//! The ring is a `VecDeque` behind a mutex of its own, so senders contend only per reader,
//! never on a lock shared by all readers. The mutex is a leaf: nothing else is locked while it
//! is held, and no user code runs under it (values that leave the ring unread are dropped
//! after it is released).
//!
//! Lossless rings (`Overflow::Wait`, or unbounded) are read in batches: one lock moves the
//! whole buffer into the reader's private [`Cursor`]. Those values still count against the
//! bound (`taken`) until the reader has read them, so the bound stays exact; the reader gives
//! the room back in chunks, so a waiting sender is woken once per chunk rather than once per
//! value. Lossy rings (`DropOldest` with a bound) are read one value at a time, because a
//! value can only be dropped while it is in the shared buffer.
//!
//! A sender wakes the reader only when the reader has *parked* (found nothing under the lock
//! and registered its waker), so a busy reader costs senders no wake-up at all; and a reader
//! with nothing new to read finds that out from one atomic (`changes`) without taking the
//! lock senders use.
//!
//! # Invariants
//!
//! * `pushed = delivered + dropped + expired + buffered` whenever the reader is between two
//!   reads (values lost before reaching the ring, [`Ring::add_lag`], are counted in `lost`).
//! * `buffer.len() + taken ≤ capacity` for a bounded ring: a push happens only after
//!   `make_room` found room under the lock.
//! * the reader never misses a wake-up: it parks only under the lock, after finding the buffer
//!   empty, nothing to report and the ring open; every push and close after that wakes it.
//! * a waiting sender never misses room: it counts itself in `waiting` and looks again under
//!   the lock before it sleeps; the reader wakes senders whenever it gives room back and sees a
//!   waiter (both sides `SeqCst`, so one of them sees the other).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use super::{Buffer, Lagged, Overflow};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
use crate::sync::{AtomicWaker, Condvar, Mutex, MutexGuard, Notify, lock, wait_until};

/// How many times a reader on a multi-threaded runtime looks for a new value before it parks.
const SPINS: u32 = 50;

/// Why a send did not buffer its value; the value is given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError<T> {
    /// The ring is closed: the reader went away or its source closed it.
    #[error("the receiver is closed: it takes no more values")]
    Closed(T),
    /// The deadline passed while the bounded buffer was full ([`Overflow::Wait`]).
    #[error(
        "the receiver's buffer stayed full until the send's deadline: read faster, give it a bigger buffer or a longer deadline"
    )]
    TimedOut(T),
}

impl<T> PushError<T> {
    /// The value that was not buffered.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Closed(value) | PushError::TimedOut(value) => value,
        }
    }
}

/// Why [`Ring::try_push`] did not buffer its value; the value is given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryPushError<T> {
    /// The ring is closed.
    #[error("the receiver is closed: it takes no more values")]
    Closed(T),
    /// The bounded buffer is full and the ring's overflow policy is [`Overflow::Wait`]: send
    /// with [`Ring::push`] to wait for room.
    #[error("the receiver's buffer is full: wait for room with `push`")]
    Full(T),
}

impl<T> TryPushError<T> {
    /// The value that was not buffered.
    pub fn into_inner(self) -> T {
        match self {
            TryPushError::Closed(value) | TryPushError::Full(value) => value,
        }
    }
}

/// Why [`Ring::try_recv`] returned no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is buffered now; more may come.
    #[error("nothing is buffered now")]
    Empty,
    /// The ring is closed and everything buffered was read: nothing more will come.
    #[error("the ring is closed and drained")]
    Closed,
}

/// What a [`Ring`] did and holds, for one reader.
///
/// `pushed == delivered + dropped + expired + buffered` holds whenever the reader is between
/// two reads, until [`Ring::close_discarding`] drops what was buffered (the reader is gone;
/// those values are counted nowhere). Values lost before they reached the ring
/// ([`Ring::add_lag`]) are counted in `lost` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RingStats {
    /// Values put into the buffer.
    pub pushed: u64,
    /// Values the reader received.
    pub delivered: u64,
    /// Values dropped from the full buffer to make room ([`Overflow::DropOldest`]).
    pub dropped: u64,
    /// Values whose expiry passed while they were buffered: skipped, never delivered.
    pub expired: u64,
    /// Values lost before reaching the buffer, as told by [`Ring::add_lag`].
    pub lost: u64,
    /// Sends that gave up at their deadline while the buffer was full (those values never
    /// entered it and were given back to their senders).
    pub timed_out: u64,
    /// Values buffered now, including those the reader took in a batch and has not read yet.
    pub buffered: usize,
    /// The size of the values buffered now, as measured by the ring's weigher
    /// ([`Ring::with_weigher`]); 0 without one.
    pub bytes: usize,
}

/// One buffered value and the instant it expires, if it does.
struct Entry<T> {
    value: T,
    expires: Option<Instant>,
}

impl<T> Entry<T> {
    /// Whether the entry's time is up; reads the clock at most once per call site (`now`).
    fn is_expired(&self, now: &mut Option<Instant>) -> bool {
        self.expires
            .is_some_and(|at| *now.get_or_insert_with(Instant::now) >= at)
    }
}

/// The reader's private side of a [`Ring`]: the batch it took and has not read yet.
///
/// Each ring has exactly one reader, and the reader keeps the one cursor it got from
/// [`Ring::cursor`] and passes it to every read. (In a shared ring read by many readers this
/// is where each reader's position would live.)
pub struct Cursor<T> {
    batch: VecDeque<Entry<T>>,
    /// Whether to spin before parking, decided at the first wait (see `may_spin`).
    spin: Option<bool>,
    /// Read from `batch` but not yet given back to senders as room.
    unreleased: usize,
    /// `News::changes` when this reader last looked under the lock.
    seen: u64,
}

impl<T> Cursor<T> {
    /// Whether the reader may spin before parking: only on a multi-threaded runtime, where
    /// the sender can run meanwhile. Asked once per cursor (asking the runtime clones its
    /// handle, an atomic shared by every worker).
    fn may_spin(&mut self) -> bool {
        *self.spin.get_or_insert_with(|| {
            matches!(
                tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
                Ok(tokio::runtime::RuntimeFlavor::MultiThread)
            )
        })
    }
}

impl<T> fmt::Debug for Cursor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("batch", &self.batch.len())
            .field("unreleased", &self.unreleased)
            .finish()
    }
}

/// What readers poll without the lock, on its own cache line so that their looking does not
/// slow senders taking the ring's lock.
#[repr(align(128))]
struct News {
    /// `pushed + lost`: bumped by every push and every `add_lag`.
    changes: AtomicU64,
    closed: AtomicBool,
}

/// The reader's counters, off the cache line the senders write.
#[repr(align(128))]
struct ReaderSide {
    delivered: AtomicU64,
    expired: AtomicU64,
    /// Mirror of `Cursor::unreleased`, for stats.
    unreleased: AtomicUsize,
    /// Weight of the values in the reader's batch (with a weigher).
    batch_bytes: AtomicUsize,
}

struct State<T> {
    buffer: VecDeque<Entry<T>>,
    /// Lost since the reader was last told.
    unreported: u64,
    pushed: u64,
    dropped: u64,
    /// Expired values removed by senders to make room.
    expired: u64,
    lost: u64,
    timed_out: u64,
    /// Read by a reader that pops one at a time (under this lock); a batching reader counts
    /// in `ReaderSide` instead.
    delivered: u64,
    /// Expired values skipped by a reader that pops one at a time.
    expired_read: u64,
    /// Weight of `buffer` (with a weigher).
    bytes: usize,
    /// No more pushes: the source closed it or the reader went away.
    closed: bool,
    /// The reader registered its waker after finding nothing (under this lock); the next
    /// push wakes it.
    parked: bool,
}

/// What a push pushed out to make room, dropped by the pushing caller after the lock is
/// released (a value's `Drop` is user code). Filled in place, never moved: an entry can be
/// large, and this is on every push's path.
struct Evicted<T> {
    /// Expired values purged from the front (allocates only when there are some).
    expired: Vec<Entry<T>>,
    /// The value `DropOldest` dropped.
    oldest: Option<Entry<T>>,
}

impl<T> Evicted<T> {
    #[inline]
    fn none() -> Self {
        Self {
            expired: Vec::new(),
            oldest: None,
        }
    }
}

/// One reader's buffer with the crate's lag model: a [`Buffer`] bound, an [`Overflow`]
/// policy, [`Lagged`] reports, expiry at delivery, and close.
///
/// Any number of senders push (from tasks with [`push`](Self::push), from threads with
/// [`push_blocking`](Self::push_blocking), or without ever waiting with
/// [`try_push`](Self::try_push)); one reader reads through its [`Cursor`]. This is the buffer
/// under every receiver of the crate — sink subscriptions, channel subscribers — and it is
/// public so that other transports (the bus) give their receivers the very same behaviour:
///
/// * **Bound and overflow.** A bounded ring holds at most `n` values. When it is full,
///   [`Overflow::Wait`] makes senders wait for room (up to their deadline), and
///   [`Overflow::DropOldest`] drops the oldest value and counts it.
/// * **Lag.** Values dropped, or lost on the way ([`add_lag`](Self::add_lag)), are reported to
///   the reader as one `Err(Lagged(n))` before its next value; then delivery carries on with
///   the oldest value still buffered.
/// * **Expiry.** A value pushed with an expiry instant is never delivered at or after it: it
///   is skipped when read (or when a sender needs its room) and counted as expired, apart
///   from lag.
/// * **Close.** [`close`](Self::close) refuses further pushes; the reader drains what is
///   buffered, then reads the end (`None`). [`close_discarding`](Self::close_discarding) is
///   for a reader that went away: it also drops what is buffered and frees waiting senders.
/// * **Weight.** With a weigher ([`with_weigher`](Self::with_weigher)), [`stats`](Self::stats)
///   reports the bytes the buffer holds.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::future::poll_fn;
/// use std::sync::Arc;
/// use ephemeral::lag::Ring;
/// use ephemeral::{Buffer, Lagged, Overflow};
///
/// let ring = Arc::new(Ring::new(Buffer::bounded(2).unwrap(), Overflow::DropOldest));
/// let mut cursor = ring.cursor();
/// for n in 1..=3 {
///     ring.try_push(n, None).unwrap(); // never waits: the oldest is dropped
/// }
/// ring.close();
///
/// let mut got = Vec::new();
/// while let Some(item) = poll_fn(|cx| ring.poll_recv(&mut cursor, cx)).await {
///     got.push(item);
/// }
/// assert_eq!(got, [Err(Lagged(1)), Ok(2), Ok(3)]);
/// assert_eq!(ring.stats().dropped, 1);
/// # }
/// ```
pub struct Ring<T> {
    capacity: Option<usize>,
    overflow: Overflow,
    /// Whether the reader takes the buffer in batches (see the module docs).
    batching: bool,
    /// How many read values the reader gives back as room at once.
    chunk: usize,
    weigher: Option<fn(&T) -> usize>,
    state: Mutex<State<T>>,
    /// Values the reader took out of `state.buffer` and has not given back as room yet.
    /// Raised under the lock when taken; lowered without it when given back.
    taken: AtomicUsize,
    /// Senders (async or blocking) waiting for room.
    waiting: AtomicUsize,
    /// The reader's task, woken by a push or a close after it parked.
    reader: AtomicWaker,
    /// Async senders waiting for room.
    space: Notify,
    /// Blocking senders waiting for room (used with `state`'s mutex).
    space_blocking: Condvar,
    reader_side: ReaderSide,
    /// Whether anything was pushed or lost since the reader last looked, and whether the ring
    /// is closed: written under the lock, read without it so that a reader with nothing new to
    /// read does not touch the lock senders use.
    news: News,
}

impl<T> Ring<T> {
    /// An empty, open ring with this bound and overflow policy.
    #[must_use]
    pub fn new(buffer: Buffer, overflow: Overflow) -> Self {
        let capacity = buffer.capacity();
        Self {
            capacity,
            overflow,
            batching: capacity.is_none() || overflow == Overflow::Wait,
            chunk: capacity.map_or(64, |cap| (cap / 8).clamp(1, 64)),
            weigher: None,
            state: Mutex::new(State {
                buffer: VecDeque::with_capacity(capacity.unwrap_or(16).min(1024)),
                unreported: 0,
                pushed: 0,
                dropped: 0,
                expired: 0,
                lost: 0,
                timed_out: 0,
                delivered: 0,
                expired_read: 0,
                bytes: 0,
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
                batch_bytes: AtomicUsize::new(0),
            },
            news: News {
                changes: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            },
        }
    }

    /// Measures each value with `weigh` (for example its payload length), so that
    /// [`RingStats::bytes`] tells how much the buffer holds. Costs one call per push and one
    /// per value leaving the ring.
    #[must_use]
    pub fn with_weigher(mut self, weigh: fn(&T) -> usize) -> Self {
        self.weigher = Some(weigh);
        self
    }

    /// The reader's cursor, to pass to every read. A ring has one reader: call this once.
    #[must_use]
    pub fn cursor(&self) -> Cursor<T> {
        Cursor {
            batch: VecDeque::new(),
            spin: None,
            unreleased: 0,
            seen: 0,
        }
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

    fn weigh(&self, value: &T) -> usize {
        self.weigher.map_or(0, |weigh| weigh(value))
    }

    /// Makes room for one more entry if the policy allows: expired entries at the front go
    /// first, then (with `DropOldest`) the oldest one, into `evicted`. Whether there is room.
    #[inline]
    fn make_room(&self, state: &mut State<T>, evicted: &mut Evicted<T>) -> bool {
        let Some(cap) = self.capacity else {
            return true;
        };
        // SeqCst: pairs with `release` (see `register_waiter`).
        let used = |state: &State<T>| state.buffer.len() + self.taken.load(Ordering::SeqCst);
        if used(state) < cap {
            return true;
        }
        let mut now = None;
        while state.buffer.front().is_some_and(|e| e.is_expired(&mut now)) {
            if let Some(entry) = state.buffer.pop_front() {
                state.expired += 1;
                self.unweigh(state, &entry);
                evicted.expired.push(entry);
            }
        }
        if used(state) < cap {
            return true;
        }
        match self.overflow {
            Overflow::Wait => false,
            Overflow::DropOldest => {
                // Lossy rings never batch, so the oldest value is in `buffer`.
                evicted.oldest = state.buffer.pop_front();
                if let Some(entry) = &evicted.oldest {
                    state.dropped += 1;
                    state.unreported += 1;
                    self.unweigh(state, entry);
                }
                true
            }
        }
    }

    fn unweigh(&self, state: &mut State<T>, entry: &Entry<T>) {
        if self.weigher.is_some() {
            state.bytes -= self.weigh(&entry.value);
        }
    }

    /// Counts a sender as waiting, then looks again. The sender writes `waiting` then reads
    /// `taken`; the reader (`release`) writes `taken` then reads `waiting`; a SeqCst fence
    /// between the write and the read on both sides means that at least one of the two reads
    /// sees the other side's write: either this second look sees the room the reader gave
    /// back, or the reader sees this waiter and wakes it. No lost wake-up. (Fences rather than
    /// SeqCst accesses alone, because loom models SeqCst fences exactly and SeqCst accesses
    /// only as acquire/release; on x86 the RMW before each fence is a full barrier already.)
    fn register_waiter(&self, state: &mut State<T>, evicted: &mut Evicted<T>) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let room = self.make_room(state, evicted);
        if room {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        room
    }

    /// Appends `value` (room was made under this same lock) and wakes a parked reader. The
    /// entry is built in the buffer's slot: a value may be large, and this runs on every push.
    #[inline]
    fn append(&self, mut state: MutexGuard<'_, State<T>>, value: T, expires: Option<Instant>) {
        state.buffer.push_back(Entry { value, expires });
        // Weighed in its slot: taking a reference to `value` before the push would make the
        // compiler copy it through the stack.
        if self.weigher.is_some()
            && let Some(entry) = state.buffer.back()
        {
            let weight = self.weigh(&entry.value);
            state.bytes += weight;
        }
        state.pushed += 1;
        // Release: a reader that sees the new count (Acquire) then locks and finds the value.
        // It is only a hint; parking is decided under the lock.
        self.news
            .changes
            .store(state.pushed + state.lost, Ordering::Release);
        let wake = std::mem::take(&mut state.parked);
        drop(state);
        if wake {
            self.reader.wake();
        }
    }

    /// Buffers `value` without ever waiting. With [`Overflow::DropOldest`] (or an unbounded
    /// ring) it fails only when the ring is closed; with [`Overflow::Wait`] it also fails when
    /// the buffer is full. `expires`: the instant from which the value must not be delivered.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Closed`] or [`TryPushError::Full`], with the value.
    #[inline]
    pub fn try_push(&self, value: T, expires: Option<Instant>) -> Result<(), TryPushError<T>> {
        let state = lock(&self.state);
        if state.closed {
            return Err(TryPushError::Closed(value));
        }
        if self.has_room(&state) {
            self.append(state, value, expires);
            return Ok(());
        }
        self.try_push_full(state, value, expires)
    }

    /// `try_push` when the buffer is full: make room if the policy allows.
    #[inline(never)]
    fn try_push_full(
        &self,
        mut state: MutexGuard<'_, State<T>>,
        value: T,
        expires: Option<Instant>,
    ) -> Result<(), TryPushError<T>> {
        let mut evicted = Evicted::none();
        let result = if self.make_room(&mut state, &mut evicted) {
            self.append(state, value, expires);
            Ok(())
        } else {
            drop(state);
            Err(TryPushError::Full(value))
        };
        // The lock is released: what made room may be dropped now.
        drop(evicted);
        result
    }

    /// Whether the buffer has room without making any.
    #[inline]
    fn has_room(&self, state: &State<T>) -> bool {
        // SeqCst: pairs with `release` (see `register_waiter`).
        self.capacity
            .is_none_or(|cap| state.buffer.len() + self.taken.load(Ordering::SeqCst) < cap)
    }

    /// Buffers `value`, waiting for room under [`Overflow::Wait`] until `deadline` (forever
    /// when `None`). Cancel-safe: dropping the future leaves the ring as it was.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`] when the ring is or becomes closed, [`PushError::TimedOut`] when
    /// the deadline passed with the buffer still full (counted in
    /// [`RingStats::timed_out`]); both give the value back.
    pub async fn push(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError<T>> {
        // The common case, room at once, in a small future of its own.
        {
            let state = lock(&self.state);
            if state.closed {
                return Err(PushError::Closed(value));
            }
            if self.has_room(&state) {
                self.append(state, value, expires);
                return Ok(());
            }
        }
        self.push_full(value, expires, deadline).await
    }

    /// `push` when the buffer was full: make room if the policy allows, else wait for it.
    async fn push_full(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<Instant>,
    ) -> Result<(), PushError<T>> {
        let mut evicted = Evicted::none();
        loop {
            let notified = {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(PushError::Closed(value));
                }
                if self.make_room(&mut state, &mut evicted) {
                    self.append(state, value, expires);
                    return Ok(());
                }
                // Created before the second look: a `notify_waiters` after it wakes it.
                let notified = self.space.notified();
                if self.register_waiter(&mut state, &mut evicted) {
                    self.append(state, value, expires);
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
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(PushError::Closed(value));
                }
                // One last look: room may have come with the deadline.
                if self.make_room(&mut state, &mut evicted) {
                    self.append(state, value, expires);
                    return Ok(());
                }
                state.timed_out += 1;
                return Err(PushError::TimedOut(value));
            }
        }
    }

    /// Like [`push`](Self::push), blocking the thread instead of awaiting; for plain threads
    /// (blocking a runtime's worker thread stalls its other tasks).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn push_blocking(
        &self,
        value: T,
        expires: Option<Instant>,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), PushError<T>> {
        let mut evicted = Evicted::none();
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(PushError::Closed(value));
            }
            if self.make_room(&mut state, &mut evicted)
                || self.register_waiter(&mut state, &mut evicted)
            {
                self.append(state, value, expires);
                return Ok(());
            }
            let guard = WaitGuard(&self.waiting);
            let (again, timed_out) = wait_until(&self.space_blocking, state, deadline);
            state = again;
            drop(guard);
            if timed_out {
                state.timed_out += 1;
                return Err(PushError::TimedOut(value));
            }
        }
    }

    /// Records `n` values lost for this reader before they reached the ring (a sender that
    /// could not wait, a gap seen upstream). The reader is told with `Lagged` before its next
    /// value, as for values dropped here.
    pub fn add_lag(&self, n: u64) {
        if n == 0 {
            return;
        }
        let wake = {
            let mut state = lock(&self.state);
            state.unreported += n;
            state.lost += n;
            // Release: see `append`.
            self.news
                .changes
                .store(state.pushed + state.lost, Ordering::Release);
            std::mem::take(&mut state.parked)
        };
        if wake {
            self.reader.wake();
        }
    }

    /// No more pushes; the reader drains what is buffered, then reads the end. Waiting
    /// senders get their value back. Idempotent.
    pub fn close(&self) {
        self.shut(false);
    }

    /// No more pushes, and what is buffered is dropped: for a reader that went away.
    /// Waiting senders get their value back. Idempotent.
    pub fn close_discarding(&self) {
        self.shut(true);
    }

    fn shut(&self, discard: bool) {
        let discarded = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.parked = false;
            // Release: see `append`.
            self.news.closed.store(true, Ordering::Release);
            if discard {
                state.bytes = 0;
                std::mem::take(&mut state.buffer)
            } else {
                VecDeque::new()
            }
        };
        // Dropped outside the lock: a value's `Drop` is user code.
        drop(discarded);
        self.space.notify_waiters();
        self.space_blocking.notify_all();
        self.reader.wake();
    }

    /// Whether the ring takes no more values (values still buffered can be read).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    fn wake_senders(&self) {
        // SeqCst: see `register_waiter`.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock once orders this wake-up after a blocking sender's look-then-
            // wait, which it does while holding the lock.
            drop(lock(&self.state));
            self.space.notify_waiters();
            self.space_blocking.notify_all();
        }
    }

    /// Gives the values read from the batch back to senders as room.
    fn release(&self, cursor: &mut Cursor<T>) {
        let n = std::mem::take(&mut cursor.unreleased);
        if n > 0 {
            // SeqCst, and the fence before `wake_senders` reads `waiting`: see
            // `register_waiter`.
            self.taken.fetch_sub(n, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // Relaxed: a statistic, read on its own.
            self.reader_side.unreleased.store(0, Ordering::Relaxed);
            self.wake_senders();
        }
    }

    /// The next value or lag report without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when nothing is buffered now, [`TryRecvError::Closed`] once
    /// the ring is closed and drained.
    pub fn try_recv(&self, cursor: &mut Cursor<T>) -> Result<Result<T, Lagged>, TryRecvError> {
        match self.pop(cursor, None) {
            Poll::Ready(Some(item)) => Ok(item),
            Poll::Ready(None) => Err(TryRecvError::Closed),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// The next value, a lag report, `Ready(None)` once the ring is closed and drained, or
    /// `Pending` with the task registered to be woken by the next push or close.
    pub fn poll_recv(
        &self,
        cursor: &mut Cursor<T>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<T, Lagged>>> {
        if let Poll::Ready(item) = self.pop(cursor, None) {
            return Poll::Ready(item);
        }
        // A brief spin before parking saves a cross-thread wake-up (a syscall) per value
        // when the sender runs on another worker thread and sends again within microseconds;
        // on a single-threaded runtime the sender cannot run meanwhile. Only lossless readers
        // spin: a lossy ring's sender never waits for its reader (the sink raises under its
        // lock), and a spinning reader only takes a core from it.
        if self.batching
            && cursor.may_spin()
            && self.spin_for_news()
            && let Poll::Ready(item) = self.pop(cursor, None)
        {
            return Poll::Ready(item);
        }
        self.pop(cursor, Some(cx.waker()))
    }

    /// The next item, `Ready(None)` once closed and drained, or `Pending`. With `park`, the
    /// last look is made under the lock that senders push under and, finding nothing, the
    /// reader registers `park` and marks itself parked there: the next push (or close) wakes
    /// it, and no wake-up can be lost between the look and the registration. Expired values
    /// are skipped and counted here.
    fn pop(&self, cursor: &mut Cursor<T>, park: Option<&Waker>) -> Poll<Option<Result<T, Lagged>>> {
        if !self.batching {
            return self.pop_one(park);
        }
        let mut now = None;
        loop {
            while let Some(entry) = cursor.batch.pop_front() {
                cursor.unreleased += 1;
                let expired = entry.is_expired(&mut now);
                if self.weigher.is_some() {
                    // Relaxed: a statistic, written only by this reader.
                    self.reader_side
                        .batch_bytes
                        .fetch_sub(self.weigh(&entry.value), Ordering::Relaxed);
                }
                // Relaxed: statistics, written only by this reader.
                let counter = if expired {
                    &self.reader_side.expired
                } else {
                    &self.reader_side.delivered
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.reader_side
                    .unreleased
                    .store(cursor.unreleased, Ordering::Relaxed);
                if cursor.unreleased >= self.chunk || cursor.batch.is_empty() {
                    self.release(cursor);
                }
                if !expired {
                    return Poll::Ready(Some(Ok(entry.value)));
                }
            }
            // Acquire: pairs with the Release stores in `append`, `add_lag` and `shut`. A
            // stale value only makes the reader look again under the lock (`park`).
            if park.is_none()
                && self.news.changes.load(Ordering::Acquire) == cursor.seen
                && !self.news.closed.load(Ordering::Acquire)
            {
                return Poll::Pending;
            }
            let mut state = lock(&self.state);
            if state.unreported > 0 {
                // `seen` stays behind, so the next look comes back here for the buffer.
                let n = std::mem::take(&mut state.unreported);
                return Poll::Ready(Some(Err(Lagged(n))));
            }
            cursor.seen = state.pushed + state.lost;
            if state.buffer.is_empty() {
                return self.nothing(&mut state, park);
            }
            std::mem::swap(&mut state.buffer, &mut cursor.batch);
            if self.weigher.is_some() {
                // Relaxed: a statistic; moved under the lock with the values it weighs.
                self.reader_side
                    .batch_bytes
                    .fetch_add(std::mem::take(&mut state.bytes), Ordering::Relaxed);
            }
            // SeqCst: see `register_waiter`. Under the lock, so a sender's look sees
            // `buffer` and `taken` change together.
            self.taken.fetch_add(cursor.batch.len(), Ordering::SeqCst);
        }
    }

    #[inline]
    fn pop_one(&self, park: Option<&Waker>) -> Poll<Option<Result<T, Lagged>>> {
        let mut now = None;
        loop {
            let mut state = lock(&self.state);
            if state.unreported > 0 {
                let n = std::mem::take(&mut state.unreported);
                return Poll::Ready(Some(Err(Lagged(n))));
            }
            // Looked at in place, so that a live value moves once, from its slot to the
            // caller.
            let Some(front) = state.buffer.front() else {
                return self.nothing(&mut state, park);
            };
            let expired = front.is_expired(&mut now);
            if self.weigher.is_some() {
                state.bytes -= self.weigh(&front.value);
            }
            // Counted under the lock the pop takes anyway: no atomic needed.
            if expired {
                state.expired_read += 1;
                let entry = state.buffer.pop_front();
                drop(state);
                // An expired value is dropped outside the lock, and the reader looks again.
                drop(entry);
                continue;
            }
            state.delivered += 1;
            if let Some(Entry { value, .. }) = state.buffer.pop_front() {
                return Poll::Ready(Some(Ok(value)));
            }
        }
    }

    /// The reader found the buffer empty and nothing to report, under the lock: the end if
    /// the ring is closed, else `Pending`, parked with `park` if given.
    fn nothing(
        &self,
        state: &mut State<T>,
        park: Option<&Waker>,
    ) -> Poll<Option<Result<T, Lagged>>> {
        if state.closed {
            return Poll::Ready(None);
        }
        if let Some(waker) = park {
            self.reader.register(waker);
            state.parked = true;
        }
        Poll::Pending
    }

    /// Spins briefly waiting for a new value; whether one arrived.
    fn spin_for_news(&self) -> bool {
        // Acquire: see `pop`.
        let seen = self.news.changes.load(Ordering::Acquire);
        for _ in 0..SPINS {
            std::hint::spin_loop();
            if self.news.changes.load(Ordering::Acquire) != seen {
                return true;
            }
        }
        false
    }

    /// What the ring did and holds, as one snapshot.
    #[must_use]
    pub fn stats(&self) -> RingStats {
        let state = lock(&self.state);
        // Under the lock `buffer` and `taken` are consistent with each other; the reader's
        // counters are Relaxed statistics, each read on its own.
        let taken = self.taken.load(Ordering::SeqCst);
        let unreleased = self.reader_side.unreleased.load(Ordering::Relaxed);
        RingStats {
            pushed: state.pushed,
            delivered: state.delivered + self.reader_side.delivered.load(Ordering::Relaxed),
            dropped: state.dropped,
            expired: state.expired
                + state.expired_read
                + self.reader_side.expired.load(Ordering::Relaxed),
            lost: state.lost,
            timed_out: state.timed_out,
            buffered: state.buffer.len() + taken.saturating_sub(unreleased),
            bytes: state.bytes + self.reader_side.batch_bytes.load(Ordering::Relaxed),
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("buffer", &self.buffer())
            .field("overflow", &self.overflow)
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
    //! Every interleaving (up to two preemptions; `LOOM_MAX_PREEMPTIONS` raises it) of a
    //! sending thread and a reading task on one ring of one slot, for each way of sending.
    use std::future::poll_fn;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    use loom::sync::Arc;

    use super::Ring;
    use crate::{Buffer, Lagged, Overflow};

    /// Runs `body` under loom, exploring interleavings with up to `preemptions` preemptions
    /// (or `LOOM_MAX_PREEMPTIONS`), and checks that loom explored more than one.
    fn model(name: &str, preemptions: usize, body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        let explored = std::sync::Arc::new(AtomicUsize::new(0));
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

    /// Reads until the end: (values in the order read, total of the `Lagged` reports).
    fn read_all(ring: &Ring<u32>) -> (Vec<u32>, u64) {
        let mut cursor = ring.cursor();
        let (mut seen, mut lost) = (Vec::new(), 0u64);
        loom::future::block_on(poll_fn(|cx| {
            loop {
                match ring.poll_recv(&mut cursor, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(value))) => seen.push(value),
                    Poll::Ready(Some(Err(Lagged(n)))) => lost += n,
                    Poll::Ready(None) => return Poll::Ready(()),
                }
            }
        }));
        (seen, lost)
    }

    /// `DropOldest`: whatever the interleaving, every value is either read or counted in a
    /// `Lagged`, in order, the newest is never the one dropped, and the reader sees the end.
    #[test]
    fn loom_drop_oldest_accounts_for_every_value() {
        model("drop-oldest", 2, || {
            let ring = one_slot(Overflow::DropOldest);
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for value in 1..=3 {
                        ring.try_push(value, None).unwrap();
                    }
                    ring.close();
                })
            };
            let (seen, lost) = read_all(&ring);
            sender.join().unwrap();
            assert_eq!(seen.len() as u64 + lost, 3, "seen {seen:?}, lost {lost}");
            assert!(seen.is_sorted(), "out of order: {seen:?}");
            assert_eq!(seen.last(), Some(&3));
            let stats = ring.stats();
            assert_eq!((stats.pushed, stats.dropped), (3, lost));
        });
    }

    /// `Wait` with async senders: nothing is lost, order is kept, and a sender waiting for
    /// room is always woken (a lost wake-up is a deadlock, which loom reports).
    #[test]
    fn loom_wait_loses_nothing_and_wakes_the_sender() {
        // Three preemptions: losing the sender's wake-up takes two, at the lock and between
        // its two looks, plus the reader's.
        model("wait-async", 3, || {
            let ring = one_slot(Overflow::Wait);
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    loom::future::block_on(async {
                        for value in 1..=2 {
                            ring.push(value, None, None).await.unwrap();
                        }
                    });
                    ring.close();
                })
            };
            let (seen, lost) = read_all(&ring);
            sender.join().unwrap();
            assert_eq!((seen, lost), (vec![1, 2], 0));
        });
    }

    /// `Wait` with a blocking sender (a plain thread on the condition variable).
    #[test]
    fn loom_wait_wakes_a_blocking_sender() {
        model("wait-blocking", 3, || {
            let ring = one_slot(Overflow::Wait);
            let sender = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    for value in 1..=2 {
                        ring.push_blocking(value, None, None).unwrap();
                    }
                    ring.close();
                })
            };
            let (seen, lost) = read_all(&ring);
            sender.join().unwrap();
            assert_eq!((seen, lost), (vec![1, 2], 0));
        });
    }
}
