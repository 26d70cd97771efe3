//! The adaptive limiter as one of `ephemeral-atoms`' rate limiters.

use ephemeral_atoms::rate_limit::{GcraLimiter, RateConfigError, Tunable};

use super::AdaptiveRate;

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
        self.with_gcra(|gcra| gcra.set_burst(burst))
    }
}
