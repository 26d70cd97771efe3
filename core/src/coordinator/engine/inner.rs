//! What every handle, worker and the steering task share: the lock-guarded [`Core`], the
//! wake-ups, the room for pending items, and the one way to change the state.
//!
//! Locking: one mutex guards the [`Core`]; every critical section is short and runs no user
//! code. Changes go through [`Inner::update`]: it runs a `Core` method under the lock, which
//! records what must happen next in an [`Effect`], and applies that effect after the unlock
//! (room back, workers spawned or woken, `done` published, result waiters woken, then the
//! `on_finalized` and `on_evicted` callbacks; `done` is published only once the callbacks
//! owed before it returned). The one exception is accepting an item, the hottest section,
//! which cannot end or evict an operation: `Core::accept` returns an [`Accepted`] instead,
//! applied by [`Inner::accepted`]. And while every worker is busy with a backlog waiting, an
//! item is accepted with no section at all: it is left in the inbox (`inbox.rs`), which
//! every section takes in first, so no section ever sees the state without it. Lock order
//! is core → sink (the sink never calls back while locked), and core → a waiting worker's
//! mailbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::admission::Admission;
use super::super::context::ContextShared;
use super::super::queue::Queue;
use super::inbox::Inbox;
use super::mailbox::Mailbox;
use super::rules::Rules;
use super::state::{Accepted, Core, Effect, Taken};
use crate::sync::{Mutex, MutexGuard, lock};

/// Spawns one worker task for the coordinator whose state it is given.
pub(crate) type SpawnWorker<T, R, Q> = Box<dyn Fn(&Arc<Inner<T, R, Q>>) + Send + Sync>;

/// State shared by handles, workers and the steering task.
pub(crate) struct Inner<T, R, Q: Queue<T>> {
    core: Mutex<Core<T, R, Q>>,
    /// Items accepted without the lock while every worker is busy, with their enqueue
    /// times; taken in at the start of every critical section (see `inbox.rs`).
    pub(crate) inbox: Box<Inbox<(Taken<T, Q>, Instant)>>,
    /// Whether this coordinator uses the inbox at all (`Core::is_lockfree`, fixed).
    lockfree: bool,
    /// Becomes `true` once, when the coordinator is done and the `on_finalized` and
    /// `on_evicted` calls owed until then have returned (see `delivering`).
    pub(crate) done: watch::Sender<bool>,
    /// Critical sections whose callbacks (`on_finalized`, `on_evicted`) are owed or running:
    /// counted before the unlock, so that `done` is published only once every callback of
    /// an operation that ended before it has returned (`drain` then sees them all, also
    /// when they run on another thread).
    delivering: AtomicUsize,
    /// The core became done; `done` is published when `delivering` is zero.
    done_held: AtomicBool,
    /// Room for pending items (`max_pending`).
    pub(crate) room: Semaphore,
    pub(crate) ctx: Arc<ContextShared>,
    pub(crate) rules: Rules,
    /// Cancelled at shutdown: stops the steering task, intake streams and parked waits.
    pub(crate) root: CancellationToken,
    pub(crate) hooks: Vec<Arc<dyn Admission>>,
    pub(crate) runtime: Handle,
    /// The sink's sequence when the coordinator was created: older drain signals do not
    /// count.
    pub(crate) created_seq: u64,
    /// Wakes the steering task (a `max_defer` clock started).
    pub(crate) steer: Notify,
    /// Set once at shutdown, just before `root` is cancelled: what workers check before
    /// admitting a job (a token's `is_cancelled` takes its mutex, shared by every worker).
    shut_down: AtomicBool,
    /// Set once the last handle is gone (before the shutdown it causes): the steering task,
    /// which may outlive a `cancel` to sweep the window, stops then.
    handles_gone: AtomicBool,
    /// Set once the coordinator stops accepting items (`complete`, `cancel`), just after the
    /// core's own flag: what `is_closed`, `reserve` and `try_enqueue` read instead of taking
    /// the lock. A call that reads it a moment too early is refused by `accept` under the
    /// lock instead.
    closed: AtomicBool,
    /// Notified once `closed` is set: wakes `enqueue` and `reserve` calls waiting for room,
    /// which must fail then even though the room stays open for running intake streams.
    pub(crate) closing: Notify,
    /// Spawns one worker task, running the body (erased here: see `body.rs`). Handed in by
    /// the engine handle, so that this module does not depend on the worker (which depends
    /// on it).
    spawn_worker: SpawnWorker<T, R, Q>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Inner<T, R, Q> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: Core<T, R, Q>,
        room: usize,
        ctx: Arc<ContextShared>,
        rules: Rules,
        hooks: Vec<Arc<dyn Admission>>,
        runtime: Handle,
        created_seq: u64,
        spawn_worker: SpawnWorker<T, R, Q>,
    ) -> Self {
        let lockfree = core.is_lockfree();
        Self {
            core: Mutex::new(core),
            inbox: Box::new(Inbox::new()),
            lockfree,
            done: watch::channel(false).0,
            delivering: AtomicUsize::new(0),
            done_held: AtomicBool::new(false),
            room: Semaphore::new(room),
            ctx,
            rules,
            root: CancellationToken::new(),
            hooks,
            runtime,
            created_seq,
            steer: Notify::new(),
            shut_down: AtomicBool::new(false),
            handles_gone: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            spawn_worker,
        }
    }

    /// Locks the core to read it, to accept an item, or to begin a section that ends with
    /// [`release`](Self::release) (a waiting worker enables its wake-up under the lock).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<T, R, Q>> {
        let mut core = lock(&self.core);
        if self.lockfree {
            self.take_inbox(&mut core);
        }
        core
    }

    /// Takes in, under the lock, every item left in the inbox, oldest first.
    fn take_inbox(&self, core: &mut Core<T, R, Q>) {
        self.inbox.take(|(job, at)| {
            // The queue accepts every job as it comes: nothing holds it.
            let _held = core.take_in(job, None, at);
        });
    }

    /// At a section's end: hands what the inbox brought in to waiting workers, spawns the
    /// workers it needs, then opens the inbox or shuts it; if it was shut with items left
    /// in it meanwhile, takes those in and decides again (see `inbox.rs`).
    fn settle_inbox(
        &self,
        core: &mut Core<T, R, Q>,
        fx: &mut Effect,
        woken: &mut Vec<Arc<Mailbox<Taken<T, Q>>>>,
    ) {
        loop {
            core.hand_out(fx, &self.ctx.sink, woken);
            if !self.inbox.set_open(core.inbox_may_open()) {
                return;
            }
            self.take_inbox(core);
        }
    }

    /// Closes the inbox for good and takes in what is left: `complete` and `cancel`, before
    /// the coordinator stops taking items.
    fn close_inbox(&self, core: &mut Core<T, R, Q>) {
        if self.lockfree {
            self.inbox.close();
            self.take_inbox(core);
        }
    }

    /// Runs `f` on the core under the lock, then, after the unlock, applies the [`Effect`]
    /// it recorded (with `done` and the owed callbacks).
    #[inline(always)]
    pub(crate) fn update<X>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Core<T, R, Q>, &mut Effect) -> X,
    ) -> X {
        let mut fx = Effect::default();
        let mut core = self.lock();
        let out = f(&mut core, &mut fx);
        self.release(core, fx);
        out
    }

    /// Concludes a critical section begun with [`lock`](Self::lock): unlocks, then applies
    /// `fx`.
    #[inline(always)]
    pub(crate) fn release(
        self: &Arc<Self>,
        mut core: MutexGuard<'_, Core<T, R, Q>>,
        mut fx: Effect,
    ) {
        core.conclude(&mut fx);
        let answered = core.take_answered();
        let mut woken = if fx.has(Effect::WAKE_ALL) || fx.has(Effect::DONE) {
            core.take_idle()
        } else {
            Vec::new()
        };
        if self.lockfree {
            self.settle_inbox(&mut core, &mut fx, &mut woken);
        }
        if fx.owed.is_some() {
            // SeqCst: see `publish_done`. Before the unlock, so that a section concluding
            // `done` after this one sees these callbacks owed.
            self.delivering.fetch_add(1, Ordering::SeqCst);
        }
        drop(core);
        answered.send();
        // Most sections wake nobody: no iterator to build and drop for them.
        if !woken.is_empty() {
            for mailbox in woken {
                mailbox.wake();
            }
        }
        self.apply(fx);
    }

    /// Applies an effect; never called under the lock.
    #[inline(always)]
    fn apply(self: &Arc<Self>, fx: Effect) {
        if fx.any_flag() {
            if fx.has(Effect::CLOSED) {
                // Release: pairs with the Acquire in `is_closed`.
                self.closed.store(true, Ordering::Release);
                self.closing.notify_waiters();
            }
            if fx.has(Effect::CLOSE_ROOM) {
                self.room.close();
            }
            if fx.has(Effect::CANCEL_ROOT) {
                // Release: pairs with the Acquire in `is_shut_down`.
                self.shut_down.store(true, Ordering::Release);
                self.root.cancel();
            }
        }
        if fx.room_back > 0 {
            self.room.add_permits(fx.room_back);
        }
        for _ in 0..fx.spawn {
            (self.spawn_worker)(self);
        }
        if fx.any_flag() {
            if fx.has(Effect::DONE) {
                // SeqCst: see `publish_done`.
                self.done_held.store(true, Ordering::SeqCst);
                self.publish_done();
            }
            if fx.has(Effect::DONE) || fx.has(Effect::STEER) {
                self.steer.notify_one();
            }
        }
        if !fx.unstarted.is_empty() {
            for span in fx.unstarted {
                span.record("outcome", "cancelled");
            }
        }
        if let Some(owed) = fx.owed {
            // Catches a panicking callback: the count always comes down.
            self.rules.deliver(owed.finalized, owed.evicted);
            // SeqCst: see `publish_done`.
            if self.delivering.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.publish_done();
            }
        }
    }

    /// Publishes `done` if the core is done and no owed callback still runs. Called by the
    /// section that concluded `done` and by the last callback delivery to return; all
    /// SeqCst, so whichever of the two comes second sees the other's write and publishes
    /// (both may: publishing twice is harmless).
    fn publish_done(&self) {
        if self.done_held.load(Ordering::SeqCst) && self.delivering.load(Ordering::SeqCst) == 0 {
            self.done.send_replace(true);
        }
    }

    /// What follows an accepted item, after the unlock.
    pub(crate) fn accepted(self: &Arc<Self>, accepted: Accepted<Taken<T, Q>>) {
        if let Some(mailbox) = accepted.wake {
            // The item started at once: it left the queue, and its room comes back (once
            // its admission hooks decide, if there are any: see `Core::try_start`).
            if self.hooks.is_empty() {
                self.room.add_permits(1);
            }
            mailbox.wake();
        }
        if accepted.spawn {
            (self.spawn_worker)(self);
        }
        if accepted.steer {
            self.steer.notify_one();
        }
    }

    /// Whether this coordinator accepts items through the inbox when it is open.
    pub(crate) fn lockfree(&self) -> bool {
        self.lockfree
    }

    /// Whether the coordinator stopped accepting items, read without the lock (see
    /// `closed`).
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `apply`.
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the coordinator was shut down (`cancel()` or the last handle dropped).
    /// Marks the last handle gone and shuts the coordinator down.
    pub(crate) fn handles_dropped(self: &Arc<Self>) {
        // Release: pairs with the Acquire in `are_handles_gone`.
        self.handles_gone.store(true, Ordering::Release);
        self.shutdown();
        self.steer.notify_one();
    }

    /// Whether the last handle is gone.
    pub(crate) fn are_handles_gone(&self) -> bool {
        // Acquire: pairs with the Release in `handles_dropped`.
        self.handles_gone.load(Ordering::Acquire)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        // Acquire: pairs with the Release in `apply`.
        self.shut_down.load(Ordering::Acquire)
    }

    /// `cancel()` and dropping the last handle.
    pub(crate) fn shutdown(self: &Arc<Self>) {
        let now = Instant::now();
        self.update(|core, fx| {
            self.close_inbox(core);
            core.shutdown(fx, now);
        });
    }

    /// `complete()` (idempotent).
    pub(crate) fn complete(self: &Arc<Self>) {
        self.update(|core, fx| {
            self.close_inbox(core);
            core.complete(fx);
        });
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
