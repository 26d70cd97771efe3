//! Driving a [`Backpressure`] from a downstream coordinator's pending count.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::FutureExt;
use futures::future::{self, BoxFuture};
use tokio::task::JoinHandle;

use super::Backpressure;
use crate::CoordinatorHandle;

/// Keeps a [`Backpressure`] in step with a downstream coordinator's pending count. Stops when
/// dropped, or when the coordinator is done.
///
/// The count is re-read whenever it may have fallen: the downstream's admission hook
/// ([`Backpressure::admission`]) wakes the monitor each time an item starts. Where it grows —
/// right after an upstream enqueues into the downstream — the upstream reports it
/// synchronously with [`Backpressure::report`], so the hold is taken before the upstream's
/// next start. Pending items can also leave without starting (cancelled while they wait, or
/// the downstream cancelled or drained), which no hook sees: while the hold is taken the
/// monitor also re-reads the count every [`RECHECK_WHILE_HELD`] (100 ms), so such a hold is
/// released within that, and the monitor stops once the downstream is done. Released, it
/// reads nothing until woken.
///
/// The monitor holds a handle to the coordinator, so the coordinator lives at least as long
/// as the monitor: drop the monitor (or drain the coordinator) to let it go.
#[must_use = "the monitor stops as soon as it is dropped"]
pub struct BackpressureMonitor {
    task: JoinHandle<()>,
    pressure: Backpressure,
}

/// The downstream's admission hook: admits everything, and wakes the monitor on every start.
struct StartHook {
    pressure: Backpressure,
}

impl fmt::Debug for StartHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackpressureStartHook")
            .field("signal", self.pressure.signal_name())
            .finish()
    }
}

impl Admission for StartHook {
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        self.pressure.wake_monitor();
        Box::pin(async { Decision::Admit })
    }
}

impl Backpressure {
    /// An [`Admission`] hook for the *downstream* coordinator: it admits every item and tells
    /// the monitor that the pending count dropped. Pass it to `with_admission`.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(StartHook {
            pressure: self.clone(),
        })
    }

    /// Reads `downstream`'s pending count now and takes or releases the hold accordingly;
    /// call it right after enqueueing into the downstream. Returns whether the condition is
    /// held.
    pub fn report<C: crate::CoordinatorHandle>(&self, downstream: &C) -> bool {
        self.update_with(|| downstream.pending_count())
    }

    fn wake_monitor(&self) {
        // notify_one stores a permit when the monitor is busy, so no start goes unseen.
        self.inner.wake.notify_one();
    }

    /// Starts keeping this backpressure in step with `downstream`'s pending count.
    ///
    /// The high watermark must be below the downstream's `max_pending` (1024 by default):
    /// its pending count never passes `max_pending` (an `enqueue` waits for room instead),
    /// so with `high` at or above it the condition is never held and the upstream is never
    /// throttled. The reactive fan-out (`reactive_fanout` feature) refuses such
    /// a watermark; the monitor cannot check it, since a coordinator handle does not tell
    /// its `max_pending`.
    ///
    /// # Errors
    ///
    /// [`super::BackpressureError::NoRuntime`] outside a tokio runtime.
    pub fn monitor<C: crate::CoordinatorHandle>(
        &self,
        downstream: &C,
    ) -> Result<BackpressureMonitor, super::BackpressureError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| super::BackpressureError::NoRuntime)?;
        let pressure = self.clone();
        let downstream = downstream.clone();
        let task = runtime.spawn(async move { watch(pressure, downstream).await });
        Ok(BackpressureMonitor {
            task,
            pressure: self.clone(),
        })
    }
}

/// How often a monitor re-reads the downstream's pending count while the hold is taken (see
/// [`BackpressureMonitor`]): pending items that leave without starting are seen by no hook.
pub const RECHECK_WHILE_HELD: Duration = Duration::from_millis(100);

async fn watch<C: CoordinatorHandle>(pressure: Backpressure, downstream: C) {
    // Also ends every wait below: once the downstream is done no start wakes the monitor,
    // and a released monitor waiting only for starts kept running (and the coordinator
    // alive) until it was dropped. Fused: polled again after it fired, it stays pending.
    let mut done = std::pin::pin!(downstream.done().fuse());
    loop {
        let held = pressure.update_with(|| downstream.pending_count());
        if downstream.is_done() {
            // Nothing is pending any more: let the upstream go.
            pressure.update(0);
            return;
        }
        let started = std::pin::pin!(pressure.inner.wake.notified());
        let woken = future::select(started, done.as_mut());
        if held {
            // Woken by a start, or re-read on time for items that left without one.
            let _ = tokio::time::timeout(RECHECK_WHILE_HELD, woken).await;
        } else {
            woken.await;
        }
    }
}

impl Drop for BackpressureMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for BackpressureMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackpressureMonitor")
            .field("pressure", &self.pressure)
            .field("finished", &self.task.is_finished())
            .finish()
    }
}
