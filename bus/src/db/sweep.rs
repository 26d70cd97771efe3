//! The sweeper: removes values when their time to live ends, so watchers see `Expired`.
//!
//! One task per database per process, sleeping until the earliest expiry in the database
//! (the first key of `exp`, every store and every process's values together), then
//! sweeping what is due in one write. Woken earlier when this process sets a value that
//! expires sooner, or a watcher here sees another process do so. Every process with the
//! database open sweeps; a value is removed (and its `Expired` logged) once, by whichever
//! write comes first. Reads never depend on the sweep: an expired value is not returned
//! even before it is swept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::Db;
use crate::retained::clock;
use crate::store::ops;

/// The most values one sweep removes; the next sweep follows at once.
const SWEEP_LIMIT: usize = 1024;

/// State shared by a database and its sweeper task.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Whether a sweeper task runs now (it clears this when it ends, even by its runtime
    /// shutting down, so a later `start` starts another).
    running: AtomicBool,
    /// The expiry the task sleeps until (`u64::MAX`: none).
    next_ms: AtomicU64,
    wake: Notify,
    closed: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            running: AtomicBool::new(false),
            next_ms: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }
}

impl Sweeper {
    /// Something expiring at `expires_ms` (0: never) was set: wake the task if it sleeps
    /// past that.
    pub(crate) fn poke(&self, expires_ms: u64) {
        // Relaxed: a stale read only costs a spurious or a skipped wake-up, and a skipped
        // one is impossible for a sooner expiry (fetch_min below is the one that counts).
        if expires_ms != 0 && expires_ms < self.shared.next_ms.load(Ordering::Relaxed) {
            self.shared.next_ms.fetch_min(expires_ms, Ordering::Relaxed);
            self.shared.wake.notify_one();
        }
    }

    /// The database is going away: stop the task.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Clears `running` when the task ends, however it ends.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Starts the sweeper task of `db` unless one runs. Call from a runtime.
pub(crate) fn start(db: &Arc<Db>) {
    let shared = Arc::clone(&db.sweeper.shared);
    if shared.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(db);
    tokio::spawn(async move {
        let running = Running(shared);
        let shared = &running.0;
        loop {
            if shared.closed.load(Ordering::Acquire) {
                break;
            }
            // Enabled before the earliest expiry is read, so a poke in between is kept.
            let notified = shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let Some(db) = weak.upgrade() else { break };
                ops::earliest_expiry(&db).unwrap_or(None)
            };
            shared
                .next_ms
                .store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
            match next {
                None => {
                    notified.await;
                    continue;
                }
                Some(at) => {
                    let wait = clock::until_ms(at);
                    if !wait.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = &mut notified => continue,
                        }
                    }
                }
            }
            let Some(db) = weak.upgrade() else { break };
            let now = clock::now_ms();
            match db.write(move |w| ops::sweep(w, now, SWEEP_LIMIT)).await {
                Ok(changed) => ops::ring_all(&db, &changed).await,
                // A failing database: try again later rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    });
}
