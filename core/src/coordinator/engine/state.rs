//! The engine's state under its lock, and the one value each critical section leaves to do
//! after the unlock.
//!
//! Every change to the queue, the counters or the window is a [`Core`] method, so the
//! counters cannot drift from what they count. A method that must wake a task, give room
//! back or run a callback does not do it: it writes it into an [`Effect`], which the engine
//! applies once the lock is released (`Inner::update`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::error::{EnqueueError, IntakeError, PinError};
use super::super::operation_error::OperationError;
use super::super::queue::{Job, PopCx, Queue};
use super::super::snapshot::{
    CancelReason, CoordinatorStats, Echo, OperationSnapshot, OperationState,
};
use super::mailbox::{Idle, Mailbox};
use super::rules::DeferRules;
use super::slot::Slot;
use super::window::{Answers, Record, Reply, Window};
use crate::{OperationId, SignalSink};

/// What a critical section leaves to do once the lock is released, in the order the engine
/// applies it: give room back, spawn or wake workers, publish `done`, then run the callbacks.
/// Small on purpose: one is built and applied for every change.
#[must_use = "an effect must be applied after the unlock"]
#[derive(Default)]
pub(crate) struct Effect {
    /// `max_pending` room to give back (items left the queue or were refused).
    pub(super) room_back: usize,
    /// Worker tasks to spawn (already counted in `Core::workers`).
    pub(super) spawn: usize,
    /// The `Effect::*` flags below.
    flags: u8,
    /// Snapshots for `on_finalized` and `on_evicted` (only when some are owed).
    pub(super) owed: Option<Box<Owed>>,
    /// The `debug` spans of operations that ended without starting, to be filled in with
    /// their outcome (empty unless a subscriber wants those spans).
    pub(super) unstarted: Vec<tracing::Span>,
}

/// Snapshots owed to the callbacks.
pub(crate) struct Owed {
    /// For `on_finalized`, in finish order.
    pub(super) finalized: Vec<OperationSnapshot>,
    /// For `on_evicted`, in eviction order.
    pub(super) evicted: Vec<OperationSnapshot>,
}

impl Effect {
    /// Close the room: intake is over, waiting `enqueue` calls fail.
    pub(super) const CLOSE_ROOM: u8 = 1;
    /// Cancel the coordinator's root token (shutdown).
    pub(super) const CANCEL_ROOT: u8 = 1 << 1;
    /// The coordinator became done: publish it, wake the workers and the steering task.
    pub(super) const DONE: u8 = 1 << 2;
    /// Wake the steering task (a `max_defer` clock started, or the window's next eviction
    /// by age changed).
    pub(super) const STEER: u8 = 1 << 3;
    /// Wake every waiting worker (a limit, a pause, a deferral or intake changed).
    pub(super) const WAKE_ALL: u8 = 1 << 5;
    /// The coordinator stopped accepting items: publish it where `is_closed`, `reserve` and
    /// `try_enqueue` read it without the lock.
    pub(super) const CLOSED: u8 = 1 << 6;

    fn set(&mut self, flag: u8) {
        self.flags |= flag;
    }

    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether any flag is set (one test for the common case of none).
    pub(super) fn any_flag(&self) -> bool {
        self.flags != 0
    }

    fn steer_if(&mut self, on: bool) {
        if on {
            self.set(Self::STEER);
        }
    }
}

/// What must follow an accepted item after the unlock.
#[must_use]
pub(crate) struct Accepted<J> {
    /// Spawn a worker for it (already counted in `Core::workers`).
    pub(super) spawn: bool,
    /// Wake this waiting worker: the item started at once, handed to it (its room comes
    /// back). Only when one waits: a worker that is busy looks for the next job under the
    /// lock when it finishes, and one about to wait looks first, so it sees this job either
    /// way.
    pub(super) wake: Option<Arc<Mailbox<J>>>,
    /// Wake the steering task (the item is held, its `max_defer` clock runs).
    pub(super) steer: bool,
}

/// How a parked job is cancelled: the reason, set by `cancel_one` and read by `unpark`, and
/// the wake-up of the job's waiting task.
struct ParkedCancel {
    wake: Option<oneshot::Sender<()>>,
    reason: Option<CancelReason>,
}

/// How a job that never started ends: a parked job whose wait ended without it running.
pub(crate) enum Unstarted {
    /// Cancelled for this reason.
    Cancelled(CancelReason),
    /// A hook's `Defer` future panicked (the message): failed, panicked.
    Panicked(Arc<str>),
}

/// How a body (or its admission) ended, as the worker saw it.
pub(crate) enum Outcome<R> {
    Ok(R),
    Err(OperationError),
    Panic(Arc<str>),
    /// The body ignored its cancelled token for the whole grace period.
    Aborted,
    /// Admission refused it.
    Refused(CancelReason),
    /// It was cancelled while its admission hooks decided, and never started: cancelled for
    /// the reason the cancel gave.
    Unstarted,
}

/// How a filed operation ended, as [`Core::finish`] decided it: what its span and events
/// report (so they can never disagree with its state).
pub(crate) enum Ended {
    Completed,
    Failed(OperationError),
    Panicked(Arc<str>),
    Cancelled,
}

/// A popped job.
pub(crate) type Taken<T, Q> = Job<T, <Q as Queue<T>>::Route>;

/// What a worker does next.
pub(crate) enum Next<T, Q: Queue<T>> {
    /// Start this job.
    Start(Taken<T, Q>),
    /// Wait for a wake-up (the worker is counted idle).
    Wait,
    /// Exit (the worker is no longer counted).
    Exit,
}

/// Everything under the engine's lock: the queue, the window and the counters.
///
/// # Invariants
///
/// Between critical sections:
///
/// * `accepted == queue.len() + parked + running + completed + failed + cancelled`: every
///   accepted item is queued, put aside by an admission hook, taken by a worker, or counted
///   in exactly one terminal state.
/// * Every queued, parked or running item has a `Pending` or `Running` record in the window;
///   a running one (taken by a worker) is named by exactly one of `slots`, the slot of the
///   worker that took it, through which a cancel reaches it.
/// * `running <= limit` whenever a job is taken (lowering the limit lets running bodies
///   finish first); `running <= peak`.
/// * `workers` counts the worker tasks spawned and not exited; `idle.len() + waking <=
///   workers`: `idle` lists the workers waiting with nobody to wake them yet (each at most
///   once), `waking` counts those woken with no job that have not looked for one yet.
/// * `cancelled` implies `closed`; `done` implies `closed` with nothing queued, parked,
///   running or streaming in (`intakes == 0`), and once set it stays set.
/// * `defer_since.is_some()` exactly while the coordinator-wide defer rule held at its last
///   evaluation; meanwhile every queued job is held. `overdue` counts the queued jobs past
///   `max_defer` under `DeferPolicy::Run`.
/// * `finalized_out` is empty unless `on_finalized` is set, and is emptied (with the
///   window's evictions) into the [`Effect`] before every unlock.
pub(crate) struct Core<T, R, Q: Queue<T>> {
    queue: Q,
    window: Window<R>,
    defer: DeferRules,
    /// Whether `on_finalized` is set (finished operations are snapshotted for it).
    report_finalized: bool,
    parked: usize,
    /// Each parked job's cancel (`cancel_operation`): the reason, kept for `unpark`, and the
    /// wake-up of its waiting task.
    parked_cancels: HashMap<OperationId, ParkedCancel>,
    running: usize,
    workers: usize,
    idle: Vec<Idle<Taken<T, Q>>>,
    waking: usize,
    limit: usize,
    paused: bool,
    closed: bool,
    cancelled: bool,
    intakes: usize,
    done: bool,
    /// When the current deferral by `defer_on` began.
    defer_since: Option<Instant>,
    /// The sink's sequence when `defer_on` was last seen not holding: a deferral noticed
    /// later began after it.
    defer_lifted: Option<u64>,
    overdue: usize,
    accepted: u64,
    completed: u64,
    failed: u64,
    cancelled_count: u64,
    panicked: u64,
    peak: u64,
    intake_error: Option<IntakeError>,
    finalized_out: Vec<OperationSnapshot>,
    /// The slots of the live workers (registered before they take a job).
    slots: Vec<Arc<Slot>>,
    /// Whether items may be accepted through the inbox, without the lock: the queue accepts
    /// every item as it comes and no coordinator-wide defer rule can hold one (fixed at
    /// creation).
    lockfree: bool,
    /// Whether admission hooks are set: a taken job then keeps its room among `max_pending`
    /// until they decide (the worker gives it back), so that one a hook puts aside is still
    /// counted against the bound, as every accepted item not started is.
    hooked: bool,
    /// Whether each start records the sink's sequence in its slot (`cancel_running_on` is
    /// set), so that a signal cancels only what started before it was raised.
    stamp_starts: bool,
    _item: std::marker::PhantomData<fn(T)>,
}

impl<T, R, Q: Queue<T>> Core<T, R, Q> {
    pub(crate) fn new(
        queue: Q,
        window: Window<R>,
        defer: DeferRules,
        limit: usize,
        report_finalized: bool,
        hooked: bool,
    ) -> Self {
        let lockfree = Q::ALWAYS_ACCEPTS && defer.defer_on.is_none();
        Self {
            queue,
            window,
            defer,
            report_finalized,
            parked: 0,
            parked_cancels: HashMap::new(),
            running: 0,
            workers: 0,
            idle: Vec::new(),
            waking: 0,
            limit,
            paused: false,
            closed: false,
            cancelled: false,
            intakes: 0,
            done: false,
            defer_since: None,
            defer_lifted: None,
            overdue: 0,
            accepted: 0,
            completed: 0,
            failed: 0,
            cancelled_count: 0,
            panicked: 0,
            peak: 0,
            intake_error: None,
            finalized_out: Vec::new(),
            slots: Vec::new(),
            lockfree,
            hooked,
            stamp_starts: false,
            _item: std::marker::PhantomData,
        }
    }

    /// Records the sink's sequence at every start (see `stamp_starts`).
    pub(crate) fn with_start_stamps(mut self, on: bool) -> Self {
        self.stamp_starts = on;
        self
    }

    // ----- Reading -----------------------------------------------------------------------

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Accepted items not started (deferred and parked included).
    pub(crate) fn pending(&self) -> usize {
        self.queue.len() + self.parked
    }

    pub(crate) fn intake_error(&self) -> Option<IntakeError> {
        self.intake_error.clone()
    }

    pub(crate) fn queue(&self) -> &Q {
        &self.queue
    }

    pub(crate) fn record(&self, id: OperationId) -> Option<&Record<R>> {
        self.window.record(id)
    }

    /// See [`Window::answer_when_finished`].
    pub(crate) fn answer_when_finished(&mut self, id: OperationId, reply: Reply<R>) -> bool {
        self.window.answer_when_finished(id, reply)
    }

    /// Every tracked record, in no particular order.
    pub(crate) fn records(&self) -> impl Iterator<Item = (OperationId, &Record<R>)> {
        self.window.records()
    }

    pub(crate) fn echoes(&self) -> impl ExactSizeIterator<Item = Echo> {
        self.window.echoes()
    }

    /// One consistent snapshot of the counters.
    pub(crate) fn stats(&self) -> CoordinatorStats {
        CoordinatorStats {
            accepted: self.accepted,
            pending: self.pending() as u64,
            running: self.running as u64,
            completed: self.completed,
            failed: self.failed,
            cancelled: self.cancelled_count,
            panicked: self.panicked,
            evicted: self.window.evicted(),
            tracked: self.window.len() as u64,
            pinned: self.window.pinned() as u64,
            echoes: self.window.echo_count() as u64,
            max_concurrency: self.limit as u64,
            peak_running: self.peak,
        }
    }

    /// The queued jobs a defer rule holds back (`None` when no rule could), so snapshots can
    /// show them `Deferred`. Jobs past `max_defer` under `DeferPolicy::Run` may start, so
    /// they are not held.
    pub(crate) fn held(&self) -> Option<HashSet<OperationId>> {
        if self.defer.defer_on.is_none() && !self.queue.has_route_deferral() {
            return None;
        }
        let mut held = HashSet::new();
        self.queue.for_each(&mut |job| {
            if job.is_held() && !job.is_overdue() {
                held.insert(job.id);
            }
        });
        Some(held)
    }

    // ----- The window ----------------------------------------------------------------------

    /// Evicts what the window's bounds require at `now`.
    pub(crate) fn purge(&mut self, now: Instant) {
        self.window.purge(now);
    }

    pub(crate) fn pin(&mut self, id: OperationId) -> Result<(), PinError> {
        self.window.pin(id)
    }

    pub(crate) fn unpin(&mut self, id: OperationId, now: Instant) -> bool {
        self.window.unpin(id, now)
    }

    pub(crate) fn evict(&mut self, id: OperationId, now: Instant) -> bool {
        self.window.evict(id, now)
    }

    // ----- Intake --------------------------------------------------------------------------

    /// Accepts an item whose room (a forgotten `room` permit) the caller holds. Accepting
    /// never ends or evicts an operation, so instead of an [`Effect`] it returns the little
    /// that must happen after the unlock; on refusal the item comes back in the error and
    /// the caller gives the room back.
    pub(crate) fn accept(
        &mut self,
        job: Job<T, Q::Route>,
        reply: Option<Reply<R>>,
        sink: &SignalSink,
        now: Instant,
        from_intake: bool,
    ) -> Result<Accepted<Taken<T, Q>>, EnqueueError<T>> {
        // An intake stream started before `complete()` may still feed items after it.
        if self.cancelled || (self.closed && !from_intake) {
            return Err(EnqueueError::Closed(job.item));
        }
        if let Some((lane, reason)) = self.queue.refuse(&job.route) {
            return Err(EnqueueError::Refused {
                item: job.item,
                lane,
                reason,
            });
        }
        let mut job = job;
        // The coordinator-wide defer rule is looked at now, not only when a worker or the
        // steering task next runs (which, under a clock that jumps, can be much later): an item
        // accepted while a deferral is live is held, and its `max_defer` clock runs, from
        // its acceptance.
        let mut held = self.defer.defer_on.is_some() && self.refresh_deferral(sink, now);
        held |= self.defer_since.is_some() && job.hold(now);
        // So do the route-level (lane) rules, before the queue decides whether it holds the
        // job it takes.
        if self.queue.has_route_deferral() {
            let mut cx = PopCx {
                sink,
                now,
                global: self.defer_since.is_some(),
                held: false,
            };
            self.queue.refresh_routes(&mut cx);
            held |= cx.held;
        }
        held |= self.take_in(job, reply, now);
        // A waiting worker is handed the next job here, started under this lock, so it need
        // not take the lock again to find it; one more worker if jobs still go unserved.
        let mut fx = Effect::default();
        let wake = self.hand_one(&mut fx, sink, now);
        let spawn = self.spawn_for_queue(1) == 1;
        Ok(Accepted {
            spawn,
            wake,
            steer: (held || fx.has(Effect::STEER)) && self.defer.max_defer.is_some(),
        })
    }

    /// Records an accepted job (enqueued at `now`) and queues it; returns whether a
    /// route-level deferral holds it. For an item left in the inbox, under the first lock
    /// after its enqueue (never after `complete` or `cancel`, which take the inbox in first).
    pub(crate) fn take_in(
        &mut self,
        job: Job<T, Q::Route>,
        reply: Option<Reply<R>>,
        now: Instant,
    ) -> bool {
        self.window
            .insert(job.id, Record::pending(job.key.clone(), now, reply));
        self.accepted += 1;
        self.queue.push(job)
    }

    /// Whether items may be accepted through the inbox, without the lock (see `lockfree`).
    pub(crate) fn is_lockfree(&self) -> bool {
        self.lockfree
    }

    /// Whether the inbox may be open now: accepting an item needs nothing of the lock (it
    /// would neither wake nor spawn a worker, and the coordinator still takes items), and
    /// items already wait (a backlog: without one, as with a service whose callers wait for
    /// each result, the lock is no bottleneck and the flag would flip with every item).
    pub(crate) fn inbox_may_open(&self) -> bool {
        self.lockfree
            && !self.closed
            && self.idle.is_empty()
            && self.workers >= self.limit
            && self.queue.len() > 0
    }

    /// After items were taken in from the inbox: hands startable jobs to waiting workers
    /// (pushing their mailboxes onto `woken`, to wake after the unlock) and spawns the
    /// workers the rest of the queue can use, as `accept` does for one item.
    pub(crate) fn hand_out(
        &mut self,
        fx: &mut Effect,
        sink: &SignalSink,
        woken: &mut Vec<Arc<Mailbox<Taken<T, Q>>>>,
    ) {
        if !self.idle.is_empty() && self.queue.len() > 0 {
            let now = Instant::now();
            while let Some(mailbox) = self.hand_one(fx, sink, now) {
                woken.push(mailbox);
            }
        }
        fx.spawn += self.spawn_for_queue(usize::MAX);
    }

    /// Starts the next job for one waiting worker and hands it over; returns the worker's
    /// mailbox, to wake after the unlock. `None` when no worker waits, or when nothing may
    /// start (paused, deferred, at the limit, the key busy): the worker then stays on the
    /// list, and nobody wakes it for nothing.
    fn hand_one(
        &mut self,
        fx: &mut Effect,
        sink: &SignalSink,
        now: Instant,
    ) -> Option<Arc<Mailbox<Taken<T, Q>>>> {
        let idle = self.idle.pop()?;
        match self.try_start(fx, sink, &idle.slot, now) {
            Some(taken) => {
                idle.mailbox.hand(taken);
                Some(idle.mailbox)
            }
            None => {
                self.idle.push(idle);
                None
            }
        }
    }

    /// Counts (and returns) up to `at_most` more workers, as many as the queued jobs
    /// outnumber the workers that will look for them (waiting, or woken and about to look),
    /// within the limit. The caller spawns them.
    fn spawn_for_queue(&mut self, at_most: usize) -> usize {
        let unserved = self
            .queue
            .len()
            .saturating_sub(self.idle.len() + self.waking);
        let spawn = unserved
            .min(self.limit.saturating_sub(self.workers))
            .min(at_most);
        self.workers += spawn;
        spawn
    }

    /// An intake stream starts; `false` (with the error recorded) after `complete()`.
    pub(crate) fn start_intake(&mut self) -> bool {
        if self.closed {
            self.intake_error.get_or_insert(IntakeError {
                message: Arc::from("intake started after complete()"),
            });
            return false;
        }
        self.intakes += 1;
        true
    }

    /// An intake stream failed; the first error is the one `drain` returns.
    pub(crate) fn intake_failed(&mut self, message: Arc<str>) {
        self.intake_error.get_or_insert(IntakeError { message });
    }

    /// An intake stream ended.
    pub(crate) fn end_intake(&mut self, fx: &mut Effect) {
        self.intakes -= 1;
        if self.closed && self.intakes == 0 {
            fx.set(Effect::CLOSE_ROOM);
        }
    }

    // ----- Lifecycle -------------------------------------------------------------------------

    /// Stops accepting items (idempotent).
    pub(crate) fn complete(&mut self, fx: &mut Effect) {
        if !self.closed {
            self.closed = true;
            fx.set(Effect::CLOSED);
            // While intake streams run, the room stays open for them; `accept` refuses
            // everyone else.
            if self.intakes == 0 {
                fx.set(Effect::CLOSE_ROOM);
            }
        }
        fx.set(Effect::WAKE_ALL);
    }

    /// `cancel()` and dropping the last handle: refuse new items, end queued ones
    /// `Cancelled(Shutdown)`, and cancel running bodies through their tokens.
    pub(crate) fn shutdown(&mut self, fx: &mut Effect, now: Instant) {
        self.closed = true;
        self.cancelled = true;
        fx.set(Effect::CLOSED);
        fx.set(Effect::CLOSE_ROOM);
        fx.set(Effect::CANCEL_ROOT);
        fx.set(Effect::WAKE_ALL);
        self.overdue = 0;
        for job in self.queue.take_all() {
            fx.room_back += 1;
            self.settle_unstarted(fx, job, now, CancelReason::Shutdown);
        }
        // Running operations are cancelled through their workers' slots, under the lock that
        // also guards every start, so none is missed.
        for slot in &self.slots {
            if let Some(id) = slot.running() {
                slot.cancel(id);
            }
        }
    }

    pub(crate) fn pause(&mut self) {
        self.paused = true;
    }

    pub(crate) fn resume(&mut self, fx: &mut Effect) {
        self.paused = false;
        self.wake_all(fx);
    }

    pub(crate) fn set_limit(&mut self, fx: &mut Effect, limit: usize) {
        self.limit = limit;
        self.wake_all(fx);
    }

    /// Spawns the workers the queue can use now and wakes every waiting one.
    pub(crate) fn wake_all(&mut self, fx: &mut Effect) {
        let wanted = self.limit.min(self.running + self.queue.len());
        let spawn = wanted.saturating_sub(self.workers);
        self.workers += spawn;
        fx.spawn += spawn;
        fx.set(Effect::WAKE_ALL);
    }

    /// Cancels one operation: a queued one ends at once, a running one has its token
    /// cancelled (the reason is recorded when its body ends). Returns whether it was either.
    pub(crate) fn cancel_one(
        &mut self,
        fx: &mut Effect,
        id: OperationId,
        reason: CancelReason,
        now: Instant,
    ) -> bool {
        if let Some(job) = self.queue.remove(id) {
            fx.room_back += 1;
            self.overdue -= usize::from(job.is_overdue());
            self.settle_unstarted(fx, job, now, reason);
            return true;
        }
        // Put aside by an admission hook: its waiting task ends it (at its next poll).
        if let Some(cancel) = self.parked_cancels.get_mut(&id) {
            cancel.reason.get_or_insert(reason);
            if let Some(wake) = cancel.wake.take() {
                let _ = wake.send(());
            }
            return true;
        }
        let Some(record) = self.window.record_mut(id) else {
            return false;
        };
        if record.state != OperationState::Running {
            return false;
        }
        let Some(slot) = self.slots.iter().find(|s| s.runs(id)) else {
            return false;
        };
        record.cancel_requested.get_or_insert(reason);
        slot.cancel(id);
        true
    }

    /// Cancels through its token every body that started before the `cancel_running_on`
    /// signal of sequence `seq` was raised (one started after it, before the steering task
    /// looked, goes on).
    pub(crate) fn cancel_running(&mut self, reason: &CancelReason, seq: u64) {
        for slot in &self.slots {
            let Some(id) = slot.running() else {
                continue;
            };
            if !slot.started_before(seq) {
                continue;
            }
            if let Some(record) = self.window.record_mut(id)
                && record.state == OperationState::Running
            {
                record
                    .cancel_requested
                    .get_or_insert_with(|| reason.clone());
                slot.cancel(id);
            }
        }
    }

    /// The replies answered in this critical section, to send after the unlock.
    #[inline]
    pub(crate) fn take_answered(&mut self) -> Answers<R> {
        self.window.take_answered()
    }

    /// Ends the critical section's bookkeeping: publishes `done` when it is reached, and
    /// moves the owed callbacks into `fx`.
    #[inline]
    pub(crate) fn conclude(&mut self, fx: &mut Effect) {
        if self.closed
            && !self.done
            && self.queue.len() == 0
            && self.parked == 0
            && self.running == 0
            && self.intakes == 0
        {
            self.done = true;
            fx.set(Effect::DONE);
        }
        if self.window.take_sweep_owed() {
            fx.set(Effect::STEER);
        }
        // Most sections owe no callback and allocate nothing here.
        if !self.finalized_out.is_empty() || self.window.owes_evictions() {
            fx.owed = Some(Box::new(Owed {
                finalized: std::mem::take(&mut self.finalized_out),
                evicted: self.window.take_evicted(),
            }));
        }
    }

    // ----- Workers ---------------------------------------------------------------------------

    /// What a worker without a job does: exit if there are more workers than the limit or
    /// nothing is left to do, start a job if one may start, or wait (counted idle).
    /// `now` is the caller's clock reading (a finishing worker's finish time).
    pub(crate) fn next_for_worker(
        &mut self,
        fx: &mut Effect,
        sink: &SignalSink,
        slot: &Arc<Slot>,
        mailbox: &Arc<Mailbox<Taken<T, Q>>>,
        now: Instant,
    ) -> Next<T, Q> {
        if self.workers > self.limit {
            self.exit(slot);
            return Next::Exit;
        }
        if let Some(taken) = self.try_start(fx, sink, slot, now) {
            return Next::Start(taken);
        }
        if self.closed && self.queue.len() == 0 {
            self.exit(slot);
            return Next::Exit;
        }
        self.idle.push(Idle {
            slot: slot.clone(),
            mailbox: mailbox.clone(),
        });
        Next::Wait
    }

    /// Takes every waiting worker off the idle list, for a section that wakes them all: the
    /// caller wakes each mailbox once after the unlock.
    pub(crate) fn take_idle(&mut self) -> Vec<Arc<Mailbox<Taken<T, Q>>>> {
        self.waking += self.idle.len();
        self.idle.drain(..).map(|idle| idle.mailbox).collect()
    }

    /// A new worker registers its slot, before it takes any job.
    pub(crate) fn register(&mut self, slot: Arc<Slot>) {
        self.slots.push(slot);
    }

    /// A worker retires `old` (a context of its last operation outlived the body) for
    /// `fresh`.
    pub(crate) fn replace_slot(&mut self, old: &Arc<Slot>, fresh: Arc<Slot>) {
        match self.slots.iter_mut().find(|s| Arc::ptr_eq(s, old)) {
            Some(slot) => *slot = fresh,
            None => self.slots.push(fresh),
        }
    }

    /// A worker exits (it holds no job): no longer counted, its slot forgotten.
    fn exit(&mut self, slot: &Arc<Slot>) {
        self.workers -= 1;
        if let Some(i) = self.slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
            self.slots.swap_remove(i);
        }
    }

    /// A worker woken with no job looks for one.
    pub(crate) fn woke(&mut self) {
        self.waking -= 1;
    }

    /// Takes the next job if the limits, the pause and the defer rules allow: it is
    /// `Running` from here on (its admission checks included).
    /// `now` is the caller's clock reading: a finishing worker passes its finish time, so the
    /// next job's start costs no second read (the two are one instant apart under one lock).
    pub(crate) fn try_start(
        &mut self,
        fx: &mut Effect,
        sink: &SignalSink,
        slot: &Slot,
        now: Instant,
    ) -> Option<Taken<T, Q>> {
        if self.paused || self.running >= self.limit || self.queue.len() == 0 {
            return None;
        }
        if self.defer.defer_on.is_some() {
            let held = self.refresh_deferral(sink, now);
            fx.steer_if(held && self.defer.max_defer.is_some());
        }
        if self.defer_since.is_some() && self.overdue == 0 {
            return None;
        }
        let mut cx = PopCx {
            sink,
            now,
            global: self.defer_since.is_some(),
            held: false,
        };
        let job = self.queue.pop(&mut cx);
        fx.steer_if(cx.held && self.defer.max_defer.is_some());
        let job = job?;
        if self.overdue > 0 {
            self.overdue -= usize::from(job.is_overdue());
        }
        self.running += 1;
        self.peak = self.peak.max(self.running as u64);
        // With admission hooks the job keeps its room until they decide (see `hooked`).
        fx.room_back += usize::from(!self.hooked);
        slot.set_running(Some(job.id));
        if self.stamp_starts {
            // Lock order core → sink: see `inner.rs`.
            slot.set_start_seq(sink.sequence());
        }
        if let Some(record) = self.window.record_mut(job.id) {
            record.state = OperationState::Running;
            record.started = Some(now);
        }
        Some(job)
    }

    /// An admission hook deferred a taken job: it holds no slot while put aside.
    pub(crate) fn park(
        &mut self,
        id: OperationId,
        route: &Q::Route,
        slot: &Slot,
        wake: oneshot::Sender<()>,
    ) {
        self.running -= 1;
        self.parked += 1;
        self.queue.set_aside(route);
        // A cancel that reached the job through its slot after the hooks' last look and
        // before this lock is kept, and ends the wait at once: the job ends cancelled
        // rather than waiting, then starting.
        let reason = slot.is_cancelled(id).then(|| self.cancel_reason(id));
        let mut wake = Some(wake);
        if reason.is_some()
            && let Some(wake) = wake.take()
        {
            let _ = wake.send(());
        }
        self.parked_cancels
            .insert(id, ParkedCancel { wake, reason });
        slot.set_running(None);
        if let Some(record) = self.window.record_mut(id) {
            record.state = OperationState::Pending;
            record.started = None;
            record.parked = true;
        }
    }

    /// A parked job's wait ended: it ends with `ends`, or goes back first in line.
    pub(crate) fn unpark(
        &mut self,
        fx: &mut Effect,
        mut job: Job<T, Q::Route>,
        ends: Option<Unstarted>,
        now: Instant,
    ) {
        self.parked -= 1;
        self.queue.back_from_aside(&job.route);
        // A cancel made while it waited wins over a wake-up that came at the same time.
        let cancelled = self
            .parked_cancels
            .remove(&job.id)
            .and_then(|cancel| cancel.reason);
        let ends = ends.or(cancelled.map(Unstarted::Cancelled));
        if let Some(record) = self.window.record_mut(job.id) {
            record.parked = false;
        }
        let ends = if self.cancelled {
            Some(Unstarted::Cancelled(CancelReason::Shutdown))
        } else {
            ends
        };
        if let Some(ends) = ends {
            // It held its room while parked (see `hooked`).
            fx.room_back += 1;
            self.queue.finished(&job.route);
            match ends {
                Unstarted::Cancelled(reason) => self.settle_unstarted(fx, job, now, reason),
                Unstarted::Panicked(message) => {
                    if let Some(span) = job.span {
                        span.record("outcome", "panicked");
                    }
                    self.panicked += 1;
                    let error = OperationError::from_message(message);
                    self.settle_with(job.id, now, OperationState::Failed, |record| {
                        record.error = Some(error);
                        record.panicked = true;
                    });
                }
            }
        } else {
            self.overdue += usize::from(job.is_overdue());
            if self.defer_since.is_some() {
                job.hold(now);
            }
            self.queue.requeue(job);
            self.wake_all(fx);
        }
    }

    /// Files the outcome of a taken job.
    pub(crate) fn finish(
        &mut self,
        id: OperationId,
        route: &Q::Route,
        outcome: Outcome<R>,
        slot: &Slot,
        now: Instant,
    ) -> Ended {
        self.queue.finished(route);
        self.file(id, outcome, slot, now)
    }

    /// Files a running job whose worker's task was dropped before its body ended (its
    /// runtime shut down under it): cancelled by shutdown, so it does not stay `Running`
    /// and a waiting result is answered. Its route is not released in the queue (a key
    /// stays busy): no worker can start anything on a runtime that is gone.
    pub(crate) fn abandon(&mut self, id: OperationId, slot: &Slot, now: Instant) {
        let outcome = Outcome::Refused(CancelReason::Shutdown);
        let _ended = self.file(id, outcome, slot, now);
    }

    /// [`finish`](Self::finish) past the queue: the counters, the slot and the record.
    fn file(&mut self, id: OperationId, outcome: Outcome<R>, slot: &Slot, now: Instant) -> Ended {
        self.running -= 1;
        slot.set_running(None);
        let mut result = None;
        let mut error = None;
        let mut panicked = false;
        let (state, ended) = match outcome {
            Outcome::Ok(value) => {
                result = Some(value);
                (OperationState::Completed, Ended::Completed)
            }
            // A body that stops on its cancelled token ends cancelled, not failed.
            Outcome::Err(_) if slot.is_cancelled(id) => (
                OperationState::Cancelled(self.cancel_reason(id)),
                Ended::Cancelled,
            ),
            Outcome::Err(message) => {
                error = Some(message.clone());
                (OperationState::Failed, Ended::Failed(message))
            }
            Outcome::Panic(message) => {
                self.panicked += 1;
                error = Some(OperationError::from_message(message.clone()));
                panicked = true;
                (OperationState::Failed, Ended::Panicked(message))
            }
            Outcome::Aborted => (
                OperationState::Cancelled(CancelReason::Aborted),
                Ended::Cancelled,
            ),
            Outcome::Refused(reason) => (OperationState::Cancelled(reason), Ended::Cancelled),
            Outcome::Unstarted => (
                OperationState::Cancelled(self.cancel_reason(id)),
                Ended::Cancelled,
            ),
        };
        self.settle_with(id, now, state, |record| {
            // A cancel that arrived too late to matter is not kept.
            record.cancel_requested = None;
            record.result = result;
            record.error = error;
            record.panicked = panicked;
        });
        ended
    }

    /// Why operation `id` was asked to stop (taken from its record; shutdown if unrecorded).
    fn cancel_reason(&mut self, id: OperationId) -> CancelReason {
        self.window
            .record_mut(id)
            .and_then(|r| r.cancel_requested.take())
            .unwrap_or(CancelReason::Shutdown)
    }

    /// Cancels a job that never started: settled, and its span (if any) left to `fx`, which
    /// records the outcome after the unlock (a subscriber's code runs outside the lock).
    fn settle_unstarted(
        &mut self,
        fx: &mut Effect,
        job: Job<T, Q::Route>,
        now: Instant,
        reason: CancelReason,
    ) {
        if let Some(span) = job.span {
            fx.unstarted.push(*span);
        }
        self.settle(job.id, now, OperationState::Cancelled(reason));
    }

    /// Counts a terminal state and files it in the window (which may evict).
    fn settle(&mut self, id: OperationId, now: Instant, state: OperationState) {
        self.settle_with(id, now, state, |_| {});
    }

    /// [`settle`](Self::settle), with `fill` completing the record in the same lookup.
    fn settle_with(
        &mut self,
        id: OperationId,
        now: Instant,
        state: OperationState,
        fill: impl FnOnce(&mut Record<R>),
    ) {
        match &state {
            OperationState::Completed => self.completed += 1,
            OperationState::Failed => self.failed += 1,
            OperationState::Cancelled(_) => self.cancelled_count += 1,
            OperationState::Pending | OperationState::Deferred | OperationState::Running => {}
        }
        let snapshots = self.report_finalized.then_some(&mut self.finalized_out);
        self.window.settle(id, now, state, fill, snapshots);
    }

    // ----- Deferral --------------------------------------------------------------------------

    /// Re-evaluates `defer_on` at `now`: a deferral that began holds every queued job from
    /// when it began (the raise of the signal behind it, not this look), one that ended
    /// releases those no lane rule holds. Returns whether some job became held (so
    /// `max_defer` has a new deadline). Called at every acceptance, before every start and by
    /// the steering task on every change of a watched signal, so both edges are seen
    /// promptly.
    fn refresh_deferral(&mut self, sink: &SignalSink, now: Instant) -> bool {
        // Read first: a signal with a higher sequence was raised after this look began.
        let sequence = sink.sequence();
        if self.defer_since.is_some() {
            if !self.defer.holds(sink) {
                self.defer_since = None;
                self.defer_lifted = Some(sequence);
                self.queue.unhold(now);
            }
            return false;
        }
        let Some(by) = self.defer.held_by(sink) else {
            self.defer_lifted = Some(sequence);
            return false;
        };
        // A deferral by a defer signal raised since the rule was last seen lifted began with
        // that raise, which may be before this look (under a clock that jumps, well before):
        // the queued jobs were held back from then on. One by an older signal came back when
        // a newer resume left (expired or retracted) at some time since that look, unknown:
        // it counts from now, so that no job is cut short.
        let since = match self.defer_lifted {
            Some(lifted) if by.sequence() <= lifted => now,
            _ => by.timestamp().min(now),
        };
        self.defer_since = Some(since);
        let mut held = false;
        self.queue.for_each_mut(&mut |job| held |= job.hold(since));
        held
    }

    /// Evicts what is due by age (their `on_evicted` calls follow the unlock) and returns
    /// when the next one is, if the window sweeps (see `Window::sweeps`).
    pub(crate) fn sweep(&mut self, now: Instant) -> Option<Instant> {
        self.window.purge(now);
        self.window.next_due()
    }

    /// Whether the steering task evicts by age on time (see `Window::sweeps`).
    pub(crate) fn sweeps(&self) -> bool {
        self.window.sweeps()
    }

    /// Re-evaluates every defer rule (coordinator-wide and per route) and applies
    /// `max_defer` to the jobs whose deferrals reached it; returns when the next one will.
    pub(crate) fn steer_deferral(
        &mut self,
        fx: &mut Effect,
        sink: &SignalSink,
        now: Instant,
    ) -> Option<Instant> {
        if self.defer.defer_on.is_some() {
            self.refresh_deferral(sink, now);
        }
        let global = self.defer_since.is_some();
        self.queue.refresh_routes(&mut PopCx {
            sink,
            now,
            global,
            held: false,
        });
        let deadline = self
            .defer
            .max_defer
            .and_then(|max| self.overdue_jobs(fx, max, now));
        // Any change may have lifted a deferral: the workers look again.
        self.wake_all(fx);
        deadline
    }

    /// Applies the `max_defer` policy to the held jobs whose deferrals, summed, reached it,
    /// and returns when the next one will.
    fn overdue_jobs(
        &mut self,
        fx: &mut Effect,
        max: std::time::Duration,
        now: Instant,
    ) -> Option<Instant> {
        let cancel = self.defer.policy == super::super::options::DeferPolicy::Cancel;
        let mut next: Option<Instant> = None;
        let mut late = 0usize;
        self.queue.for_each_mut(&mut |job| {
            if job.is_overdue() {
                return;
            }
            let Some(due) = job.defer_deadline(max) else {
                return;
            };
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
            } else {
                if !cancel {
                    job.set_overdue();
                }
                late += 1;
            }
        });
        if late == 0 {
            return next;
        }
        if !cancel {
            self.overdue += late;
            return next;
        }
        let expired = self.queue.remove_where(&mut |job| {
            !job.is_overdue() && job.defer_deadline(max).is_some_and(|due| due <= now)
        });
        for job in expired {
            fx.room_back += 1;
            self.settle_unstarted(fx, job, now, CancelReason::DeferTimeout);
        }
        next
    }

    /// The `max_defer` policy for a job parked past its bound.
    pub(crate) fn defer_rules(&self) -> &DeferRules {
        &self.defer
    }
}
