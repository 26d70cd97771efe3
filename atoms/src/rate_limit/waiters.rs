//! The queue of a limiter's waiters: one turn, taken in order, and the item readied by it.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ephemeral::OperationId;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::RateLimiter;

/// How long, at least, a waiter waits for the deferred item readied before it to be asked
/// again (see [`Waiters::after_readied`]).
const READY_GRACE: Duration = Duration::from_millis(100);

/// The queue of a limiter's waiters, returned by [`RateLimiter::waiters`].
///
/// Whoever waits for a permit ([`acquire`](RateLimiter::acquire), or an item a
/// [`RateLimitAdmission`](super::RateLimitAdmission) deferred) takes a turn here first, in
/// the order they began waiting, and only the one holding the turn waits on the clock. Without
/// it every waiter would sleep until the same next permit and all wake to compete for it: n
/// waiters would cost n checks per permit, n²/2 in all (400 deferred items at 100 per second
/// were asked about 80,200 times).
///
/// A limiter holds one, shared by its clones like the rest of its state. If you implement
/// [`RateLimiter`] yourself, keep a `Waiters::new()` next to your state and return it; a
/// wrapper around another limiter returns the inner limiter's, so that both queue together.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use ephemeral_atoms::rate_limit::{
///     GcraLimiter, RateConfigError, RateLimited, RateLimiter, Tunable, Waiters,
/// };
///
/// /// A limiter that logs its refusals: the queue is the inner limiter's.
/// struct Logged(GcraLimiter);
///
/// impl Tunable for Logged {
///     fn rate(&self) -> f64 { self.0.rate() }
///     fn burst(&self) -> u32 { self.0.burst() }
///     fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
///         self.0.set_rate(per_second)
///     }
///     fn set_burst(&self, burst: u32) -> Result<(), RateConfigError> {
///         self.0.set_burst(burst)
///     }
/// }
///
/// impl RateLimiter for Logged {
///     fn try_acquire(&self) -> Result<(), RateLimited> {
///         self.0.try_acquire().inspect_err(|refused| eprintln!("{refused}"))
///     }
///     fn check(&self) -> Result<(), RateLimited> { self.0.check() }
///     fn waiters(&self) -> &Waiters { self.0.waiters() }
/// }
/// ```
pub struct Waiters {
    /// One permit: the turn.
    turn: Semaphore,
    /// The deferred item whose permit is free and that has not been asked again yet: the
    /// next holder of the turn lets it take that permit first.
    ready: Mutex<Option<OperationId>>,
    /// Notified when `ready` is emptied.
    readied: Notify,
}

impl Waiters {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self {
            turn: Semaphore::new(1),
            ready: Mutex::new(None),
            readied: Notify::new(),
        }
    }

    /// Waits for the turn, in order. Dropping the future, or the turn, gives it up.
    pub(crate) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed, so this is always `Some`.
        self.turn.acquire().await.ok()
    }

    /// Whether someone holds the turn or a readied item has not been asked yet: a newcomer
    /// then goes behind them rather than take the permit they wait for.
    pub(crate) fn is_busy(&self) -> bool {
        self.ready().is_some() || self.turn.available_permits() == 0
    }

    /// Whether `id` is the readied item.
    pub(crate) fn is_ready(&self, id: OperationId) -> bool {
        *self.ready() == Some(id)
    }

    /// Marks `id` readied: its permit is free, and it takes it when asked again.
    pub(crate) fn set_ready(&self, id: OperationId) {
        *self.ready() = Some(id);
    }

    /// `id` was asked again (and took its permit, or found it gone): the next waiter goes on.
    pub(crate) fn clear_ready(&self, id: OperationId) {
        let cleared = {
            let mut ready = self.ready();
            let cleared = *ready == Some(id);
            if cleared {
                *ready = None;
            }
            cleared
        };
        if cleared {
            self.readied.notify_waiters();
        }
    }

    /// Waits (holding the turn) until the item readied by the previous holder has been asked
    /// again and took its permit, or a grace has passed: at least 100 ms, at least one
    /// interval at `limiter`'s rate. An item is asked as soon as a worker is free, so one not
    /// asked yet either waits for a worker (no start could happen meanwhile anyway) or has
    /// ended without being asked (cancelled, or stopped by another hook); if it is asked
    /// after all, it waits its turn again, behind the others.
    pub(crate) async fn after_readied<L: RateLimiter + ?Sized>(&self, limiter: &L) {
        loop {
            let notified = self.readied.notified();
            tokio::pin!(notified);
            // Registered before `ready` is read, so a clear in between still wakes it.
            notified.as_mut().enable();
            let Some(earlier) = *self.ready() else {
                return;
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(grace(limiter.rate())) => {
                    let mut ready = self.ready();
                    if *ready == Some(earlier) {
                        *ready = None;
                    }
                }
            }
        }
    }

    fn ready(&self) -> MutexGuard<'_, Option<OperationId>> {
        // Every update writes a whole value: consistent after any panic.
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The grace given to a readied item: one interval at `rate`, at least [`READY_GRACE`]. A
/// rate so slow that its interval does not fit a `Duration` gets a year: it is only the
/// longest a gone item can hold the next waiter up, and at that rate no permit comes sooner.
fn grace(rate: f64) -> Duration {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    Duration::try_from_secs_f64(1.0 / rate)
        .unwrap_or(YEAR)
        .min(YEAR)
        .max(READY_GRACE)
}

impl Default for Waiters {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Waiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiters")
            .field("turn_taken", &(self.turn.available_permits() == 0))
            .field("ready", &*self.ready())
            .finish()
    }
}

/// Sleeps until `limiter` has a permit free, without taking it (by the holder of the turn,
/// for an item that takes it when asked again).
pub(crate) async fn until_free<L: RateLimiter + ?Sized>(limiter: &L) {
    while let Err(refused) = limiter.check() {
        tokio::time::sleep(refused.retry_after).await;
    }
}
