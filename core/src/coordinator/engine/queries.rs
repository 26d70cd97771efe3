//! Queries: stats, snapshots, echoes, results, and the pins that keep operations visible.
//! Each query first evicts what the window's bounds require now, and reports evictions to
//! `on_evicted` after the unlock, like every other change.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use super::super::error::PinError;
use super::super::queue::Queue;
use super::super::snapshot::{
    CancelReason, CoordinatorStats, Echo, OperationSnapshot, OperationState,
};
use super::lifecycle::Engine;
use super::state::Core;
use super::window::Record;
use crate::OperationId;

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Engine<T, R, Q> {
    /// Evicts what the window's bounds require now, then reads with `f`.
    fn read_purged<X>(&self, f: impl FnOnce(&Core<T, R, Q>) -> X) -> X {
        let now = Instant::now();
        self.inner().update(|core, _| {
            core.purge(now);
            f(core)
        })
    }

    pub(crate) fn stats(&self) -> CoordinatorStats {
        self.read_purged(Core::stats)
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.inner().lock().pending()
    }

    pub(crate) fn active_count(&self) -> usize {
        self.inner().lock().running()
    }

    pub(crate) fn filter(&self, keep: impl Fn(&OperationState) -> bool) -> Vec<OperationSnapshot> {
        self.filter_records(|r| keep(&r.state))
    }

    /// Snapshots of the tracked records `keep` selects, by id.
    pub(crate) fn filter_records(
        &self,
        keep: impl Fn(&Record<R>) -> bool,
    ) -> Vec<OperationSnapshot> {
        let mut out: Vec<_> = self.read_purged(|core| {
            let held = core.held();
            core.records()
                .filter(|(_, r)| keep(r))
                .map(|(id, r)| r.snapshot_held(id, held.as_ref()))
                .collect()
        });
        out.sort_by_key(|s| s.id);
        out
    }

    /// The operation `id`, with its live signals, if tracked.
    pub(crate) fn get(&self, id: OperationId) -> Option<OperationSnapshot> {
        let mut snap = self.read_purged(|core| {
            let held = core.held();
            Some(core.record(id)?.snapshot_held(id, held.as_ref()))
        })?;
        snap.signals = self.inner().ctx.sink.signals_of(id);
        Some(snap)
    }

    pub(crate) fn echoes(&self) -> Vec<Echo> {
        self.read_purged(|core| core.echoes().collect())
    }

    pub(crate) fn pin(&self, id: OperationId) -> Result<(), PinError> {
        self.inner().update(|core, _| core.pin(id))
    }

    pub(crate) fn unpin(&self, id: OperationId) -> bool {
        let now = Instant::now();
        self.inner().update(|core, _| core.unpin(id, now))
    }

    pub(crate) fn evict(&self, id: OperationId) -> bool {
        let now = Instant::now();
        self.inner().update(|core, _| core.evict(id, now))
    }

    pub(crate) fn cancel_operation(&self, id: OperationId) -> bool {
        let now = Instant::now();
        self.inner()
            .update(|core, fx| core.cancel_one(fx, id, CancelReason::Explicit, now))
    }

    /// Applies `f` to a record, if tracked.
    pub(crate) fn with_record<X>(
        &self,
        id: OperationId,
        f: impl FnOnce(&Record<R>) -> X,
    ) -> Option<X> {
        self.read_purged(|core| core.record(id).map(f))
    }

    /// Waits until `id` finishes; `f` reads its record. `None`: unknown or evicted.
    pub(crate) async fn wait_record<X>(
        &self,
        id: OperationId,
        f: impl Fn(&Record<R>) -> X,
    ) -> Option<X> {
        let inner = self.inner();
        // SeqCst, and the lock below: a finisher that settles after our check loads the
        // counter after our increment, so it notifies us.
        inner.waiting.fetch_add(1, Ordering::SeqCst);
        let _guard = WaitGuard(&inner.waiting);
        loop {
            let notified = inner.finished.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let core = inner.lock();
                let record = core.record(id)?;
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
            core.records()
                .filter_map(|(id, r)| f(id, r).map(|x| (id, x)))
                .collect()
        });
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Runs `f` on the queue under the lock (per-key and per-lane views).
    pub(crate) fn with_queue<X>(&self, f: impl FnOnce(&Q) -> X) -> X {
        f(self.inner().lock().queue())
    }
}

/// Counts one `wait_record` caller for as long as it waits.
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        // SeqCst: see `wait_record`.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
