//! The engine handle behind every coordinator type: intake, lifecycle and queries.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, TryAcquireError, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::admission::Admission;
use super::super::context::ContextShared;
use super::super::error::{
    CoordinatorError, EnqueueError, EnqueueManyError, IntakeError, PinError,
};
use super::super::options::{EphemeralOptions, FinalizedCallback};
use super::super::queue::Queue;
use super::super::snapshot::{
    CancelReason, CoordinatorStats, Echo, OperationSnapshot, OperationState,
};
use super::window::{Record, Window};
use crate::{OperationId, Pattern, SignalSink};

use super::inner::{BodyFn, Core, Reserved, Rules, Shared};

/// A drop guard shared by every handle of one coordinator: when the last handle goes, it
/// shuts the coordinator down (as `cancel()` does).
struct ShutdownOnDrop<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    shared: Arc<Shared<T, R, Q>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for ShutdownOnDrop<T, R, Q> {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

/// An item ready for the queue: the item, its route and its rendered key.
pub(crate) type Routed<T, Route> = (T, Route, Option<Arc<str>>);

/// Enqueues `items` one by one with `one`; at the first refusal, gives back that item and
/// every one after it.
pub(crate) async fn enqueue_each<U, F, Fut>(
    items: impl IntoIterator<Item = U>,
    mut one: F,
) -> Result<Vec<OperationId>, EnqueueManyError<U>>
where
    F: FnMut(U) -> Fut,
    Fut: Future<Output = Result<OperationId, EnqueueError<U>>>,
{
    let mut ids = Vec::new();
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        match one(item).await {
            Ok(id) => ids.push(id),
            Err(refused) => return Err(EnqueueManyError::new(ids, refused, items)),
        }
    }
    Ok(ids)
}

/// A handle on the engine; the coordinator types wrap one.
pub(crate) struct Engine<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    guard: Arc<ShutdownOnDrop<T, R, Q>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Clone for Engine<T, R, Q> {
    fn clone(&self) -> Self {
        Self {
            guard: self.guard.clone(),
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
            on_finalized: finalized_callback(&options, &runtime),
            on_evicted: options.on_evicted.clone(),
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
            overdue: 0,
            window: Window::new(&options),
            accepted: 0,
            completed: 0,
            failed: 0,
            cancelled_count: 0,
            panicked: 0,
            peak: 0,
            intake_error: None,
            finalized_out: Vec::new(),
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
            guard: Arc::new(ShutdownOnDrop { shared }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<T, R, Q>> {
        &self.guard.shared
    }

    pub(crate) async fn enqueue(
        &self,
        item: T,
        route: Q::Route,
        key: Option<Arc<str>>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let shared = self.shared();
        // No lock here: a closed coordinator has closed `room` (or, while intakes run,
        // `accept` refuses under the lock and gives the room back).
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

    /// Feeds a stream into the coordinator on a task; `drain` waits for it. `split` turns a
    /// stream item into the item, its route and its rendered key, or refuses it with a
    /// message that stops the intake (surfaced by `drain`).
    pub(crate) fn intake<S, U, E>(
        &self,
        stream: S,
        split: impl Fn(U) -> Result<Routed<T, Q::Route>, Arc<str>> + Send + 'static,
    ) where
        S: futures::Stream<Item = Result<U, E>> + Send + 'static,
        U: Send + 'static,
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
            let failed = |message: Arc<str>| {
                shared
                    .lock()
                    .intake_error
                    .get_or_insert(IntakeError { message });
            };
            loop {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = shared.root.cancelled() => None,
                };
                match next.map(|r| r.map(&split)) {
                    Some(Ok(Ok((item, route, key)))) => {
                        let Ok(permit) = shared.room.acquire().await else {
                            break;
                        };
                        permit.forget();
                        match shared.accept(item, route, key, true) {
                            Ok(_) => {}
                            Err(EnqueueError::Refused { lane, reason, .. }) => {
                                failed(Arc::from(format!(
                                    "lane `{lane}` refused an item, so the intake stopped: {reason}"
                                )));
                                break;
                            }
                            // Cancelled: the coordinator no longer takes anything.
                            Err(_) => break,
                        }
                    }
                    Some(Ok(Err(message))) => {
                        failed(message);
                        break;
                    }
                    Some(Err(e)) => {
                        failed(Arc::from(e.to_string()));
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

    pub(crate) fn is_closed(&self) -> bool {
        self.shared().lock().closed
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.shared().lock().paused
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

    pub(crate) fn set_max_concurrency(&self, n: usize) -> Result<(), super::super::OptionsError> {
        if n == 0 {
            return Err(super::super::OptionsError::Zero("max_concurrency"));
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

    /// Locks, evicts what the window's bounds require now, reads with `f`, unlocks, and
    /// then delivers the evictions to `on_evicted`.
    fn read_purged<X>(&self, f: impl FnOnce(&mut Core<T, R, Q>) -> X) -> X {
        let shared = self.shared();
        let mut core = shared.lock();
        core.window.purge(Instant::now(), &shared.ctx);
        let out = f(&mut core);
        let owed = core.owed();
        drop(core);
        shared.deliver(owed);
        out
    }

    pub(crate) fn stats(&self) -> CoordinatorStats {
        self.read_purged(|core| CoordinatorStats {
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
        })
    }

    pub(crate) fn pending_count(&self) -> usize {
        let core = self.shared().lock();
        core.queue.len() + core.parked
    }

    pub(crate) fn active_count(&self) -> usize {
        self.shared().lock().running
    }

    pub(crate) fn filter(&self, keep: impl Fn(&OperationState) -> bool) -> Vec<OperationSnapshot> {
        self.filter_records(|r| keep(&r.state))
    }

    /// Snapshots of the tracked records `keep` selects, by id.
    pub(crate) fn filter_records(
        &self,
        keep: impl Fn(&Record<R>) -> bool,
    ) -> Vec<OperationSnapshot> {
        let shared = self.shared();
        let mut out: Vec<_> = self.read_purged(|core| {
            let held = shared.held(core);
            core.window
                .records
                .iter()
                .filter(|(_, r)| keep(r))
                .map(|(id, r)| r.snapshot_held(*id, held.as_ref()))
                .collect()
        });
        out.sort_by_key(|s| s.id);
        out
    }

    pub(crate) fn get(&self, id: OperationId) -> Option<OperationSnapshot> {
        let shared = self.shared();
        let mut snap = self.read_purged(|core| {
            let held = shared.held(core);
            let record = core.window.records.get(&id)?;
            Some(record.snapshot_held(id, held.as_ref()))
        })?;
        snap.signals = shared.ctx.sink.signals_of(id);
        Some(snap)
    }

    pub(crate) fn echoes(&self) -> Vec<Echo> {
        self.read_purged(|core| core.window.echoes.iter().cloned().collect())
    }

    pub(crate) fn pin(&self, id: OperationId) -> Result<(), PinError> {
        self.shared().lock().window.pin(id)
    }

    pub(crate) fn unpin(&self, id: OperationId) -> bool {
        let ctx = &self.shared().ctx;
        self.read_purged(|core| core.window.unpin(id, Instant::now(), ctx))
    }

    pub(crate) fn evict(&self, id: OperationId) -> bool {
        let ctx = &self.shared().ctx;
        self.read_purged(|core| core.window.evict(id, Instant::now(), ctx))
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
        self.read_purged(|core| core.window.records.get(&id).map(f))
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
        let mut out: Vec<_> = self.read_purged(|core| {
            core.window
                .records
                .iter()
                .filter_map(|(id, r)| f(*id, r).map(|x| (*id, x)))
                .collect()
        });
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

/// The options' `on_finalized` callback, followed by the rate-limited `sample` callback.
fn finalized_callback(options: &EphemeralOptions, runtime: &Handle) -> Option<FinalizedCallback> {
    let Some((every, sample)) = options.sample.clone() else {
        return options.on_finalized.clone();
    };
    let each = options.on_finalized.clone();
    let sampler = Arc::new(Sampler {
        every,
        callback: sample,
        runtime: runtime.clone(),
        state: Mutex::new(SampleState::default()),
    });
    Some(Arc::new(move |snap: &OperationSnapshot| {
        if let Some(each) = &each {
            each(snap);
        }
        sampler.offer(snap);
    }))
}

/// The `sample` throttle, leading and trailing edge: the first operation to finish after a
/// quiet interval is delivered at once; later ones within the interval are held (the latest
/// replaces the one before), and the latest is delivered when the interval ends, which
/// starts the next interval. At most one call per interval, and the last finish of a busy
/// spell is never left out.
struct Sampler {
    every: Duration,
    callback: FinalizedCallback,
    runtime: Handle,
    state: Mutex<SampleState>,
}

#[derive(Default)]
struct SampleState {
    /// When the callback last ran.
    last: Option<Instant>,
    /// The latest finish held for the end of the interval.
    held: Option<OperationSnapshot>,
    /// Whether a timer will deliver `held`.
    armed: bool,
}

impl Sampler {
    fn offer(self: &Arc<Self>, snap: &OperationSnapshot) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.armed {
            state.held = Some(snap.clone());
            return;
        }
        let due = match state.last {
            None => Some(now),
            Some(last) => last.checked_add(self.every),
        };
        let Some(due) = due else {
            // An interval too long for the clock: nothing is delivered again.
            return;
        };
        if due <= now {
            state.last = Some(now);
            drop(state);
            (self.callback)(snap);
            return;
        }
        state.held = Some(snap.clone());
        state.armed = true;
        drop(state);
        let sampler = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep_until(due).await;
            sampler.trailing();
        });
    }

    fn trailing(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.armed = false;
        let Some(snap) = state.held.take() else {
            return;
        };
        state.last = Some(Instant::now());
        drop(state);
        let call = std::panic::AssertUnwindSafe(|| (self.callback)(&snap));
        if let Err(panic) = std::panic::catch_unwind(call) {
            tracing::error!(
                id = %snap.id,
                panic = %super::worker::panic_message(&*panic),
                "the sample callback panicked",
            );
        }
    }
}
