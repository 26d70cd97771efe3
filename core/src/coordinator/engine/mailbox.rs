//! A waiting worker's mailbox: how an accepted item reaches an idle worker already started,
//! so the worker does not take the engine's lock again to find it.
//!
//! A worker that finds nothing to start registers itself as idle (an [`Idle`] in the core)
//! under the lock and waits on its own mailbox. Whoever takes it off that list, under the
//! lock, wakes it exactly once: `accept` hands it the job it just started for it (the job is
//! `Running` in the window and named by the worker's slot before the unlock); a section that
//! wakes every worker (`complete`, `cancel`, a pause ending, a new limit, the coordinator
//! done) wakes it with no job, and it looks for work under the lock as before.

use std::sync::Arc;

use tokio::sync::Notify;

use super::slot::Slot;
use crate::sync::{Mutex, lock};

/// One worker's mailbox, reused for its whole life.
///
/// # Invariants
///
/// * The worker is on the core's idle list at most once, and only while it waits here.
/// * Every removal from that list is followed by exactly one [`wake`](Self::wake) (after the
///   unlock), and every wait consumes exactly one: a wake that comes before the worker starts
///   waiting is kept as the `Notify`'s permit, so no wake-up is lost and none is left over.
/// * `job` is written only under the engine's lock, by the section that removes the worker
///   from the idle list, and read by the worker after that wake.
pub(crate) struct Mailbox<J> {
    job: Mutex<Option<J>>,
    wake: Notify,
}

impl<J> Mailbox<J> {
    pub(crate) fn new() -> Self {
        Self {
            job: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Hands the worker a started job (under the engine's lock, before [`wake`](Self::wake)).
    pub(crate) fn hand(&self, job: J) {
        *lock(&self.job) = Some(job);
    }

    /// Wakes the worker (after the unlock).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits for the wake-up; returns the job handed over with it, if any.
    pub(crate) async fn wait(&self) -> Option<J> {
        self.wake.notified().await;
        lock(&self.job).take()
    }
}

/// A waiting worker, as the core's idle list holds it.
pub(crate) struct Idle<J> {
    /// The worker's slot, to start a job in.
    pub(crate) slot: Arc<Slot>,
    pub(crate) mailbox: Arc<Mailbox<J>>,
}
