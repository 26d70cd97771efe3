//! Rate limits as coordinator admission hooks.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision, OperationId};
use futures::future::BoxFuture;

use super::RateLimiter;

/// A [`RateLimiter`] as a coordinator [`Admission`] hook: an item starts when a permit is
/// free and nobody waits for it; otherwise it is deferred, holding no concurrency slot,
/// behind the limiter's other waiters.
///
/// # How waiting items are served
///
/// Deferred items wait in the limiter's [`Waiters`](super::Waiters) queue, in the order they
/// were deferred, together with the limiter's [`acquire`](RateLimiter::acquire) callers. Only
/// the one holding the turn waits on the clock: it sleeps until a permit is free (looking
/// with [`check`](RateLimiter::check), taking nothing), then its deferral ends and it is
/// asked again on a worker, where it takes the permit. So, while the workers keep up, each
/// item is asked about at most twice (400 items at 100 per second: 799 asks, where
/// deferring every item for `retry_after` asked 80,200 times, n²/2) and items start in the
/// order they were deferred; and starts keep the limiter's rate and burst even when the
/// workers, not the rate, held items back (four items freed together by busy workers still
/// start one interval apart).
///
/// The next waiter waits until that item has been asked and took its permit, or for a grace
/// of one interval at the limiter's rate, at least 100 ms, in case it never is (cancelled, or
/// stopped by another hook, as it was asked); an item asked only after that (no worker was
/// free for that long) waits its turn again, behind the others. An item cancelled while
/// it holds the turn gives it up at once. A readied item that finds its permit gone when
/// asked (taken by a bare [`try_acquire`](RateLimiter::try_acquire), which never queues, or
/// by a lowered burst) waits its turn again, behind the others.
///
/// Past 1,000 per second, when the timer wakes the waiter on the clock late, the readied
/// item and the ones after it take the permits that came free meanwhile in that wake (see
/// [`Waiters`](super::Waiters)), so starts keep the rate: 1,000 items at 2,000 per second
/// start in 0.5 s, not 1 s (burst 1) or 0.68 s (burst 3, a loaded runtime).
///
/// # Several hooks: put the slowest limit first
///
/// A hook takes its permit when it admits an item, and cannot learn that a hook after it
/// deferred the item: the permit is spent, and the item takes another when it is asked
/// again. So with two rate hooks, the first spends permits on items the second holds back.
/// Put the slowest limit first (and any hook that defers, such as a circuit breaker's,
/// before the rate hooks): the faster one after it rarely defers. 1,000 items through a
/// 100/s hook, then a 200/s one, start in 9.99 s, as through the 100/s hook alone; in the
/// other order they took 15.2 s, as the 200/s hook spent about two permits per item and
/// sent items back to the end of its queue.
///
/// Keeping the spent permit for the item instead would break the first hook's rate: while a
/// later hook held items back (a pause), the first would go on handing out permits with
/// nothing starting, and all those items would start at once when the pause ended. The
/// [`Admission`] trait has no way to reserve a permit and give it back, so this is a
/// limitation of chaining rate hooks, not something this hook can settle alone.
///
/// Give a limiter one hook per coordinator: two `RateLimitAdmission`s over the same limiter
/// on one coordinator share its queue, and an item readied by one is taken by the other,
/// over and over; the items never start. (Coordinators of their own may share a limiter,
/// each with its hook: operation ids are unique in the process.)
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};
/// use ephemeral_atoms::rate_limit::{GcraLimiter, RateLimitAdmission};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 10 per second, burst 5: five start at once, then one every 100 ms.
/// let limiter = Arc::new(GcraLimiter::new(10.0, 5)?);
/// let coordinator = EphemeralWorkCoordinator::with_admission(
///     |_: u32, _ctx| async { Ok::<_, Infallible>(()) },
///     EphemeralOptions::default().max_concurrency(8),
///     vec![Arc::new(RateLimitAdmission::new(limiter))],
/// )?;
/// let start = tokio::time::Instant::now();
/// for i in 0..10 {
///     coordinator.enqueue(i).await?;
/// }
/// coordinator.drain().await?;
/// assert_eq!(start.elapsed().as_millis(), 500);
/// # Ok(())
/// # }
/// ```
pub struct RateLimitAdmission<L> {
    limiter: Arc<L>,
}

impl<L: RateLimiter + Send + Sync + 'static> RateLimitAdmission<L> {
    /// A hook taking one permit of `limiter` per item.
    pub fn new(limiter: Arc<L>) -> Self {
        Self { limiter }
    }

    /// The limiter behind this hook.
    #[must_use]
    pub fn limiter(&self) -> &Arc<L> {
        &self.limiter
    }
}

impl<L> fmt::Debug for RateLimitAdmission<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitAdmission").finish_non_exhaustive()
    }
}

impl<L: RateLimiter + Send + Sync + 'static> Admission for RateLimitAdmission<L> {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let id = request.id;
        let limiter = &self.limiter;
        let waiters = limiter.waiters();
        let decision = if waiters.is_ready(id) {
            // Charged from when it came free if the timer woke its turn late.
            let taken = limiter.try_acquire_waited(waiters.owed()).is_ok();
            // Taken or not, the next waiter goes on now.
            waiters.clear_ready(id);
            if taken {
                Decision::Admit
            } else {
                // Its permit went elsewhere (a bare `try_acquire`, a lowered burst).
                Decision::defer(wait_turn(limiter.clone(), id))
            }
        } else if !waiters.is_busy() && limiter.try_acquire().is_ok() {
            // Nobody waits: a free permit is taken at once.
            Decision::Admit
        } else {
            Decision::defer(wait_turn(limiter.clone(), id))
        };
        Box::pin(std::future::ready(decision))
    }
}

/// An item's deferral: its turn among the waiters, then its permit free; it is then readied
/// and takes the permit when it is asked again.
async fn wait_turn<L: RateLimiter + ?Sized>(limiter: Arc<L>, id: OperationId) {
    let waiters = limiter.waiters();
    // Dropping the deferral (the item cancelled) gives the turn up.
    let _turn = waiters.turn().await;
    waiters.after_readied(&*limiter).await;
    waiters.until_free(&*limiter).await;
    waiters.set_ready(id);
    // The turn passes on here; the next waiter waits for this item to be asked.
}
