//! The queue of a limiter's waiters: one turn, taken in order, and the item readied by it.

use std::fmt;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ephemeral::OperationId;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::RateLimiter;

/// How long, at least, a waiter waits for the deferred item readied before it to be asked
/// again (see [`Waiters::after_readied`]).
const READY_GRACE: Duration = Duration::from_millis(100);

/// How far back the waiters make up for a late wake (see [`Waiters`]): tokio's timer fires on
/// whole milliseconds, the thread it runs on wakes up to about a millisecond later, and on a
/// loaded runtime each hand-on of the turn takes a while too; a runtime stalled for longer
/// loses what came free in the rest of the stall rather than let it all through at once.
const MAX_CATCH_UP: Duration = Duration::from_millis(10);

/// The queue of a limiter's waiters, returned by [`RateLimiter::waiters`].
///
/// Whoever waits for a permit ([`acquire`](RateLimiter::acquire), or an item a
/// [`RateLimitAdmission`](super::RateLimitAdmission) deferred) takes a turn here first, in
/// the order they began waiting, and only the one holding the turn waits on the clock. Without
/// it every waiter would sleep until the same next permit and all wake to compete for it: n
/// waiters would cost n checks per permit, n²/2 in all (400 deferred items at 100 per second
/// were asked about 80,200 times).
///
/// # Rates past 1,000 per second
///
/// Tokio's timer wakes a sleeper on a whole millisecond, and later on a busy runtime, so the
/// waiter on the clock usually wakes after its permit came free. The queue notes when that
/// permit was due, and for 10 ms after the wake, that waiter and the ones after it (and an
/// `acquire` loop calling again at once) take their permits with
/// [`try_acquire_waited`](RateLimiter::try_acquire_waited), charged from when each came free
/// but never from before that due moment: the permits that came free meanwhile are taken,
/// not lost to the timer. So waiters get the rate asked for past 1,000 per second (at 2,000
/// per second and burst 1: two permits every millisecond, where charging from the wake gave
/// one; 1,000 items through [`RateLimitAdmission`](super::RateLimitAdmission) and 100
/// `acquire` calls at 2,000 per second, burst 3, on a loaded two-core runtime took 0.55 s,
/// the ideal, not 0.68 s). The price: a late wake grants at once, beyond the burst, the
/// permits that came free while it was late (at most 10 ms of them; a longer stall loses
/// the rest).
///
/// A limiter holds one, shared by its clones like the rest of its state. If you implement
/// [`RateLimiter`] yourself, keep a `Waiters::new()` next to your state and return it, and
/// call [`retuned`](Waiters::retuned) when your rate or burst changes; a wrapper around
/// another limiter returns the inner limiter's, so that both queue together (and its
/// retunes reach them).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
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
///     fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
///         self.0.try_acquire_waited(waited).inspect_err(|refused| eprintln!("{refused}"))
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
    /// The last wake of a waiter on the clock that the timer woke late: see [`Wake`].
    wake: Mutex<Option<Wake>>,
    /// Notified when the limiter's rate or burst changed: the waiter on the clock looks
    /// again at once (see [`Waiters::retuned`]).
    retuned: Notify,
}

impl Waiters {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self {
            turn: Semaphore::new(1),
            ready: Mutex::new(None),
            readied: Notify::new(),
            wake: Mutex::new(None),
            retuned: Notify::new(),
        }
    }

    /// Tells the queue that the limiter's rate or burst changed, so that the waiter on the
    /// clock looks at the limiter again now instead of sleeping until the permit the old
    /// settings promised: after `set_rate(100.0)` on a limiter at 0.1 per second, a waiting
    /// [`acquire`](RateLimiter::acquire) gets its permit within 10 ms, not up to 10 s later.
    ///
    /// [`GcraLimiter`](super::GcraLimiter), [`TokenBucket`](super::TokenBucket) and
    /// [`KeyedRateLimiter`](super::KeyedRateLimiter) call it from
    /// [`set_rate`](super::Tunable::set_rate) and [`set_burst`](super::Tunable::set_burst)
    /// (a wrapper forwarding those to them needs nothing more); a limiter of your own calls
    /// it once its new rate or burst is in place.
    pub fn retuned(&self) {
        self.retuned.notify_waiters();
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
    /// interval at `limiter`'s rate (the rate in force: a retune recomputes it, still counted
    /// from when the wait for that item began). An item is asked as soon as a worker is
    /// free, so one not asked yet either waits for a worker (no start could happen meanwhile
    /// anyway) or has ended without being asked (cancelled, or stopped by another hook); if
    /// it is asked after all, it waits its turn again, behind the others.
    pub(crate) async fn after_readied<L: RateLimiter + ?Sized>(&self, limiter: &L) {
        // The readied item waited for, and since when: its grace counts from then.
        let mut waiting: Option<(OperationId, Instant)> = None;
        loop {
            let notified = self.readied.notified();
            let retuned = self.retuned.notified();
            tokio::pin!(notified, retuned);
            // Registered before `ready` and the rate are read, so a clear or a retune in
            // between still wakes it.
            notified.as_mut().enable();
            retuned.as_mut().enable();
            let Some(earlier) = *self.ready() else {
                return;
            };
            let since = match waiting {
                Some((id, since)) if id == earlier => since,
                _ => waiting.insert((earlier, Instant::now())).1,
            };
            let grace = grace(limiter.rate());
            let grace_over = async {
                match since.checked_add(grace) {
                    Some(end) => tokio::time::sleep_until(end).await,
                    None => tokio::time::sleep(grace).await,
                }
            };
            tokio::select! {
                () = notified => {}
                // The rate or burst changed: the grace is recomputed at the new rate.
                () = retuned => {}
                () = grace_over => {
                    let mut ready = self.ready();
                    if *ready == Some(earlier) {
                        *ready = None;
                    }
                }
            }
        }
    }

    /// Takes a permit of `limiter` for the waiter holding the turn, sleeping on the clock
    /// until one is free.
    pub(crate) async fn take<L: RateLimiter + ?Sized>(&self, limiter: &L) {
        self.take_with(|waited| limiter.try_acquire_waited(waited))
            .await;
    }

    /// Takes a permit with `try_take` (given how far back it may be charged, as
    /// [`try_acquire_waited`](RateLimiter::try_acquire_waited)) for the waiter holding the
    /// turn, sleeping on the clock until one is free.
    pub(crate) async fn take_with(
        &self,
        mut try_take: impl FnMut(Duration) -> Result<(), super::RateLimited>,
    ) {
        loop {
            let retuned = self.retuned.notified();
            tokio::pin!(retuned);
            // Registered before the limiter is asked, so a change in between still ends the
            // sleep on the answer it made stale.
            retuned.as_mut().enable();
            match try_take(self.owed()) {
                Ok(()) => return,
                Err(refused) => self.sleep(refused.retry_after, retuned).await,
            }
        }
    }

    /// Sleeps until `limiter` has a permit free, without taking it (by the holder of the
    /// turn, for an item that takes it when asked again).
    pub(crate) async fn until_free<L: RateLimiter + ?Sized>(&self, limiter: &L) {
        loop {
            let retuned = self.retuned.notified();
            tokio::pin!(retuned);
            // As in `take_with`: a change after the check still ends the sleep.
            retuned.as_mut().enable();
            match limiter.check() {
                Ok(()) => return,
                Err(refused) => self.sleep(refused.retry_after, retuned).await,
            }
        }
    }

    /// How far back a permit taken now may be charged (for
    /// [`try_acquire_waited`](RateLimiter::try_acquire_waited)): to the moment the last
    /// waiter on the clock was due, if the timer woke it late and that wake is recent (10 ms
    /// at most).
    pub(crate) fn owed(&self) -> Duration {
        let now = Instant::now();
        self.wake()
            .filter(|wake| now <= wake.until)
            .map_or(Duration::ZERO, |wake| (now - wake.due).min(MAX_CATCH_UP))
    }

    /// Sleeps `wait` on the clock for a permit due then, and notes how late the timer woke;
    /// returns early when `retuned` fires (the rate or burst changed, so the permit may be
    /// due sooner: the caller asks again).
    async fn sleep(&self, wait: Duration, retuned: Pin<&mut Notified<'_>>) {
        let Some(due) = Instant::now().checked_add(wait) else {
            // Past what the clock holds: no permit comes in this process's lifetime, unless
            // the limiter is retuned.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = retuned => {}
            }
            return;
        };
        tokio::select! {
            // The timer first: a wake it is due for notes how late it came.
            biased;
            () = tokio::time::sleep_until(due) => {}
            // Not a timer wake: nothing came free late, nothing to make up for.
            () = retuned => return,
        }
        let woke = Instant::now();
        let late = (woke - due).min(MAX_CATCH_UP);
        // On time (as under tokio's paused clock, for permits on whole milliseconds), no
        // permit came free meanwhile: nothing to make up for.
        *self.wake() = (!late.is_zero()).then(|| Wake {
            due: woke - late,
            until: woke + MAX_CATCH_UP,
        });
    }

    fn wake(&self) -> MutexGuard<'_, Option<Wake>> {
        // Written whole: consistent after any panic.
        self.wake.lock().unwrap_or_else(PoisonError::into_inner)
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

/// A wake of the waiter on the clock that came after its permit was due: the permits that
/// came free from `due` on are charged from when they came free, for whoever takes one until
/// `until` ([`MAX_CATCH_UP`] after the wake). So the waiter and the ones right behind it (or
/// an `acquire` loop calling again at once) take all of them; an item a busy worker asks
/// only later, or a caller arriving after a quiet spell, is charged from now as usual.
#[derive(Debug, Clone, Copy)]
struct Wake {
    due: Instant,
    until: Instant,
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
            .field("wake", &*self.wake())
            .finish()
    }
}
