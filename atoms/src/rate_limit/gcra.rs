//! GCRA: the generic cell rate algorithm, one timestamp of state.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Waiters;
use super::limiter::{
    Params, RateConfigError, RateLimited, RateLimiter, Tunable, limited, rescale_backlog,
};

/// The GCRA state of one stream: its theoretical arrival time, in nanoseconds after `origin`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    pub(crate) tat_ns: u128,
}

impl Cell {
    /// Grants a permit at `now_ns` or says how long until one is free.
    pub(crate) fn try_take(&mut self, now_ns: u128, params: Params) -> Result<(), RateLimited> {
        self.try_take_since(now_ns, now_ns, params)
    }

    /// Grants a permit at `now_ns` (or says how long until one is free) for a caller waiting
    /// since `from_ns`: charged from the moment it came free, or from `from_ns` if it was
    /// free before (the time the stream was idle before that is lost, as for a caller asking
    /// at `from_ns`).
    pub(crate) fn try_take_since(
        &mut self,
        now_ns: u128,
        from_ns: u128,
        params: Params,
    ) -> Result<(), RateLimited> {
        let ahead = self.tat_ns.max(now_ns) - now_ns;
        let tolerance = params.tolerance_ns();
        if ahead > tolerance {
            return Err(limited(ahead - tolerance));
        }
        // Charged at the later of `tat - tolerance` (when it came free) and `from`: either
        // way the next one is due an emission after `max(tat, from)`. With `from = now` this
        // is the plain GCRA step.
        self.tat_ns = self.tat_ns.max(from_ns) + u128::from(params.emission_ns);
        Ok(())
    }

    /// Re-expresses the permits already granted ahead of `now` in the new rate, and forgives
    /// any backlog the new burst could never have built up, so a change applies to the next
    /// permit: after `set:50` with burst 1, the next permit is at most 20 ms away.
    pub(crate) fn rescale(&mut self, now_ns: u128, old: Params, new: Params) {
        if self.tat_ns <= now_ns {
            return;
        }
        self.tat_ns = now_ns + rescale_backlog(self.tat_ns - now_ns, old, new);
    }

    /// Whether this stream is back to a full burst, so forgetting it changes nothing.
    pub(crate) fn is_idle(self, now_ns: u128) -> bool {
        self.tat_ns <= now_ns
    }
}

/// Nanoseconds since `origin` on tokio's clock.
pub(crate) fn since(origin: Instant) -> u128 {
    Instant::now().saturating_duration_since(origin).as_nanos()
}

/// A GCRA rate limiter: `rate` permits per second with bursts of up to `burst`.
///
/// The state is one timestamp (the theoretical arrival time), so the limiter is small and
/// exact: with 10 per second and burst 5, five permits are granted at once, then one every
/// 100 ms, and a refused [`try_acquire`](RateLimiter::try_acquire) says exactly how long to
/// wait. Grant times are computed in whole nanoseconds on tokio's clock. Clones share the
/// limiter.
///
/// # Comparison with [`TokenBucket`](super::TokenBucket)
///
/// Both grant the same permits at the same times, to the nanosecond, also after
/// [`set_rate`](Tunable::set_rate) and [`set_burst`](Tunable::set_burst) (both rescale with
/// the same integer arithmetic); GCRA keeps a timestamp, the bucket keeps a token count it
/// can report ([`TokenBucket::available`](super::TokenBucket::available)).
/// Prefer GCRA unless you want that number.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::rate_limit::{GcraLimiter, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = GcraLimiter::new(10.0, 5)?;
/// for _ in 0..5 {
///     limiter.try_acquire()?; // the burst
/// }
/// let refused = limiter.try_acquire().unwrap_err();
/// assert_eq!(refused.retry_after, Duration::from_millis(100));
///
/// let start = tokio::time::Instant::now();
/// limiter.acquire().await;
/// assert_eq!(start.elapsed(), Duration::from_millis(100));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct GcraLimiter {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    waiters: Waiters,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    cell: Cell,
    params: Params,
}

impl GcraLimiter {
    /// `rate` permits per second, bursts of up to `burst`.
    ///
    /// # Errors
    ///
    /// [`RateConfigError`] for a rate that is not positive, finite and ≤ 1e9, or a burst of 0.
    pub fn new(rate: f64, burst: u32) -> Result<Self, RateConfigError> {
        let params = Params::new(rate, burst)?;
        Ok(Self {
            inner: Arc::new(Shared {
                state: Mutex::new(State {
                    origin: Instant::now(),
                    cell: Cell { tat_ns: 0 },
                    params,
                }),
                waiters: Waiters::new(),
            }),
        })
    }

    /// Whether a permit is free now, without taking it: `Ok(())`, or [`RateLimited`] with the
    /// time until one is. For a caller that must wait for a permit on behalf of someone who
    /// will take it later (an admission hook that defers an item until it may start, and lets
    /// the item take its permit when it is asked again). The same as
    /// [`RateLimiter::check`], callable without the trait in scope.
    ///
    /// ```
    /// use ephemeral_atoms::rate_limit::{GcraLimiter, RateLimiter as _};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = GcraLimiter::new(10.0, 1)?;
    /// assert!(limiter.check().is_ok());
    /// assert!(limiter.check().is_ok()); // nothing taken
    /// limiter.try_acquire()?;
    /// assert_eq!(limiter.check().unwrap_err().retry_after.as_millis(), 100);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the time until a permit frees up.
    pub fn check(&self) -> Result<(), RateLimited> {
        let state = self.state();
        let now = since(state.origin);
        // A copy: the permit is looked at, not taken.
        let mut cell = state.cell;
        cell.try_take(now, state.params)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update writes whole values; a panic elsewhere cannot tear them.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn retune(&self, change: impl FnOnce(&mut Params)) {
        {
            let mut state = self.state();
            let now = since(state.origin);
            let old = state.params;
            change(&mut state.params);
            let new = state.params;
            state.cell.rescale(now, old, new);
        }
        // A waiter asleep until the permit the old settings promised looks again.
        self.inner.waiters.retuned();
    }
}

impl Tunable for GcraLimiter {
    fn rate(&self) -> f64 {
        self.state().params.rate()
    }

    fn burst(&self) -> u32 {
        self.state().params.burst
    }

    fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
        let emission_ns = super::limiter::emission_ns(per_second)?;
        self.retune(|p| p.emission_ns = emission_ns);
        Ok(())
    }

    fn set_burst(&self, burst: u32) -> Result<(), RateConfigError> {
        let burst = super::limiter::check_burst(burst)?;
        self.retune(|p| p.burst = burst);
        Ok(())
    }
}

impl RateLimiter for GcraLimiter {
    fn try_acquire(&self) -> Result<(), RateLimited> {
        let mut state = self.state();
        let now = since(state.origin);
        let params = state.params;
        state.cell.try_take(now, params)
    }

    fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
        let mut state = self.state();
        let now = since(state.origin);
        let params = state.params;
        let from = now.saturating_sub(waited.as_nanos());
        state.cell.try_take_since(now, from, params)
    }

    fn check(&self) -> Result<(), RateLimited> {
        GcraLimiter::check(self)
    }

    fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }
}

impl fmt::Debug for GcraLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("GcraLimiter")
            .field("rate", &state.params.rate())
            .field("burst", &state.params.burst)
            .finish()
    }
}
