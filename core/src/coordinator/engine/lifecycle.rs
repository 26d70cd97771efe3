//! `Engine`: the cheap-to-clone handle each coordinator type wraps; creation and lifecycle.
//! Intake is in `intake.rs`, queries in `queries.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;

use super::super::admission::Admission;
use super::super::context::ContextShared;
use super::super::error::{CoordinatorError, IntakeError};
use super::super::options::{EphemeralOptions, OptionsError};
use super::super::queue::Queue;
use super::super::snapshot::OperationSnapshot;
use super::body::Body;
use super::inner::Inner;
use super::rules::{DeferRules, Rules, steer_pattern};
use super::sample::finalized_callback;
use super::state::Core;
use super::window::Window;
use super::{steer, worker};
use crate::Pattern;

/// A drop guard shared by every handle of one coordinator: when the last handle goes, it
/// shuts the coordinator down (as `cancel()` does).
struct ShutdownOnDrop<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    inner: Arc<Inner<T, R, Q>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for ShutdownOnDrop<T, R, Q> {
    fn drop(&mut self) {
        self.inner.handles_dropped();
    }
}

/// A handle on the engine; the coordinator types wrap one. Workers and the steering task
/// hold the [`Inner`] directly, so they never keep a coordinator alive on their own.
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
    /// A coordinator over `queue` running `body`; `extra_watch` are the patterns of
    /// route-level rules (lane deferral) whose changes must wake the steering task.
    pub(crate) fn new(
        body: impl Body<T, R>,
        options: EphemeralOptions,
        queue: Q,
        hooks: Vec<Arc<dyn Admission>>,
        extra_watch: Vec<Pattern>,
    ) -> Result<Self, CoordinatorError> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| CoordinatorError::NoRuntime)?;
        let sink = options.sink.clone().unwrap_or_default();
        let created_seq = sink.sequence();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = options.id.clone().unwrap_or_else(|| {
            // Relaxed: only distinct values are needed.
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            Arc::from(format!("coordinator-{n}"))
        });
        let rules = Rules {
            name: options.name.clone(),
            id,
            cancel_on: options.cancel_on.clone(),
            cancel_running_on: options.cancel_running_on.clone(),
            clear_on: options.clear_on.clone(),
            drain_signals: options.drain_signals,
            abort_grace: options.abort_grace,
            on_finalized: finalized_callback(&options, &runtime),
            on_evicted: options.on_evicted.clone(),
        };
        let defer = DeferRules {
            defer_on: options.defer_on.clone(),
            resume_on: options.resume_on.clone(),
            max_defer: options.max_defer,
            policy: options.defer_policy,
        };
        let watch = steer_pattern(&rules, &defer, &extra_watch);
        let ctx = Arc::new(ContextShared::new(sink));
        let window = Window::new(&options, ctx.clone());
        let sweeps = window.sweeps();
        let report_finalized = rules.on_finalized.is_some();
        let core = Core::new(
            queue,
            window,
            defer,
            options.max_concurrency,
            report_finalized,
            !hooks.is_empty(),
        )
        .with_start_stamps(options.cancel_running_on.is_some());
        let inner = Arc::new(Inner::new(
            core,
            options.max_pending,
            ctx,
            rules,
            hooks,
            runtime,
            created_seq,
            worker::spawner(body),
        ));
        if watch.is_some() || sweeps {
            steer::spawn(&inner, watch);
        }
        Ok(Self {
            guard: Arc::new(ShutdownOnDrop { inner }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner<T, R, Q>> {
        &self.guard.inner
    }

    pub(crate) fn complete(&self) {
        self.inner().complete();
    }

    pub(crate) async fn drain(&self) -> Result<(), IntakeError> {
        let inner = self.inner();
        inner.complete();
        // `self` holds the engine, so this ends only once it is done.
        self.done().await;
        match inner.lock().intake_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A future resolving once the coordinator is done (or gone), without completing it and
    /// without holding it: it watches the done flag's channel, not the engine.
    pub(crate) fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.inner().done.subscribe();
        async move {
            // An error means the engine was dropped: it is as done as it will ever be.
            let _ = done.wait_for(|d| *d).await;
        }
    }

    pub(crate) async fn drain_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(), Vec<OperationSnapshot>> {
        match tokio::time::timeout(timeout, self.drain()).await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.filter(|s| !s.is_finished())),
        }
    }

    pub(crate) fn cancel(&self) {
        self.inner().shutdown();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.inner().lock().is_done()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner().is_closed()
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.inner().lock().is_paused()
    }

    pub(crate) fn pause(&self) {
        self.inner().update(|core, _| core.pause());
    }

    pub(crate) fn resume(&self) {
        self.inner().update(Core::resume);
    }

    pub(crate) fn set_max_concurrency(&self, n: usize) -> Result<(), OptionsError> {
        if n == 0 {
            return Err(OptionsError::Zero("max_concurrency"));
        }
        self.inner().update(|core, fx| core.set_limit(fx, n));
        Ok(())
    }

    pub(crate) fn max_concurrency(&self) -> usize {
        self.inner().lock().limit()
    }

    pub(crate) fn sink(&self) -> &crate::SignalSink {
        &self.inner().ctx.sink
    }

    pub(crate) fn id(&self) -> &str {
        &self.inner().rules.id
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner().rules.name
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
