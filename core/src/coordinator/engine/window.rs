//! The bounded window of tracked operations and the echoes of evicted ones.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::context::ContextShared;
use super::super::error::{PinError, ResultError};
use super::super::key_label::KeyLabel;
use super::super::operation_error::OperationError;
use super::super::options::EphemeralOptions;
use super::super::snapshot::{CancelReason, Echo, OperationSnapshot, OperationState};
use crate::OperationId;

/// Hashes operation ids, which are distinct counter values: one multiply spreads them, with
/// none of SipHash's cost (ids are not attacker-chosen: the coordinator hands them out).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<OperationId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Who waits for an operation's outcome (a `tower` call, `enqueue_for_result`): answered
/// once with the operation's record when it reaches its terminal state, before the window may
/// evict it, so the caller gets its outcome even when the window is too small to keep it.
///
/// The answer is made under the engine's lock (it reads the record) but sent after the unlock
/// (see [`Answers`]): sending wakes the caller's task, work the other workers should not wait
/// for.
pub(crate) struct Reply<R> {
    tx: oneshot::Sender<Answer<R>>,
    /// Makes the answer from the finished record; it may move the value out of it.
    answer: Answerer<R>,
}

/// Makes a waiting caller's answer from its operation's finished record (it may move the
/// value out of it).
pub(crate) type Answerer<R> = fn(OperationId, &mut Record<R>) -> Answer<R>;

/// What a waiting caller is told: the operation's outcome (`None` only for a record with no
/// terminal state, which a reply never sees).
pub(crate) type Answer<R> = Option<Result<R, ResultError>>;

impl<R> Reply<R> {
    /// A reply on `tx`, whose answer `answer` makes from the finished record.
    pub(crate) fn new(tx: oneshot::Sender<Answer<R>>, answer: Answerer<R>) -> Self {
        Self { tx, answer }
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Replies answered under the lock and not sent yet: taken out of the window before the
/// unlock and sent after it. Most critical sections answer at most one (a worker's finish),
/// which takes no allocation.
pub(crate) struct Answers<R> {
    first: Option<(oneshot::Sender<Answer<R>>, Answer<R>)>,
    more: Vec<(oneshot::Sender<Answer<R>>, Answer<R>)>,
}

impl<R> std::fmt::Debug for Answers<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = usize::from(self.first.is_some()) + self.more.len();
        f.debug_struct("Answers").field("count", &count).finish()
    }
}

impl<R> Default for Answers<R> {
    fn default() -> Self {
        Self {
            first: None,
            more: Vec::new(),
        }
    }
}

impl<R> Answers<R> {
    fn push(&mut self, tx: oneshot::Sender<Answer<R>>, answer: Answer<R>) {
        if self.first.is_none() {
            self.first = Some((tx, answer));
        } else {
            self.more.push((tx, answer));
        }
    }

    /// Sends every answer; never called under the engine's lock. A caller that dropped its
    /// future is not told (its answer is dropped here).
    pub(crate) fn send(self) {
        // Most sections answer nobody (a work coordinator never does): no iterator to
        // build and drop for them.
        if self.first.is_none() {
            return;
        }
        for (tx, answer) in self.first.into_iter().chain(self.more) {
            let _ = tx.send(answer);
        }
    }
}

/// One tracked operation.
#[derive(Debug)]
pub(crate) struct Record<R> {
    pub(crate) key: Option<KeyLabel>,
    pub(crate) state: OperationState,
    pub(crate) enqueued: Instant,
    pub(crate) started: Option<Instant>,
    pub(crate) finished: Option<Instant>,
    /// The window's finish counter when this operation finished: the order among finished
    /// operations (many finish in one tick, so timestamps cannot tell).
    pub(crate) finish_seq: u64,
    pub(crate) error: Option<OperationError>,
    pub(crate) panicked: bool,
    pub(crate) pinned: bool,
    /// Put aside by an admission hook's `Defer` (it shows as `Deferred`).
    pub(crate) parked: bool,
    /// Why the running body's token was cancelled, recorded when the body then ends.
    pub(crate) cancel_requested: Option<CancelReason>,
    pub(crate) result: Option<R>,
    /// Who waits for this operation's outcome (a `tower` call, `enqueue_for_result`):
    /// answered once, at its finish (a record is evicted only once finished), and dropped
    /// unanswered (its receiver sees the sender gone) only with the coordinator. Kept in the
    /// record, not in a map of its own: a call then costs no second insert and removal under
    /// the lock.
    pub(crate) reply: Option<Reply<R>>,
}

impl<R> Record<R> {
    pub(crate) fn pending(
        key: Option<KeyLabel>,
        enqueued: Instant,
        reply: Option<Reply<R>>,
    ) -> Self {
        Self {
            key,
            state: OperationState::Pending,
            enqueued,
            started: None,
            finished: None,
            finish_seq: 0,
            error: None,
            panicked: false,
            pinned: false,
            parked: false,
            cancel_requested: None,
            result: None,
            reply,
        }
    }

    /// The snapshot, showing a pending operation as `Deferred` when an admission hook put
    /// it aside or `held` (the queued jobs a defer rule holds back now) has it.
    pub(crate) fn snapshot_held(
        &self,
        id: OperationId,
        held: Option<&HashSet<OperationId>>,
    ) -> OperationSnapshot {
        let mut snapshot = self.snapshot(id);
        if snapshot.state == OperationState::Pending
            && (self.parked || held.is_some_and(|h| h.contains(&id)))
        {
            snapshot.state = OperationState::Deferred;
        }
        snapshot
    }

    pub(crate) fn snapshot(&self, id: OperationId) -> OperationSnapshot {
        OperationSnapshot {
            id,
            key: self.key.as_ref().map(KeyLabel::text),
            state: self.state.clone(),
            enqueued: self.enqueued,
            started: self.started,
            finished: self.finished,
            error: self.error.clone(),
            panicked: self.panicked,
            pinned: self.pinned,
            signals: Vec::new(),
        }
    }
}

/// Tracked operations: pending and running ones always (they are bounded by `max_pending +
/// max_concurrency` and never evicted: their snapshot would lie), finished ones up to
/// `max_tracked` and `max_lifetime`, then an [`Echo`] of each evicted one.
///
/// # Invariants
///
/// * `finished` holds exactly the unpinned finished records, in increasing `finish_seq`;
///   so their finish times never decrease along it, and eviction by count (the front) and
///   by age (a prefix) both take the oldest.
/// * `pinned` counts the pinned records (at most `max_tracked`); after every `purge`,
///   `finished.len() + pinned <= max_tracked`, and `finished` is empty with tracking off.
/// * `echoes` holds at most `echo_capacity` echoes, oldest eviction first; none has expired
///   after a `purge`. `echo_keys` holds the keys of those that have one, in the same order.
/// * `evicted_out` is empty unless `on_evicted` is set; the engine empties it before every
///   unlock.
#[derive(Debug)]
pub(crate) struct Window<R> {
    records: IdMap<Record<R>>,
    /// Unpinned finished operations, lowest `finish_seq` first, each with when it is due
    /// for eviction by age (kept here so that a purge reads no record).
    finished: VecDeque<(OperationId, Option<Instant>)>,
    /// Finishes so far; the next finish gets this plus one.
    finish_seq: u64,
    pinned: usize,
    max_tracked: usize,
    max_lifetime: Duration,
    tracking: bool,
    echo: bool,
    echo_retention: Duration,
    echo_capacity: usize,
    /// The echoes, their `key` left empty: an echo's key is in `echo_keys` as kept, and
    /// rendered into the echo when it is read.
    echoes: VecDeque<Echo>,
    /// The keys of the echoes that have one (keyed and priority coordinators), by id, in
    /// the order of `echoes`. Apart, so that an echo moves as cheaply as before keys were
    /// kept as numbers (a larger element costs a `memcpy` call per push and pop), and a
    /// coordinator without keys does no work for them.
    echo_keys: VecDeque<(OperationId, KeyLabel)>,
    evicted: u64,
    /// Whether evictions are reported (`on_evicted` is set).
    report: bool,
    /// Whether the steering task evicts by age on time (see [`sweeps`](Self::sweeps)).
    sweeps: bool,
    /// An operation became the oldest finished one in a way the steering task cannot have
    /// seen coming (the first after none, or an unpinned one put back in front): it must
    /// look again at when to evict next.
    sweep_owed: bool,
    /// Evicted operations not yet handed to `on_evicted`.
    evicted_out: Vec<OperationSnapshot>,
    /// Answers which operations raised signals, and what they raised, for echoes.
    ctx: Arc<ContextShared>,
    /// Replies answered in this critical section, to send after the unlock.
    answered: Answers<R>,
    /// Further callers waiting for unfinished operations (`wait_for_result`), answered at
    /// the finish like `reply`, before the window may evict the record. Empty but while
    /// someone waits: a finish checks its emptiness only. Bounded by the unfinished
    /// operations and the callers still waiting (the senders of dropped waits are pruned
    /// whenever another is added for the same operation).
    waiters: IdMap<Vec<Reply<R>>>,
}

impl<R> Window<R> {
    pub(crate) fn new(options: &EphemeralOptions, ctx: Arc<ContextShared>) -> Self {
        Self {
            records: IdMap::default(),
            finished: VecDeque::new(),
            finish_seq: 0,
            pinned: 0,
            max_tracked: options.max_tracked,
            max_lifetime: options.max_lifetime,
            tracking: options.tracking,
            echo: options.echo,
            // Clamped so that `now + echo_retention` cannot overflow.
            echo_retention: options
                .echo_retention
                .min(Duration::from_secs(86_400 * 365 * 30)),
            echo_capacity: options.echo_capacity,
            echoes: VecDeque::with_capacity(options.echo_capacity.min(1024)),
            echo_keys: VecDeque::new(),
            evicted: 0,
            report: options.on_evicted.is_some(),
            sweeps: options.on_evicted.is_some()
                && options.tracking
                && Instant::now().checked_add(options.max_lifetime).is_some(),
            sweep_owed: false,
            evicted_out: Vec::new(),
            ctx,
            answered: Answers::default(),
            waiters: IdMap::default(),
        }
    }

    /// The replies answered since the last call, to send after the unlock (leaving an empty
    /// `Answers`, which allocates nothing).
    pub(crate) fn take_answered(&mut self) -> Answers<R> {
        std::mem::take(&mut self.answered)
    }

    /// Starts tracking a newly accepted operation.
    pub(crate) fn insert(&mut self, id: OperationId, record: Record<R>) {
        self.records.insert(id, record);
    }

    pub(crate) fn record(&self, id: OperationId) -> Option<&Record<R>> {
        self.records.get(&id)
    }

    pub(crate) fn record_mut(&mut self, id: OperationId) -> Option<&mut Record<R>> {
        self.records.get_mut(&id)
    }

    /// Every tracked record, in no particular order.
    pub(crate) fn records(&self) -> impl Iterator<Item = (OperationId, &Record<R>)> {
        self.records.iter().map(|(id, r)| (*id, r))
    }

    /// Operations in the window now.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Finished operations evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Pinned operations now.
    pub(crate) fn pinned(&self) -> usize {
        self.pinned
    }

    /// Copies of the echoes kept now, oldest eviction first, their keys rendered.
    pub(crate) fn echoes(&self) -> impl ExactSizeIterator<Item = Echo> {
        let mut keys = self.echo_keys.iter().peekable();
        self.echoes.iter().map(move |echo| Echo {
            key: keys
                .next_if(|(id, _)| *id == echo.id)
                .map(|(_, key)| key.text()),
            ..echo.clone()
        })
    }

    /// How many echoes are kept now.
    pub(crate) fn echo_count(&self) -> usize {
        self.echoes.len()
    }

    /// Files a freshly finished operation in one lookup: `fill` completes its record, which
    /// becomes `state` at `now`; then evicts what the bounds require. Its snapshot goes to
    /// `snapshots` when given (for `on_finalized`); nothing happens for an unknown id.
    ///
    /// The snapshot is pushed here rather than returned: an `Option<OperationSnapshot>` return
    /// value is copied whole (a `memcpy` call per operation) even when it is `None`.
    pub(crate) fn settle(
        &mut self,
        id: OperationId,
        now: Instant,
        state: OperationState,
        fill: impl FnOnce(&mut Record<R>),
        snapshots: Option<&mut Vec<OperationSnapshot>>,
    ) {
        let due = self.age_due(now);
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        fill(record);
        record.state = state;
        record.finished = Some(now);
        self.finish_seq += 1;
        record.finish_seq = self.finish_seq;
        if let Some(snapshots) = snapshots {
            snapshots.push(record.snapshot(id));
        }
        if !record.pinned {
            self.sweep_owed |= self.sweeps && self.finished.is_empty();
            self.finished.push_back((id, due));
        }
        // Waiters first: the record's own reply may move the value out.
        if !self.waiters.is_empty()
            && let Some(waiters) = self.waiters.remove(&id)
        {
            for waiter in waiters {
                self.answered.push(waiter.tx, (waiter.answer)(id, record));
            }
        }
        if let Some(reply) = record.reply.take() {
            self.answered.push(reply.tx, (reply.answer)(id, record));
        }
        self.purge(now);
    }

    /// Answers `reply` with operation `id`'s outcome: now if it has finished, else at its
    /// finish (before the window may evict it). False, and `reply` dropped, for an id not
    /// tracked (never handed out, or evicted).
    pub(crate) fn answer_when_finished(&mut self, id: OperationId, reply: Reply<R>) -> bool {
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        if record.state.is_finished() {
            self.answered.push(reply.tx, (reply.answer)(id, record));
        } else {
            let waiters = self.waiters.entry(id).or_default();
            waiters.retain(|waiter| !waiter.tx.is_closed());
            waiters.push(reply);
        }
        true
    }

    /// When an operation finished at `finished` is due for eviction by age (`None`: never,
    /// the sum is past what `Instant` holds).
    fn age_due(&self, finished: Instant) -> Option<Instant> {
        finished.checked_add(self.max_lifetime)
    }

    /// Evicts by count (pins count against the bound) and by age, and expires echoes.
    pub(crate) fn purge(&mut self, now: Instant) {
        let bound = if self.tracking { self.max_tracked } else { 0 };
        while let Some(&(front, due)) = self.finished.front() {
            let over = self.finished.len() + self.pinned > bound;
            if !over && due.is_none_or(|due| due > now) {
                break;
            }
            self.finished.pop_front();
            self.evict_record(front, now);
        }
        while self.echoes.front().is_some_and(|e| e.expires <= now) {
            self.drop_oldest_echo();
        }
    }

    fn evict_record(&mut self, id: OperationId, now: Instant) {
        let Some(record) = self.records.remove(&id) else {
            return;
        };
        self.evicted += 1;
        // Only operations that raised something are looked up in the sink; `take` also
        // forgets the operation there, so that set stays bounded by the window.
        let signals = if self.ctx.take(id) {
            self.ctx.sink.signals_of(id)
        } else {
            Vec::new()
        };
        if self.report {
            let mut snapshot = record.snapshot(id);
            snapshot.signals.clone_from(&signals);
            self.evicted_out.push(snapshot);
        }
        // With tracking off only the counters are kept: no echoes either.
        if !self.echo || !self.tracking {
            return;
        }
        let Some(finished) = record.finished else {
            return;
        };
        if self.echoes.len() >= self.echo_capacity {
            self.drop_oldest_echo();
        }
        if let Some(key) = record.key {
            self.echo_keys.push_back((id, key));
        }
        self.echoes.push_back(Echo {
            id,
            key: None,
            state: record.state,
            error: record.error,
            finished,
            signals,
            expires: now + self.echo_retention,
        });
    }

    /// Drops the oldest echo, and its key if it has one.
    #[inline]
    fn drop_oldest_echo(&mut self) {
        let Some(oldest) = self.echoes.front().map(|e| e.id) else {
            return;
        };
        self.echoes.pop_front();
        // Empty for a coordinator without keys: one length check.
        if self.echo_keys.front().is_some_and(|(id, _)| *id == oldest) {
            self.echo_keys.pop_front();
        }
    }

    /// Explicit eviction of a finished, unpinned operation. Leaves an echo.
    pub(crate) fn evict(&mut self, id: OperationId, now: Instant) -> bool {
        let Some(record) = self.records.get(&id) else {
            return false;
        };
        if !record.state.is_finished() || record.pinned {
            return false;
        }
        if let Some(index) = self.finished.iter().position(|&(f, _)| f == id) {
            self.finished.remove(index);
        }
        self.evict_record(id, now);
        true
    }

    /// Whether operations are evicted by age on time, not only when the coordinator is next
    /// touched: when `on_evicted` is set (someone watches evictions), tracking is on and
    /// `max_lifetime` is finite. The steering task then evicts each at its due time
    /// ([`next_due`](Self::next_due)).
    pub(crate) fn sweeps(&self) -> bool {
        self.sweeps
    }

    /// When the oldest finished operation is due for eviction by age, if the window sweeps.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if !self.sweeps {
            return None;
        }
        self.finished.front().and_then(|&(_, due)| due)
    }

    /// Whether the steering task must look again at [`next_due`](Self::next_due) (cleared).
    pub(crate) fn take_sweep_owed(&mut self) -> bool {
        std::mem::take(&mut self.sweep_owed)
    }

    /// Whether evictions wait to be handed to `on_evicted`.
    pub(crate) fn owes_evictions(&self) -> bool {
        !self.evicted_out.is_empty()
    }

    /// The snapshots of operations evicted since the last call, for `on_evicted` (empty
    /// unless it is set).
    pub(crate) fn take_evicted(&mut self) -> Vec<OperationSnapshot> {
        std::mem::take(&mut self.evicted_out)
    }

    pub(crate) fn pin(&mut self, id: OperationId) -> Result<(), PinError> {
        let max = self.max_tracked;
        let pinned = self.pinned;
        let record = self.records.get_mut(&id).ok_or(PinError::Unknown(id))?;
        if record.pinned {
            return Ok(());
        }
        if pinned >= max {
            return Err(PinError::TooMany { max });
        }
        record.pinned = true;
        let finished = record.state.is_finished();
        self.pinned += 1;
        if finished && let Some(index) = self.finished.iter().position(|&(f, _)| f == id) {
            self.finished.remove(index);
        }
        Ok(())
    }

    pub(crate) fn unpin(&mut self, id: OperationId, now: Instant) -> bool {
        let Some(record) = self.records.get_mut(&id) else {
            return false;
        };
        if !record.pinned {
            return false;
        }
        record.pinned = false;
        self.pinned -= 1;
        if let Some(finished) = record.finished {
            // Keep the deque in finish order, so count eviction takes the oldest and age
            // eviction stays a prefix (finish times never decrease along finish order).
            let seq = record.finish_seq;
            let due = self.age_due(finished);
            let records = &self.records;
            let index = self
                .finished
                .partition_point(|(f, _)| records.get(f).is_some_and(|r| r.finish_seq < seq));
            self.finished.insert(index, (id, due));
            self.sweep_owed |= self.sweeps && index == 0;
            self.purge(now);
        }
        true
    }
}
