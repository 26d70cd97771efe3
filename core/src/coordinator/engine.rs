//! The one engine behind every coordinator: intake, scheduling state, window and lifecycle.
//!
//! Locking: one mutex (`core`) guards the queue, the counters and the window; every critical
//! section is short and runs no user code (bodies, hooks and callbacks run after it is
//! released). Lock order is core → sink (the sink never calls back while locked).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, TryAcquireError, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::Admission;
use super::context::ContextShared;
use super::error::{CoordinatorError, EnqueueError, IntakeError, PinError};
use super::options::{DeferPolicy, EphemeralOptions, FinalizedCallback};
use super::queue::{Job, Queue};
use super::snapshot::{CancelReason, CoordinatorStats, Echo, OperationSnapshot, OperationState};
use super::window::{Record, Window};
use crate::{OperationId, Pattern, SignalSink};

/// A type-erased body: the item and its context in, a boxed future out.
pub(crate) type BodyFn<T, R> =
    Arc<dyn Fn(T, OperationContextArg) -> BoxFuture<'static, Result<R, Arc<str>>> + Send + Sync>;

pub(crate) type OperationContextArg = super::context::OperationContext;

/// The rules read from the options once.
pub(crate) struct Rules {
    pub(crate) name: Arc<str>,
    pub(crate) id: Arc<str>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) cancel_running_on: Option<Pattern>,
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
    pub(crate) clear_on: Option<Pattern>,
    pub(crate) drain_signals: bool,
    pub(crate) max_defer: Option<Duration>,
    pub(crate) defer_policy: DeferPolicy,
    pub(crate) abort_grace: Duration,
    pub(crate) on_finalized: Option<FinalizedCallback>,
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
    /// When the current deferral began (the first time a start was held back by it).
    pub(crate) defer_since: Option<Instant>,
    /// `max_defer` passed under `DeferPolicy::Run`: starts go ahead until the deferral ends.
    pub(crate) defer_override: bool,
    pub(crate) window: Window<R>,
    pub(crate) accepted: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled_count: u64,
    pub(crate) panicked: u64,
    pub(crate) peak: u64,
    pub(crate) intake_error: Option<IntakeError>,
    _item: std::marker::PhantomData<fn(T)>,
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

/// Cancels everything when the last handle goes.
struct Life<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    shared: Arc<Shared<T, R, Q>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for Life<T, R, Q> {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

/// A handle on the engine; the coordinator types wrap one.
pub(crate) struct Engine<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    life: Arc<Life<T, R, Q>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Clone for Engine<T, R, Q> {
    fn clone(&self) -> Self {
        Self {
            life: self.life.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Engine<T, R, Q> {
    pub(crate) fn new(
        body: BodyFn<T, R>,
        options: EphemeralOptions,
        queue: Q,
        hooks: Vec<Arc<dyn Admission>>,
        extra_watch: Vec<Pattern>,
    ) -> Result<Self, CoordinatorError> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| CoordinatorError::NoRuntime)?;
        let sink = options.sink.clone().unwrap_or_default();
        let created_seq = sink.sequence();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = options.id.clone().unwrap_or_else(|| {
            // Relaxed: only distinct values are needed.
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Arc::from(format!("coordinator-{n}"))
        });
        let rules = Rules {
            name: options.name.clone(),
            id,
            cancel_on: options.cancel_on.clone(),
            cancel_running_on: options.cancel_running_on.clone(),
            defer_on: options.defer_on.clone(),
            resume_on: options.resume_on.clone(),
            clear_on: options.clear_on.clone(),
            drain_signals: options.drain_signals,
            max_defer: options.max_defer,
            defer_policy: options.defer_policy,
            abort_grace: options.abort_grace,
            on_finalized: options.on_finalized.clone(),
            extra_watch,
        };
        let core = Core {
            queue,
            parked: 0,
            running: 0,
            workers: 0,
            idle: 0,
            limit: options.max_concurrency,
            paused: false,
            closed: false,
            cancelled: false,
            intakes: 0,
            done: false,
            defer_since: None,
            defer_override: false,
            window: Window::new(&options),
            accepted: 0,
            completed: 0,
            failed: 0,
            cancelled_count: 0,
            panicked: 0,
            peak: 0,
            intake_error: None,
            _item: std::marker::PhantomData,
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            work: Notify::new(),
            finished: Notify::new(),
            done: watch::channel(false).0,
            room: Semaphore::new(options.max_pending),
            body,
            ctx: Arc::new(ContextShared::new(sink)),
            rules,
            root: CancellationToken::new(),
            hooks,
            runtime,
            created_seq,
            steer: Notify::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        });
        if let Some(pattern) = shared.steer_pattern() {
            let steer = shared.clone();
            shared.runtime.spawn(super::steer::run(steer, pattern));
        }
        Ok(Self {
            life: Arc::new(Life { shared }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<T, R, Q>> {
        &self.life.shared
    }

    pub(crate) async fn enqueue(
        &self,
        item: T,
        route: Q::Route,
        key: Option<Arc<str>>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let shared = self.shared();
        if shared.lock().closed {
            return Err(EnqueueError::Closed(item));
        }
        match shared.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(EnqueueError::Closed(item)),
        }
        shared.accept(item, route, key, false)
    }

    pub(crate) fn try_enqueue(
        &self,
        item: T,
        route: Q::Route,
        key: Option<Arc<str>>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let shared = self.shared();
        match shared.room.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::Closed) => return Err(EnqueueError::Closed(item)),
            Err(TryAcquireError::NoPermits) => {
                if shared.lock().closed {
                    return Err(EnqueueError::Closed(item));
                }
                return Err(EnqueueError::Full(item));
            }
        }
        shared.accept(item, route, key, false)
    }

    /// Waits for room; the room is held until the permit is used or dropped.
    pub(crate) async fn reserve(&self) -> Result<Reserved<T, R, Q>, EnqueueError<()>> {
        let shared = self.shared();
        if shared.lock().closed {
            return Err(EnqueueError::Closed(()));
        }
        match shared.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(EnqueueError::Closed(())),
        }
        Ok(Reserved {
            shared: Some(shared.clone()),
        })
    }

    /// Feeds a stream into the coordinator on a task; `drain` waits for it.
    pub(crate) fn intake<S, E>(&self, stream: S, route: impl Fn(&T) -> Q::Route + Send + 'static)
    where
        S: futures::Stream<Item = Result<T, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let shared = self.shared().clone();
        {
            let mut core = shared.lock();
            if core.closed {
                core.intake_error.get_or_insert(IntakeError {
                    message: Arc::from("intake started after complete()"),
                });
                return;
            }
            core.intakes += 1;
        }
        let runtime = shared.runtime.clone();
        runtime.spawn(async move {
            use futures::StreamExt;
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = shared.root.cancelled() => None,
                };
                match next {
                    Some(Ok(item)) => {
                        let Ok(permit) = shared.room.acquire().await else {
                            break;
                        };
                        permit.forget();
                        let r = route(&item);
                        if shared.accept(item, r, None, true).is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        let mut core = shared.lock();
                        core.intake_error.get_or_insert(IntakeError {
                            message: Arc::from(e.to_string()),
                        });
                        break;
                    }
                    None => break,
                }
            }
            let mut core = shared.lock();
            core.intakes -= 1;
            if core.closed && core.intakes == 0 {
                shared.room.close();
            }
            shared.check_done(&mut core);
        });
    }

    pub(crate) fn complete(&self) {
        self.shared().complete();
    }

    pub(crate) async fn drain(&self) -> Result<(), IntakeError> {
        let shared = self.shared();
        shared.complete();
        let mut done = shared.done.subscribe();
        // The sender lives in `shared`, which we hold, so `wait_for` cannot fail.
        let _ = done.wait_for(|d| *d).await;
        match &shared.lock().intake_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    pub(crate) async fn drain_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(), Vec<OperationSnapshot>> {
        match tokio::time::timeout(timeout, self.drain()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.filter(|s| matches!(s, OperationState::Running))),
        }
    }

    pub(crate) fn cancel(&self) {
        self.shared().shutdown();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.shared().lock().done
    }

    pub(crate) fn pause(&self) {
        self.shared().lock().paused = true;
    }

    pub(crate) fn resume(&self) {
        let shared = self.shared();
        let mut core = shared.lock();
        core.paused = false;
        shared.wake_all(core);
    }

    pub(crate) fn set_max_concurrency(&self, n: usize) -> Result<(), super::OptionsError> {
        if n == 0 {
            return Err(super::OptionsError::Zero("max_concurrency"));
        }
        let shared = self.shared();
        let mut core = shared.lock();
        core.limit = n;
        shared.wake_all(core);
        Ok(())
    }

    pub(crate) fn max_concurrency(&self) -> usize {
        self.shared().lock().limit
    }

    pub(crate) fn stats(&self) -> CoordinatorStats {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        CoordinatorStats {
            accepted: core.accepted,
            pending: (core.queue.len() + core.parked) as u64,
            running: core.running as u64,
            completed: core.completed,
            failed: core.failed,
            cancelled: core.cancelled_count,
            panicked: core.panicked,
            evicted: core.window.evicted,
            tracked: core.window.records.len() as u64,
            pinned: core.window.pinned as u64,
            echoes: core.window.echoes.len() as u64,
            max_concurrency: core.limit as u64,
            peak_running: core.peak,
        }
    }

    pub(crate) fn pending_count(&self) -> usize {
        let core = self.shared().lock();
        core.queue.len() + core.parked
    }

    pub(crate) fn active_count(&self) -> usize {
        self.shared().lock().running
    }

    pub(crate) fn filter(&self, keep: impl Fn(&OperationState) -> bool) -> Vec<OperationSnapshot> {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        let mut out: Vec<_> = core
            .window
            .records
            .iter()
            .filter(|(_, r)| keep(&r.state))
            .map(|(id, r)| r.snapshot(*id))
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    pub(crate) fn get(&self, id: OperationId) -> Option<OperationSnapshot> {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        let mut snap = core.window.records.get(&id).map(|r| r.snapshot(id))?;
        drop(core);
        snap.signals = shared.ctx.sink.signals_of(id);
        Some(snap)
    }

    pub(crate) fn echoes(&self) -> Vec<Echo> {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        core.window.echoes.iter().cloned().collect()
    }

    pub(crate) fn pin(&self, id: OperationId) -> Result<(), PinError> {
        self.shared().lock().window.pin(id)
    }

    pub(crate) fn unpin(&self, id: OperationId) -> bool {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.unpin(id, Instant::now(), &shared.ctx)
    }

    pub(crate) fn evict(&self, id: OperationId) -> bool {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.evict(id, Instant::now(), &shared.ctx)
    }

    pub(crate) fn cancel_operation(&self, id: OperationId) -> bool {
        self.shared().cancel_one(id, CancelReason::Explicit)
    }

    pub(crate) fn sink(&self) -> &SignalSink {
        &self.shared().ctx.sink
    }

    pub(crate) fn id(&self) -> &str {
        &self.shared().rules.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared().rules.name
    }

    /// Applies `f` to a finished record's result.
    pub(crate) fn with_record<X>(
        &self,
        id: OperationId,
        f: impl FnOnce(&Record<R>) -> X,
    ) -> Option<X> {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        core.window.records.get(&id).map(f)
    }

    /// Waits until `id` finishes; `f` reads its record. `None`: unknown or evicted.
    pub(crate) async fn wait_record<X>(
        &self,
        id: OperationId,
        f: impl Fn(&Record<R>) -> X,
    ) -> Option<X> {
        let shared = self.shared();
        // SeqCst, and the lock below: a finisher that settles after our check has loaded the
        // counter after our increment, so it notifies us.
        shared
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _guard = WaitGuard(&shared.waiting);
        loop {
            let notified = shared.finished.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let core = shared.lock();
                let record = core.window.records.get(&id)?;
                if record.state.is_finished() {
                    return Some(f(record));
                }
            }
            notified.await;
        }
    }

    /// Every tracked record, through `f`, sorted by id.
    pub(crate) fn records<X>(
        &self,
        f: impl Fn(OperationId, &Record<R>) -> Option<X>,
    ) -> Vec<(OperationId, X)> {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        let mut out: Vec<_> = core
            .window
            .records
            .iter()
            .filter_map(|(id, r)| f(*id, r).map(|x| (*id, x)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Runs `f` on the queue under the lock (keyed snapshots).
    pub(crate) fn with_queue<X>(&self, f: impl FnOnce(&Q) -> X) -> X {
        f(&self.shared().lock().queue)
    }
}

struct WaitGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Room reserved for one item.
pub(crate) struct Reserved<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    shared: Option<Arc<Shared<T, R, Q>>>,
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
        core.queue.push(Job {
            id,
            item,
            route,
            key,
            cancel: None,
        });
        let spawn = core.idle == 0 && core.workers < core.limit;
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
        let mut finals = Vec::new();
        for job in jobs {
            self.room.add_permits(1);
            if let Some(snap) = self.settle(
                &mut core,
                job.id,
                now,
                OperationState::Cancelled(CancelReason::Shutdown),
            ) {
                finals.push(snap);
            }
        }
        self.check_done(&mut core);
        drop(core);
        self.root.cancel();
        self.work.notify_waiters();
        self.finished.notify_waiters();
        self.finalized(finals);
    }

    pub(crate) fn cancel_one(self: &Arc<Self>, id: OperationId, reason: CancelReason) -> bool {
        let now = Instant::now();
        let mut core = self.lock();
        if let Some(job) = core.queue.remove(id) {
            self.room.add_permits(1);
            let snap = self.settle(&mut core, job.id, now, OperationState::Cancelled(reason));
            self.check_done(&mut core);
            drop(core);
            self.notify_finished();
            self.finalized(snap.into_iter().collect());
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
    /// and files it in the window. Returns the snapshot when a finalized callback wants it.
    pub(crate) fn settle(
        &self,
        core: &mut Core<T, R, Q>,
        id: OperationId,
        now: Instant,
        state: OperationState,
    ) -> Option<OperationSnapshot> {
        match &state {
            OperationState::Completed => core.completed += 1,
            OperationState::Failed => core.failed += 1,
            OperationState::Cancelled(_) => core.cancelled_count += 1,
            OperationState::Pending | OperationState::Running => {}
        }
        let record = core.window.records.get_mut(&id)?;
        record.state = state;
        record.finished = Some(now);
        record.token = None;
        let snap = self
            .rules
            .on_finalized
            .as_ref()
            .map(|_| record.snapshot(id));
        core.window.finished(id, now, &self.ctx);
        snap
    }

    /// Wakes result waiters, if there are any.
    pub(crate) fn notify_finished(&self) {
        // SeqCst: see `wait_record`.
        if self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.finished.notify_waiters();
        }
    }

    pub(crate) fn finalized(&self, snaps: Vec<OperationSnapshot>) {
        if let Some(callback) = &self.rules.on_finalized {
            for snap in &snaps {
                callback(snap);
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

    /// Whether the built-in defer rule holds starts back now. Arms the deferral clock.
    pub(crate) fn deferred(&self, core: &mut Core<T, R, Q>) -> bool {
        let Some(defer) = &self.rules.defer_on else {
            return false;
        };
        let active =
            super::steer::defer_active(&self.ctx.sink, defer, self.rules.resume_on.as_ref());
        if !active {
            core.defer_since = None;
            core.defer_override = false;
            return false;
        }
        if core.defer_override {
            return false;
        }
        if core.defer_since.is_none() {
            core.defer_since = Some(Instant::now());
            if self.rules.max_defer.is_some() {
                self.steer.notify_one();
            }
        }
        true
    }

    /// The pattern the steering task watches, if it has anything to do.
    fn steer_pattern(&self) -> Option<Pattern> {
        let r = &self.rules;
        let mut parts: Vec<&str> = Vec::new();
        if r.drain_signals {
            parts.push("coordinator.drain.*");
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

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> std::fmt::Debug for Engine<T, R, Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stats = self.stats();
        f.debug_struct("Coordinator")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("stats", &stats)
            .finish()
    }
}
