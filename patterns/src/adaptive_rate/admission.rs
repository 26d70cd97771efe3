//! The adaptive limiter as a coordinator's admission hook.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision, OperationId};
use futures::future::BoxFuture;

use super::AdaptiveRate;

/// The [`Admission`] hook of an [`AdaptiveRate`]: admits when a start is allowed, otherwise
/// defers the item (holding no slot) behind the limiter's other waiters.
///
/// Waiters take a turn, in order; the one holding it sleeps until a start is free (without
/// taking it), is then *readied* and its deferral ends; asked again on a worker, it takes the
/// start then, so starts keep the limiter's rate and burst whatever the workers are doing.
/// The next waiter waits until the readied item has been asked (or for a grace, in case it
/// never is), so each start costs one wake-up, not one per waiting item.
struct RateAdmission {
    limiter: AdaptiveRate,
}

impl fmt::Debug for RateAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateAdmission")
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl Admission for RateAdmission {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let id = request.id;
        let limiter = &self.limiter;
        let (was_ready, others_first) = {
            let mut ready = limiter.ready();
            let was_ready = *ready == Some(id);
            if was_ready {
                *ready = None;
            }
            let others_first =
                !was_ready && (ready.is_some() || limiter.turn().available_permits() == 0);
            (was_ready, others_first)
        };
        if was_ready {
            limiter.readied().notify_waiters();
        }
        // An item that waits its turn does not let a newcomer take the start it waits for.
        let decision = if !others_first && limiter.try_acquire().is_ok() {
            Decision::Admit
        } else {
            Decision::defer(wait_turn(limiter.clone(), id))
        };
        Box::pin(async move { decision })
    }
}

/// An item's deferral: its turn among the waiters, then its start free; it is then readied.
async fn wait_turn(limiter: AdaptiveRate, id: OperationId) {
    // Never closed; dropping the deferral (the item cancelled) gives the turn up.
    let _turn = limiter.turn().acquire().await;
    limiter.after_readied().await;
    limiter.wait_for_start().await;
    *limiter.ready() = Some(id);
    // The turn passes on here; the next waiter waits for this item to be asked.
}

impl AdaptiveRate {
    /// The limiter as an [`Admission`] hook, for `EphemeralWorkCoordinator::with_admission`:
    /// the coordinator's starts follow the adaptive rate. An item that cannot start yet is
    /// deferred (holding no concurrency slot) behind the limiter's other waiters, in order;
    /// only the first of them waits on the clock, and it takes its start when it is asked
    /// again, so starts keep the rate and burst even when no worker was free at the time.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(RateAdmission {
            limiter: self.clone(),
        })
    }
}
