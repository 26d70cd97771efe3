//! Queries: stats, snapshots, echoes, results, and the pins that keep operations visible.
//! Each query first evicts what the window's bounds require now, and reports evictions to
//! `on_evicted` after the unlock, like every other change.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::error::PinError;
use super::super::queue::Queue;
use super::super::snapshot::{
    CancelReason, CoordinatorStats, Echo, OperationSnapshot, OperationState,
};
use super::lifecycle::Engine;
use super::state::Core;
use super::window::{Answer, Answerer, Record, Reply};
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
        self.cancel_for(id, CancelReason::Explicit)
    }

    /// Cancels `id` (pending or running) for `reason`; `false` if it is not live.
    pub(crate) fn cancel_for(&self, id: OperationId, reason: CancelReason) -> bool {
        let now = Instant::now();
        self.inner()
            .update(|core, fx| core.cancel_one(fx, id, reason, now))
    }

    /// Applies `f` to a record, if tracked.
    pub(crate) fn with_record<X>(
        &self,
        id: OperationId,
        f: impl FnOnce(&Record<R>) -> X,
    ) -> Option<X> {
        self.read_purged(|core| core.record(id).map(f))
    }

    /// Waits until `id` finishes and answers with `answer` from its record, made at the
    /// finish: a window that evicts the operation at once cannot lose it. `None`: unknown or
    /// evicted before the call.
    pub(crate) async fn wait_outcome(
        &self,
        id: OperationId,
        answer: Answerer<R>,
    ) -> Option<Answer<R>> {
        let (tx, rx) = oneshot::channel();
        let reply = Reply::new(tx, answer);
        if !self
            .inner()
            .update(|core, _| core.answer_when_finished(id, reply))
        {
            return None;
        }
        // The sender is dropped unanswered only with the coordinator, after every accepted
        // operation finished: then the record is gone.
        rx.await.ok()
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
