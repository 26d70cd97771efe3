//! The adaptive limiter as a coordinator's admission hook.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ephemeral::{Admission, AdmissionRequest, Decision, OperationId};
use futures::future::BoxFuture;

use super::AdaptiveRate;

/// At most this many starts are kept for deferred items that have not been asked about
/// again. An item is asked again as soon as its deferral ends, so the list holds a few ids;
/// only items cancelled in between leave theirs behind, and the oldest is forgotten first
/// (such an item, were it asked after all, would take a start again: slower, never faster).
const MAX_GRANTS: usize = 1024;

/// The [`Admission`] hook of an [`AdaptiveRate`]: admits when a start is allowed, otherwise
/// defers the item (holding no slot) behind the limiter's other waiters. The deferred item
/// waits for its turn, then for its start, and takes the start in its deferral: when it is
/// asked again, it is admitted on that start.
struct RateAdmission {
    limiter: AdaptiveRate,
    /// The ids of deferred items that took their start, not yet asked about again.
    grants: Arc<Mutex<VecDeque<OperationId>>>,
}

impl fmt::Debug for RateAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateAdmission")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl RateAdmission {
    fn grants(&self) -> std::sync::MutexGuard<'_, VecDeque<OperationId>> {
        // Each update is one push or one removal: consistent after any panic.
        self.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `id` took its start in its deferral (forgetting the grant).
    fn take_grant(&self, id: OperationId) -> bool {
        let mut grants = self.grants();
        let found = grants.iter().position(|granted| *granted == id);
        found.and_then(|at| grants.remove(at)).is_some()
    }
}

impl Admission for RateAdmission {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let id = request.id;
        let decision = if self.take_grant(id) {
            Decision::Admit
        } else if self.limiter.turn().available_permits() > 0 && self.limiter.try_acquire().is_ok()
        {
            // Nobody waits: a free start is taken at once.
            Decision::Admit
        } else {
            let (limiter, grants) = (self.limiter.clone(), self.grants.clone());
            Decision::defer(async move {
                let _turn = limiter.turn().acquire().await;
                limiter.wait_and_take().await;
                let mut grants = grants.lock().unwrap_or_else(PoisonError::into_inner);
                if grants.len() == MAX_GRANTS {
                    grants.pop_front();
                }
                grants.push_back(id);
                // The turn passes on here; the next waiter finds this start taken and
                // waits for the one after it.
            })
        };
        Box::pin(async move { decision })
    }
}

impl AdaptiveRate {
    /// The limiter as an [`Admission`] hook, for `EphemeralWorkCoordinator::with_admission`:
    /// the coordinator's starts follow the adaptive rate. An item that cannot start yet is
    /// deferred (holding no concurrency slot) behind the limiter's other waiters, in order;
    /// only the first of them waits on the clock.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(RateAdmission {
            limiter: self.clone(),
            grants: Arc::default(),
        })
    }
}
