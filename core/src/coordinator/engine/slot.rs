//! A worker's slot: how a cancellation reaches the operation the worker runs, with no
//! allocation per operation.
//!
//! Each worker owns one [`Slot`] for its whole life and reuses it for every operation it runs.
//! The engine records in it, under its lock, which operation runs there; a cancel (by id, by
//! signal, or at shutdown) marks that operation cancelled in the slot and wakes the worker's
//! grace timer. The body's [`CancellationToken`] is made only when the body asks for it
//! ([`OperationContext::token`](crate::OperationContext::token)), and is cancelled then if the
//! cancel came first; most bodies never ask, and pay for no token at all.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::super::context::ContextShared;
use crate::OperationId;
use crate::sync::{Mutex, lock};

/// Raw id 0 is never handed out (`OperationId::next` starts at 1): it means "none".
const NONE: u64 = 0;

/// The cancellation state of the operation one worker runs.
///
/// # Invariants
///
/// * `running` is written only under the engine's lock: the raw id of the operation this
///   worker runs past admission, or [`NONE`]. So, under that lock, a `Running` record and the
///   slot whose `running` is its id always agree.
/// * `cancelled` is the raw id of the last operation asked to stop here; ids are never reused,
///   so an old value never applies to a later operation.
/// * `token` holds the token handed to the body of the operation it names, if that body asked
///   for one; a cancel of that operation cancels it.
#[derive(Debug)]
pub(crate) struct Slot {
    running: AtomicU64,
    cancelled: AtomicU64,
    token: Mutex<Option<(u64, CancellationToken)>>,
    /// The sink's sequence when the operation running here started (kept only when
    /// `cancel_running_on` is set): a signal raised before it, not after, cancels it.
    start_seq: AtomicU64,
    /// Wakes the worker's grace timer when its operation is cancelled.
    notify: Notify,
    /// The coordinator's shared context, reached through the slot so that a body's context
    /// costs one uncontended reference count (this worker's slot), not a shared one.
    pub(crate) shared: std::sync::Arc<ContextShared>,
}

impl Slot {
    pub(crate) fn new(shared: std::sync::Arc<ContextShared>) -> Self {
        Self {
            running: AtomicU64::new(NONE),
            cancelled: AtomicU64::new(NONE),
            token: Mutex::new(None),
            start_seq: AtomicU64::new(0),
            notify: Notify::new(),
            shared,
        }
    }

    /// The operation this worker runs now (under the engine's lock).
    pub(crate) fn set_running(&self, id: Option<OperationId>) {
        // Relaxed: written and read under the engine's lock, which orders it; bodies read it
        // only under `token`'s mutex, after the engine published the start through the lock
        // and the task hand-off.
        self.running
            .store(id.map_or(NONE, OperationId::as_u64), Ordering::Relaxed);
    }

    /// Records the sink's sequence at the start of the operation running here (under the
    /// engine's lock).
    pub(crate) fn set_start_seq(&self, seq: u64) {
        // Relaxed: written and read under the engine's lock, which orders it.
        self.start_seq.store(seq, Ordering::Relaxed);
    }

    /// Whether the operation running here started before the signal of sequence `seq` was
    /// raised (under the engine's lock; see `set_start_seq`).
    pub(crate) fn started_before(&self, seq: u64) -> bool {
        // Relaxed: see `set_start_seq`.
        self.start_seq.load(Ordering::Relaxed) < seq
    }

    /// Whether `id` runs here now.
    pub(crate) fn runs(&self, id: OperationId) -> bool {
        // Relaxed: see `set_running`.
        self.running.load(Ordering::Relaxed) == id.as_u64()
    }

    /// The operation running here now, if any (under the engine's lock).
    pub(crate) fn running(&self) -> Option<OperationId> {
        // Relaxed: see `set_running`.
        match self.running.load(Ordering::Relaxed) {
            NONE => None,
            raw => Some(OperationId::from_raw(raw)),
        }
    }

    /// Asks operation `id` (running here) to stop: its token, if the body made one, is
    /// cancelled, and the worker's grace timer starts.
    pub(crate) fn cancel(&self, id: OperationId) {
        let raw = id.as_u64();
        // SeqCst: the store must be visible to `token_for`, which reads it under the token's
        // mutex after storing its token; we take that mutex after this store, so either it
        // sees the mark or we see its token. It also pairs with `cancelled_wait`'s check after
        // enabling its wake-up.
        self.cancelled.store(raw, Ordering::SeqCst);
        if let Some((owner, token)) = &*lock(&self.token)
            && *owner == raw
        {
            token.cancel();
        }
        self.notify.notify_waiters();
    }

    /// Whether operation `id` was asked to stop.
    pub(crate) fn is_cancelled(&self, id: OperationId) -> bool {
        // SeqCst: see `cancel`.
        self.cancelled.load(Ordering::SeqCst) == id.as_u64()
    }

    /// The token of operation `id`, made on first call. A token asked for when `id` no
    /// longer runs here (a context kept past its body) is a fresh one nothing will cancel,
    /// as the operation is over.
    pub(crate) fn token_for(&self, id: OperationId) -> CancellationToken {
        let raw = id.as_u64();
        let mut guard = lock(&self.token);
        if let Some((owner, token)) = &*guard
            && *owner == raw
        {
            return token.clone();
        }
        let token = CancellationToken::new();
        // Read under the mutex: a start of another operation here cannot slip in between
        // the check and the store, because that operation's body has not run yet.
        if self.runs(id) {
            *guard = Some((raw, token.clone()));
        }
        if self.is_cancelled(id) {
            token.cancel();
        }
        token
    }

    /// Completes once operation `id` is asked to stop.
    pub(crate) async fn cancelled(&self, id: OperationId) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Enabled before the check: a cancel after the check wakes us.
            notified.as_mut().enable();
            if self.is_cancelled(id) {
                return;
            }
            notified.await;
        }
    }
}
