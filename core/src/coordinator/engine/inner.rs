//! The engine's shared state: the lock-guarded core, the rules, and what workers, the
//! steering task and handles do to it.
//!
//! Locking: one mutex (`core`) guards the queue, the counters and the window; every critical
//! section is short and runs no user code (bodies, hooks and callbacks run after it is
//! released). Lock order is core → sink (the sink never calls back while locked).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::admission::Admission;
use super::super::context::ContextShared;
use super::super::error::{EnqueueError, IntakeError};
use super::super::options::{DeferPolicy, DrainSignals, EvictedCallback, FinalizedCallback};
use super::super::queue::{Job, Queue};
use super::super::snapshot::{CancelReason, OperationSnapshot, OperationState};
use super::window::{Record, Window};
use crate::{OperationId, Pattern};

/// A type-erased body: the item and its context in, a boxed future out.
pub(crate) type BodyFn<T, R> =
    Arc<dyn Fn(T, OperationContextArg) -> BoxFuture<'static, Result<R, Arc<str>>> + Send + Sync>;

pub(crate) type OperationContextArg = super::super::context::OperationContext;

/// The rules read from the options once.
pub(crate) struct Rules {
    pub(crate) name: Arc<str>,
    pub(crate) id: Arc<str>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) cancel_running_on: Option<Pattern>,
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
    pub(crate) clear_on: Option<Pattern>,
    pub(crate) drain_signals: DrainSignals,
    pub(crate) max_defer: Option<Duration>,
    pub(crate) defer_policy: DeferPolicy,
    pub(crate) abort_grace: Duration,
    pub(crate) on_finalized: Option<FinalizedCallback>,
    pub(crate) on_evicted: Option<EvictedCallback>,
    /// Extra patterns whose changes must wake the workers (lane defer/resume rules).
    pub(crate) extra_watch: Vec<Pattern>,
}

/// Everything under the engine's lock.
pub(crate) struct Core<T, R, Q: Queue<T>> {
    pub(crate) queue: Q,
    pub(crate) parked: usize,
    pub(crate) running: usize,
    pub(crate) workers: usize,
    pub(crate) idle: usize,
    pub(crate) limit: usize,
    pub(crate) paused: bool,
    pub(crate) closed: bool,
    pub(crate) cancelled: bool,
    pub(crate) intakes: usize,
    pub(crate) done: bool,
    /// When the current deferral by `defer_on` began (the first time a start was held back
    /// by it); `None` once a start found it over.
    pub(crate) defer_since: Option<Instant>,
    /// Queued jobs that waited past `max_defer` under `DeferPolicy::Run`: while any is
    /// queued, `defer_on` holds no start back.
    pub(crate) overdue: usize,
    pub(crate) window: Window<R>,
    pub(crate) accepted: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled_count: u64,
    pub(crate) panicked: u64,
    pub(crate) peak: u64,
    pub(crate) intake_error: Option<IntakeError>,
    /// Finished operations not yet handed to `on_finalized` (empty unless it is set).
    pub(crate) finalized_out: Vec<OperationSnapshot>,
    pub(crate) _item: std::marker::PhantomData<fn(T)>,
}

/// Callbacks owed once the lock is released (user code never runs under it).
#[must_use = "owed callbacks must be delivered after the unlock"]
pub(crate) struct Owed {
    finalized: Vec<OperationSnapshot>,
    evicted: Vec<OperationSnapshot>,
}

impl<T, R, Q: Queue<T>> Core<T, R, Q> {
    /// Takes the callbacks owed so far; deliver them with `Shared::deliver` after the unlock.
    pub(crate) fn owed(&mut self) -> Owed {
        Owed {
            finalized: std::mem::take(&mut self.finalized_out),
            evicted: self.window.take_evicted(),
        }
    }
}

/// State shared by handles, workers and the steering task.
pub(crate) struct Shared<T, R, Q: Queue<T>> {
    pub(crate) core: Mutex<Core<T, R, Q>>,
    /// Workers wait here for work.
    pub(crate) work: Notify,
    /// Woken on every finish while result waiters exist.
    pub(crate) finished: Notify,
    pub(crate) done: watch::Sender<bool>,
    /// Room for pending items (`max_pending`).
    pub(crate) room: Semaphore,
    pub(crate) body: BodyFn<T, R>,
    pub(crate) ctx: Arc<ContextShared>,
    pub(crate) rules: Rules,
    pub(crate) root: CancellationToken,
    pub(crate) hooks: Vec<Arc<dyn Admission>>,
    pub(crate) runtime: Handle,
    pub(crate) created_seq: u64,
    /// Wakes the steering task (a deferral began).
    pub(crate) steer: Notify,
    /// How many `wait_for_result` calls are waiting, so finishes skip the notify otherwise.
    pub(crate) waiting: std::sync::atomic::AtomicUsize,
}

/// Room reserved for one item.
pub(crate) struct Reserved<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    pub(crate) shared: Option<Arc<Shared<T, R, Q>>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Reserved<T, R, Q> {
    pub(crate) fn send(
        mut self,
        item: T,
        route: Q::Route,
        key: Option<Arc<str>>,
    ) -> Result<OperationId, EnqueueError<T>> {
        match self.shared.take() {
            Some(shared) => shared.accept(item, route, key, false),
            None => Err(EnqueueError::Closed(item)),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for Reserved<T, R, Q> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.room.add_permits(1);
        }
    }
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Shared<T, R, Q> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<T, R, Q>> {
        // No user code runs under this lock, so poisoning can only follow a bug in the engine;
        // the state is still consistent between statements, so carry on.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts an item whose room (a `room` permit, forgotten) the caller holds.
    pub(crate) fn accept(
        self: &Arc<Self>,
        item: T,
        route: Q::Route,
        key: Option<Arc<str>>,
        from_intake: bool,
    ) -> Result<OperationId, EnqueueError<T>> {
        let id = OperationId::next();
        let now = Instant::now();
        let mut core = self.lock();
        if core.cancelled || (core.closed && !from_intake) {
            drop(core);
            self.room.add_permits(1);
            return Err(EnqueueError::Closed(item));
        }
        if let Some((lane, reason)) = core.queue.refuse(&route) {
            drop(core);
            self.room.add_permits(1);
            return Err(EnqueueError::Refused { item, lane, reason });
        }
        core.window
            .records
            .insert(id, Record::pending(key.clone(), now));
        core.accepted += 1;
        let mut job = Job::new(id, item, route, key);
        // Accepted during a deferral: held from the start.
        let mut held = core.defer_since.is_some() && job.hold(now);
        held |= core.queue.push(job);
        if held && self.rules.max_defer.is_some() {
            self.steer.notify_one();
        }
        // One more worker whenever waiting jobs outnumber idle workers: a woken idle worker
        // only leaves `idle` once it runs, so counting `idle == 0` alone would hand a whole
        // burst to the one worker that happened to be waiting.
        let spawn = core.queue.len() > core.idle && core.workers < core.limit;
        if spawn {
            core.workers += 1;
        }
        drop(core);
        if spawn {
            self.spawn_worker();
        } else {
            self.work.notify_one();
        }
        Ok(id)
    }

    pub(crate) fn spawn_worker(self: &Arc<Self>) {
        self.runtime.spawn(super::worker::run(self.clone()));
    }

    /// Spawns the workers the queue can use now and wakes every waiting one.
    pub(crate) fn wake_all(self: &Arc<Self>, mut core: MutexGuard<'_, Core<T, R, Q>>) {
        let wanted = core.limit.min(core.running + core.queue.len());
        let spawn = wanted.saturating_sub(core.workers);
        core.workers += spawn;
        drop(core);
        for _ in 0..spawn {
            self.spawn_worker();
        }
        self.work.notify_waiters();
    }

    pub(crate) fn complete(self: &Arc<Self>) {
        let mut core = self.lock();
        if !core.closed {
            core.closed = true;
            if core.intakes == 0 {
                self.room.close();
            }
        }
        self.check_done(&mut core);
        drop(core);
        self.work.notify_waiters();
    }

    /// `cancel()` and dropping the last handle: refuse new items, cancel pending ones, and
    /// cancel running bodies through their tokens.
    pub(crate) fn shutdown(self: &Arc<Self>) {
        let now = Instant::now();
        let mut core = self.lock();
        core.closed = true;
        core.cancelled = true;
        self.room.close();
        let jobs = core.queue.take_all();
        core.overdue = 0;
        for job in jobs {
            self.room.add_permits(1);
            let state = OperationState::Cancelled(CancelReason::Shutdown);
            self.settle(&mut core, job.id, now, state);
        }
        // Operation tokens are not children of `root` (registering a child locks the parent, a
        // contended lock per item); running ones are cancelled here instead, under the lock
        // that also guards every pop, so none is missed.
        for record in core.window.records.values() {
            if let Some(token) = &record.token {
                token.cancel();
            }
        }
        self.check_done(&mut core);
        let owed = core.owed();
        drop(core);
        self.root.cancel();
        self.work.notify_waiters();
        self.finished.notify_waiters();
        self.deliver(owed);
    }

    pub(crate) fn cancel_one(self: &Arc<Self>, id: OperationId, reason: CancelReason) -> bool {
        let now = Instant::now();
        let mut core = self.lock();
        if let Some(job) = core.queue.remove(id) {
            self.room.add_permits(1);
            if core.overdue > 0 {
                core.overdue -= usize::from(job.is_overdue());
            }
            self.settle(&mut core, job.id, now, OperationState::Cancelled(reason));
            self.check_done(&mut core);
            let owed = core.owed();
            drop(core);
            self.notify_finished();
            self.deliver(owed);
            return true;
        }
        let Some(record) = core.window.records.get_mut(&id) else {
            return false;
        };
        match (&record.state, &record.token) {
            (OperationState::Running, Some(token)) => {
                record.cancel_requested.get_or_insert(reason);
                token.cancel();
                true
            }
            _ => false,
        }
    }

    /// Records a terminal state for a job that never ran (or whose body ended), counts it,
    /// and files it in the window. The snapshot for `on_finalized` (if set) waits in
    /// `finalized_out` until the lock is released (see [`Core::owed`]).
    pub(crate) fn settle(
        &self,
        core: &mut Core<T, R, Q>,
        id: OperationId,
        now: Instant,
        state: OperationState,
    ) {
        match &state {
            OperationState::Completed => core.completed += 1,
            OperationState::Failed => core.failed += 1,
            OperationState::Cancelled(_) => core.cancelled_count += 1,
            OperationState::Pending | OperationState::Deferred | OperationState::Running => {}
        }
        let Some(record) = core.window.records.get_mut(&id) else {
            return;
        };
        record.state = state;
        record.finished = Some(now);
        record.token = None;
        if self.rules.on_finalized.is_some() {
            core.finalized_out.push(record.snapshot(id));
        }
        core.window.finished(id, now, &self.ctx);
    }

    /// Wakes result waiters, if there are any.
    pub(crate) fn notify_finished(&self) {
        // SeqCst: see `wait_record`.
        if self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.finished.notify_waiters();
        }
    }

    /// Runs the callbacks; a panicking one is logged and the rest still run.
    /// Every finalization first, then every eviction, each in the order it happened.
    pub(crate) fn deliver(&self, owed: Owed) {
        if owed.finalized.is_empty() && owed.evicted.is_empty() {
            return;
        }
        for (callback, snaps, which) in [
            (&self.rules.on_finalized, owed.finalized, "on_finalized"),
            (&self.rules.on_evicted, owed.evicted, "on_evicted"),
        ] {
            let Some(callback) = callback else { continue };
            for snap in &snaps {
                let call = std::panic::AssertUnwindSafe(|| callback(snap));
                if let Err(panic) = std::panic::catch_unwind(call) {
                    tracing::error!(
                        coordinator = %self.rules.name,
                        id = %snap.id,
                        panic = %super::worker::panic_message(&*panic),
                        "the {which} callback panicked",
                    );
                }
            }
        }
    }

    pub(crate) fn check_done(&self, core: &mut Core<T, R, Q>) {
        if !core.done
            && core.closed
            && core.queue.len() == 0
            && core.parked == 0
            && core.running == 0
            && core.intakes == 0
        {
            core.done = true;
            self.done.send_replace(true);
            self.work.notify_waiters();
            self.steer.notify_one();
        }
    }

    /// The queued jobs a defer rule holds back (`None` when no rule could), for snapshots.
    /// Jobs past `max_defer` under `DeferPolicy::Run` are not held: they may start.
    pub(crate) fn held(&self, core: &Core<T, R, Q>) -> Option<HashSet<OperationId>> {
        if self.rules.defer_on.is_none() && !core.queue.has_route_deferral() {
            return None;
        }
        let mut held = HashSet::new();
        core.queue.for_each(&mut |job| {
            if job.is_held() && !job.is_overdue() {
                held.insert(job.id);
            }
        });
        Some(held)
    }

    /// Whether `defer_on` holds now (a sink query; no state changes).
    pub(crate) fn defer_rule_holds(&self) -> bool {
        self.rules.defer_on.as_ref().is_some_and(|defer| {
            super::super::defer::defer_active(&self.ctx.sink, defer, self.rules.resume_on.as_ref())
        })
    }

    /// Re-evaluates `defer_on` at `now`: a deferral that began holds every queued job, one
    /// that ended releases those no lane rule holds. Returns whether some job became held
    /// (so `max_defer` has a new deadline). Called before every start and by the steering
    /// task on every change of a watched signal, so both edges are seen promptly.
    pub(crate) fn refresh_deferral(&self, core: &mut Core<T, R, Q>, now: Instant) -> bool {
        let holds = self.defer_rule_holds();
        let mut held = false;
        match (holds, core.defer_since.is_some()) {
            (true, false) => {
                core.defer_since = Some(now);
                core.queue.for_each_mut(&mut |job| held |= job.hold(now));
            }
            (false, true) => {
                core.defer_since = None;
                core.queue.unhold(now);
            }
            _ => {}
        }
        held
    }

    /// The pattern the steering task watches, if it has anything to do.
    pub(crate) fn steer_pattern(&self) -> Option<Pattern> {
        let r = &self.rules;
        let mut parts: Vec<&str> = Vec::new();
        let drain = r.drain_signals;
        for (on, name) in [
            (drain.obeys_all(), "coordinator.drain.all"),
            (drain.obeys_id(), "coordinator.drain.id"),
            (drain.obeys_pattern(), "coordinator.drain.pattern"),
        ] {
            if on {
                parts.push(name);
            }
        }
        for p in [&r.cancel_running_on, &r.defer_on, &r.resume_on, &r.clear_on]
            .into_iter()
            .flatten()
        {
            parts.push(p.as_str());
        }
        for p in &r.extra_watch {
            parts.push(p.as_str());
        }
        if parts.is_empty() {
            None
        } else {
            Some(Pattern::new(&parts.join(",")))
        }
    }
}
