//! Rate limits as coordinator admission hooks.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;

use super::RateLimiter;

/// A [`RateLimiter`] as a coordinator [`Admission`] hook: an item starts when a permit is
/// free; otherwise it is deferred, holding no concurrency slot, for exactly the limiter's
/// `retry_after`, then checked again.
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
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let decision = match self.limiter.try_acquire() {
            Ok(()) => Decision::Admit,
            Err(limited) => Decision::defer(tokio::time::sleep(limited.retry_after)),
        };
        Box::pin(std::future::ready(decision))
    }
}
