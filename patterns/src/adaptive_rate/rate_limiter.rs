//! The adaptive limiter as one of `ephemeral-atoms`' rate limiters, and so as a coordinator's
//! admission hook.

use std::sync::Arc;
use std::time::Duration;

use ephemeral::Admission;
use ephemeral_atoms::rate_limit::{
    GcraLimiter, RateConfigError, RateLimitAdmission, RateLimited, RateLimiter, Tunable, Waiters,
};

use super::AdaptiveRate;

impl AdaptiveRate {
    /// The limiter as an [`Admission`] hook, for `EphemeralWorkCoordinator::with_admission`:
    /// the coordinator's starts follow the adaptive rate. An item that cannot start yet is
    /// deferred (holding no concurrency slot) behind the limiter's other waiters, in order;
    /// only the first of them waits on the clock, and it takes its start when it is asked
    /// again, so starts keep the rate and burst even when no worker was free at the time.
    ///
    /// This is atoms' [`RateLimitAdmission`] over the limiter, which describes how waiting
    /// items are served (each is asked about at most twice while the workers keep up; one
    /// readied but never asked again holds the next up for one interval at the current rate,
    /// at least 100 ms). A pause a signal asks for holds the waiting items too.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(RateLimitAdmission::new(Arc::new(self.clone())))
    }
}

/// Starts as atoms' permits: a start is refused while a signal's pause lasts (with what is
/// left of it as `retry_after`) and otherwise paced by the GCRA at the current rate; the
/// waiters queue in one [`Waiters`] shared by the clones. So [`acquire`](RateLimiter::acquire),
/// [`RateLimitAdmission`] and any code written for a [`RateLimiter`] work on it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::SignalSink;
/// use ephemeral_atoms::rate_limit::RateLimiter;
/// use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
///
/// /// Code written for any of atoms' limiters.
/// fn free_now(limiter: &impl RateLimiter) -> bool {
///     limiter.check().is_ok()
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let limiter = AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(10.0))?;
/// assert!(free_now(&limiter));
///
/// sink.raise("api.rate-limit:2s")?;
/// let refused = RateLimiter::check(&limiter).unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_secs(2));
/// # Ok(())
/// # }
/// ```
impl RateLimiter for AdaptiveRate {
    fn try_acquire(&self) -> Result<(), RateLimited> {
        self.start(true, Duration::ZERO)
    }

    /// Charged from when the start came free (at most `waited` ago, and never from within a
    /// pause), so waiters keep rates past 1,000 per second as the GCRA's do.
    fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
        self.start(true, waited)
    }

    fn check(&self) -> Result<(), RateLimited> {
        self.start(false, Duration::ZERO)
    }

    fn waiters(&self) -> &Waiters {
        self.queue()
    }
}

/// Rate and burst as [`control()`](ephemeral_atoms::rate_limit::control()) steers them:
/// `rate.limit.set:<n>` moves the rate the limiter runs at and recovers to.
///
/// # Examples
///
/// ```
/// use ephemeral::SignalSink;
/// use ephemeral_atoms::rate_limit::{Tunable, control};
/// use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let limiter = AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(100.0))?;
/// let _control = control(&sink, "rate.limit", limiter.clone())?;
///
/// sink.raise("api.rate-limit:1s")?; // the downstream: halved, to 50
/// sink.raise("rate.limit.set:20")?; // the operator: 20 from now on
/// assert_eq!((limiter.rate(), limiter.base_rate()), (20.0, 20.0));
///
/// sink.raise("api.rate-limit:1s")?; // cut from 20, recovering to 20
/// assert_eq!(limiter.rate(), 10.0);
/// # Ok(())
/// # }
/// ```
impl Tunable for AdaptiveRate {
    /// The current rate, as [`current_rate`](AdaptiveRate::current_rate): what signals cut
    /// and recovery grows back, so `rate.limit.increase:<n>` adds to the rate in force.
    fn rate(&self) -> f64 {
        self.current_rate()
    }

    /// How many starts may go at once: the options' burst, or the last one set.
    fn burst(&self) -> u32 {
        self.with_gcra(GcraLimiter::burst)
    }

    /// Sets the [base rate](AdaptiveRate::base_rate) and the current rate to `per_second`,
    /// from the next start on: the operator's word ends a rate cut (not a pause in force),
    /// later signals cut from it, and recovery grows back to it. A rate below the options'
    /// minimum runs at the minimum, which no cut goes below either.
    ///
    /// # Errors
    ///
    /// [`RateConfigError::BadRate`] for a rate that is not positive, finite and ≤ 1e9.
    fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
        self.set_base_rate(per_second)
    }

    /// Changes how many starts may go at once, from the next start on (as
    /// [`GcraLimiter`] does).
    ///
    /// # Errors
    ///
    /// [`RateConfigError::ZeroBurst`] for 0.
    fn set_burst(&self, burst: u32) -> Result<(), RateConfigError> {
        self.set_gcra_burst(burst)
    }
}
