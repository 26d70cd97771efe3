//! The token bucket: the same interface as GCRA, with a token count you can read.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Waiters;
use super::gcra::since;
use super::limiter::{
    Params, RateConfigError, RateLimited, RateLimiter, Tunable, limited, rescale_backlog,
};

/// A token bucket: holds up to `burst` tokens, refilled at `rate` per second; a permit
/// takes one.
///
/// Tokens are counted in nanoseconds of refill time, so grants are exact (no floating-point
/// drift): with 10 per second and burst 5, a full bucket grants five permits at once, then one
/// every 100 ms — the same as [`GcraLimiter`](super::GcraLimiter). Clones share the bucket.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::rate_limit::{RateLimiter, TokenBucket};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bucket = TokenBucket::new(10.0, 5)?;
/// assert_eq!(bucket.available(), 5.0);
/// bucket.try_acquire()?;
/// assert_eq!(bucket.available(), 4.0);
/// tokio::time::advance(Duration::from_millis(50)).await;
/// assert_eq!(bucket.available(), 4.5);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenBucket {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    waiters: Waiters,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    /// Refill time stored, in nanoseconds: `emission_ns` of credit is one token. It is not
    /// cut to the capacity as it refills: what lies beyond is how long the bucket has been
    /// full (it reads as full, see [`State::credit`]), so that a waiter the timer woke late
    /// can be charged from when its token came ([`RateLimiter::try_acquire_waited`]).
    credit_ns: u128,
    refilled_ns: u128,
    params: Params,
}

impl State {
    fn capacity_ns(&self) -> u128 {
        self.params.capacity_ns()
    }

    fn refill(&mut self) {
        let now = since(self.origin);
        let elapsed = now.saturating_sub(self.refilled_ns);
        self.refilled_ns = now;
        // Nanoseconds since the bucket was created: u128 cannot overflow.
        self.credit_ns += elapsed;
    }

    /// The credit the bucket holds: at most its capacity.
    fn credit(&self) -> u128 {
        self.credit_ns.min(self.capacity_ns())
    }

    /// Takes a token (after a refill) for a caller that has waited `waited_ns`: from the
    /// credit as it was `waited_ns` ago if the bucket was full then, so the tokens that came
    /// since are kept (GCRA's `try_take_since`, to the nanosecond).
    fn try_take(&mut self, waited_ns: u128) -> Result<(), RateLimited> {
        let cost = u128::from(self.params.emission_ns);
        let credit = self.credit();
        if credit < cost {
            return Err(limited(cost - credit));
        }
        // Full `waited_ns` ago at the latest: charged then, refilled since.
        let kept = self
            .credit_ns
            .min(self.capacity_ns().saturating_add(waited_ns));
        self.credit_ns = kept - cost;
        Ok(())
    }
}

impl TokenBucket {
    /// A full bucket of `burst` tokens, refilled at `rate` per second.
    ///
    /// # Errors
    ///
    /// [`RateConfigError`] for a rate that is not positive, finite and ≤ 1e9, or a burst of 0.
    pub fn new(rate: f64, burst: u32) -> Result<Self, RateConfigError> {
        let params = Params::new(rate, burst)?;
        let mut state = State {
            origin: Instant::now(),
            credit_ns: 0,
            refilled_ns: 0,
            params,
        };
        state.credit_ns = state.capacity_ns();
        Ok(Self {
            inner: Arc::new(Shared {
                state: Mutex::new(state),
                waiters: Waiters::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update writes whole values; a panic elsewhere cannot tear them.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn retune(&self, change: impl FnOnce(&mut Params)) {
        self.rescale(change);
        // A waiter asleep until the token the old settings promised looks again.
        self.inner.waiters.retuned();
    }

    fn rescale(&self, change: impl FnOnce(&mut Params)) {
        let mut state = self.state();
        state.refill();
        // What is used of the burst (capacity minus credit) is GCRA's backlog of permits
        // granted ahead: rescaling it, not the credit, with GCRA's arithmetic keeps the two
        // limiters in step to the nanosecond. A burst change keeps it as it is, cut to the new
        // capacity.
        let old = state.params;
        let (capacity, credit) = (state.capacity_ns(), state.credit_ns);
        change(&mut state.params);
        state.credit_ns = if credit >= capacity {
            // Full: how long it has been full stays, as GCRA keeps a past timestamp.
            state.capacity_ns() + (credit - capacity)
        } else {
            state.capacity_ns() - rescale_backlog(capacity - credit, old, state.params)
        };
    }

    /// Tokens in the bucket now (fractional while refilling).
    #[must_use]
    pub fn available(&self) -> f64 {
        let mut state = self.state();
        state.refill();
        state.credit() as f64 / state.params.emission_ns as f64
    }
}

impl Tunable for TokenBucket {
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

impl RateLimiter for TokenBucket {
    fn try_acquire(&self) -> Result<(), RateLimited> {
        let mut state = self.state();
        state.refill();
        state.try_take(0)
    }

    fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
        let mut state = self.state();
        state.refill();
        state.try_take(waited.as_nanos())
    }

    fn check(&self) -> Result<(), RateLimited> {
        let mut state = self.state();
        // Refilling changes no answer (time passing does the same); the token stays.
        state.refill();
        let cost = u128::from(state.params.emission_ns);
        let credit = state.credit();
        if credit >= cost {
            Ok(())
        } else {
            Err(limited(cost - credit))
        }
    }

    fn waiters(&self) -> &Waiters {
        &self.inner.waiters
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("TokenBucket")
            .field("rate", &state.params.rate())
            .field("burst", &state.params.burst)
            .field("credit_ns", &state.credit())
            .finish()
    }
}
