//! The adaptive limiter as a coordinator's admission hook.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;

use super::AdaptiveRate;

/// The [`Admission`] hook of an [`AdaptiveRate`]: admits when a start is allowed, otherwise
/// defers the item (holding no slot) until one is, then it is checked again.
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
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let decision = match self.limiter.try_acquire() {
            Ok(()) => Decision::Admit,
            Err(wait) => Decision::defer(tokio::time::sleep(wait)),
        };
        Box::pin(async move { decision })
    }
}

impl AdaptiveRate {
    /// The limiter as an [`Admission`] hook, for `EphemeralWorkCoordinator::with_admission`:
    /// the coordinator's starts follow the adaptive rate.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(RateAdmission {
            limiter: self.clone(),
        })
    }
}
