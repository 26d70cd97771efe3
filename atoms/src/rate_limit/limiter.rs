//! The shared interface of the limiters, their error types and rate arithmetic.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::Waiters;

/// Why a permit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitReason {
    /// The rate is used up; a permit frees up after `retry_after`.
    Rate,
    /// A [`KeyedRateLimiter`](super::KeyedRateLimiter) already tracks its max number of busy
    /// keys; the earliest one goes idle after `retry_after`.
    KeysFull,
}

/// A refused permit: when to try again, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .reason {
    LimitReason::Rate => format!(
        "rate limited: the next permit is free in {}",
        readable(*.retry_after)
    ),
    LimitReason::KeysFull => format!(
        "rate limiter key table is full of busy keys: retry in {} or raise max_keys",
        readable(*.retry_after)
    ),
})]
pub struct RateLimited {
    /// How long until a permit can be granted (assuming nobody else takes it).
    pub retry_after: Duration,
    /// Why the permit was refused.
    pub reason: LimitReason,
}

/// A wait as people read it, rounded up to what a message needs (`retry_after` keeps it
/// exact): `0 ms`, `99 ms` (98.57 ms), `1.5 s`, `2 min 5 s`.
fn readable(wait: Duration) -> String {
    let ms = wait.as_nanos().div_ceil(1_000_000);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => {
            let secs = ms.div_ceil(1000);
            format!("{} min {} s", secs / 60, secs % 60)
        }
    }
}

/// A rate or burst that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RateConfigError {
    /// The rate is not a positive finite number of permits per second up to 1e9.
    #[error(
        "rate {0} per second is not usable: give a positive finite rate of at most 1e9 per second"
    )]
    BadRate(f64),
    /// The burst is 0.
    #[error("burst is 0: a limiter must allow at least one permit at a time")]
    ZeroBurst,
    /// A keyed limiter's max_keys is 0.
    #[error("max_keys is 0: a keyed limiter must be able to track at least one key")]
    ZeroMaxKeys,
}

/// Rate and burst, readable and changeable at run time; shared by every limiter, including
/// the keyed one, so that [`control()`](super::control()) can steer any of them.
pub trait Tunable: Send + Sync {
    /// Permits per second, as kept: limiters keep the time between two permits in whole
    /// nanoseconds, so a rate reads back as the one that interval gives (`set_rate(30.0)`
    /// reads back as 30.0000003, one permit every 33,333,333 ns), and relative changes
    /// (`rate.limit.increase:5`) apply to that. The interval is at most `u64::MAX` ns
    /// (about 584 years), so a positive rate below about 5.4e-11 per second is accepted
    /// and kept, and read back, as that slowest one.
    fn rate(&self) -> f64;
    /// Permits that may be granted at once after a quiet period.
    fn burst(&self) -> u32;
    /// Changes the rate from the next permit on. A backlog of permits already granted ahead
    /// of time is re-expressed at the new rate (rounded down to the nanosecond) and cut to
    /// what the burst allows, so raising the rate takes effect at once, for callers already
    /// waiting too: the waiter on the clock looks again now (see [`Waiters::retuned`]).
    /// [`GcraLimiter`](super::GcraLimiter) and [`TokenBucket`](super::TokenBucket) agree to
    /// the nanosecond.
    ///
    /// # Errors
    ///
    /// [`RateConfigError::BadRate`] for a rate that is not positive, finite and ≤ 1e9.
    fn set_rate(&self, per_second: f64) -> Result<(), RateConfigError>;
    /// Changes the burst from the next permit on. What was used of the old burst stays used
    /// (a backlog beyond the new one is forgiven): with burst 1 and its permit taken,
    /// `set_burst(5)` makes 4 more available at once (to callers already waiting too);
    /// lowering the burst by n takes n away.
    /// [`GcraLimiter`](super::GcraLimiter) and [`TokenBucket`](super::TokenBucket) agree.
    ///
    /// # Errors
    ///
    /// [`RateConfigError::ZeroBurst`] for 0.
    fn set_burst(&self, burst: u32) -> Result<(), RateConfigError>;
}

/// The interface of [`GcraLimiter`](super::GcraLimiter) and
/// [`TokenBucket`](super::TokenBucket): use either behind the same code.
///
/// Waiting uses tokio's clock, so tests run with the paused clock.
///
/// # Implementing it
///
/// Give [`try_acquire`](RateLimiter::try_acquire), [`check`](RateLimiter::check) (the same
/// answer, taking nothing) and [`waiters`](RateLimiter::waiters) (a [`Waiters`] kept with your
/// state); [`acquire`](RateLimiter::acquire), [`admit`](RateLimiter::admit) and
/// [`RateLimitAdmission`](super::RateLimitAdmission) build on them. Give
/// [`try_acquire_waited`](RateLimiter::try_acquire_waited) too, for rates past 1,000 per
/// second. A wrapper around another limiter forwards all four (see [`Waiters`] for an
/// example); a limiter with state of its own calls [`Waiters::retuned`] from
/// [`set_rate`](Tunable::set_rate) and [`set_burst`](Tunable::set_burst), so that callers
/// already waiting see the change.
pub trait RateLimiter: Tunable {
    /// Takes a permit now, or says when to retry.
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the time until a permit frees up.
    fn try_acquire(&self) -> Result<(), RateLimited>;

    /// Takes a permit now for a caller that has waited `waited` for one: the same answer as
    /// [`try_acquire`](RateLimiter::try_acquire), but a permit that came free during the wait
    /// is charged from the moment it came free (at most `waited` ago) rather than from now,
    /// so the permits that came free after it while the caller was late are still there.
    ///
    /// This keeps waiters at the rate past 1,000 per second. Tokio's timer wakes a sleeper on
    /// a whole millisecond (later on a busy runtime), so the waiter on the clock wakes after
    /// its permit came free; charged from then, the permits that came free meanwhile beyond
    /// the burst would be lost: at 2,000 per second and burst 1, 1,000 per second were
    /// delivered. [`acquire`](RateLimiter::acquire) and
    /// [`RateLimitAdmission`](super::RateLimitAdmission) pass how late the timer woke the
    /// last waiter on the clock (see [`Waiters`]), never more than the waiter waited.
    ///
    /// Pass no more than you waited for a refused permit: a longer claim takes permits from
    /// idle time, beyond the burst. `try_acquire_waited(Duration::ZERO)` is `try_acquire()`.
    ///
    /// The provided method ignores `waited` and calls
    /// [`try_acquire`](RateLimiter::try_acquire): a limiter of your own then keeps the rate
    /// only up to about 1,000 per second (or its burst per millisecond).
    /// [`GcraLimiter`](super::GcraLimiter) and [`TokenBucket`](super::TokenBucket) implement
    /// it, and a wrapper forwards it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral_atoms::rate_limit::{GcraLimiter, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // One permit every 0.5 ms, one at a time.
    /// let limiter = GcraLimiter::new(2_000.0, 1)?;
    /// limiter.try_acquire()?;
    /// // Free again at 0.5 ms; the caller comes back at 1 ms.
    /// tokio::time::advance(Duration::from_millis(1)).await;
    /// // Charged from 0.5 ms, when it came free: the permit of 1 ms is free too.
    /// limiter.try_acquire_waited(Duration::from_micros(500))?;
    /// limiter.try_acquire()?;
    /// assert!(limiter.try_acquire().is_err());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the time until a permit frees up.
    fn try_acquire_waited(&self, waited: Duration) -> Result<(), RateLimited> {
        let _ = waited;
        self.try_acquire()
    }

    /// Whether a permit is free now, without taking it: what
    /// [`try_acquire`](RateLimiter::try_acquire) would answer at this instant. For a caller
    /// that waits for a permit on behalf of someone who takes it later:
    /// [`RateLimitAdmission`](super::RateLimitAdmission) waits with it for a deferred item,
    /// which takes its permit when it is asked again on a worker.
    ///
    /// [`GcraLimiter`](super::GcraLimiter) looks at a copy of its timestamp;
    /// [`TokenBucket`](super::TokenBucket) refills (as time passing does) and compares its
    /// tokens with one permit. Your own limiter must take nothing here: a `check` that took a
    /// permit would spend two per deferred item.
    ///
    /// ```
    /// use ephemeral_atoms::rate_limit::{RateLimiter, TokenBucket};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bucket = TokenBucket::new(10.0, 1)?;
    /// assert!(bucket.check().is_ok());
    /// assert!(bucket.check().is_ok()); // nothing taken
    /// bucket.try_acquire()?;
    /// assert_eq!(bucket.check().unwrap_err().retry_after.as_millis(), 100);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RateLimited`] with the time until a permit frees up.
    fn check(&self) -> Result<(), RateLimited>;

    /// The queue of this limiter's waiters, shared by [`acquire`](RateLimiter::acquire) and
    /// [`RateLimitAdmission`](super::RateLimitAdmission): the same one on every call (clones
    /// of a limiter share it).
    fn waiters(&self) -> &Waiters;

    /// Waits until a permit is granted and takes it.
    ///
    /// Cancel-safe: dropping the future takes nothing, and gives up its place.
    ///
    /// Waiters are served in the order they began waiting, together with the items a
    /// [`RateLimitAdmission`](super::RateLimitAdmission) on the same limiter deferred: each
    /// waits for its turn, and only the one holding it waits on the clock, so a thousand
    /// waiters cost one timer and one or two checks per permit, not a thousand. Calls to
    /// [`try_acquire`](RateLimiter::try_acquire) do not queue: they take a free permit at
    /// once, even while others wait for it.
    ///
    /// Waiters keep the rate past 1,000 per second: when the timer wakes the waiter on the
    /// clock late (on a whole millisecond), it and the waiters after it take the permits
    /// that came free meanwhile in the same wake (see
    /// [`try_acquire_waited`](RateLimiter::try_acquire_waited)), so at 2,000 per second and
    /// burst 1 they are granted two at a time, every millisecond.
    fn acquire(&self) -> impl Future<Output = ()> + Send + '_
    where
        Self: Sized,
    {
        async move {
            let waiters = self.waiters();
            let _turn = waiters.turn().await;
            waiters.after_readied(self).await;
            waiters.take(self).await;
        }
    }

    /// The coordinator admission shape: resolves when the item may start, having taken a
    /// permit. The same as [`acquire`](RateLimiter::acquire); for a coordinator, prefer
    /// [`RateLimitAdmission`](super::RateLimitAdmission), which defers a waiting item
    /// (holding no slot) rather than wait inside the hook.
    fn admit(&self) -> impl Future<Output = ()> + Send + '_
    where
        Self: Sized,
    {
        self.acquire()
    }
}

/// Validated rate parameters in whole nanoseconds, so grant times are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Nanoseconds between permits at the steady rate (at least 1).
    pub(crate) emission_ns: u64,
    pub(crate) burst: u32,
}

impl Params {
    pub(crate) fn new(per_second: f64, burst: u32) -> Result<Self, RateConfigError> {
        Ok(Self {
            emission_ns: emission_ns(per_second)?,
            burst: check_burst(burst)?,
        })
    }

    pub(crate) fn rate(self) -> f64 {
        1e9 / self.emission_ns as f64
    }

    /// How far ahead of now the theoretical arrival time may run: `(burst - 1)` emissions.
    pub(crate) fn tolerance_ns(self) -> u128 {
        u128::from(self.emission_ns) * u128::from(self.burst - 1)
    }

    /// A whole burst in nanoseconds of refill time: `burst` emissions.
    pub(crate) fn capacity_ns(self) -> u128 {
        u128::from(self.emission_ns) * u128::from(self.burst)
    }
}

/// A backlog of `used_ns` (permits used ahead of the steady rate, in nanoseconds of refill
/// time at `old`'s rate) re-expressed at `new`'s rate, rounded down to the nanosecond, and
/// cut to what `new`'s burst can hold.
///
/// Every limiter rescales through this one function (GCRA's permits granted ahead, the
/// bucket's used tokens), so they agree to the nanosecond after a change.
pub(crate) fn rescale_backlog(used_ns: u128, old: Params, new: Params) -> u128 {
    let (old_ns, new_ns) = (u128::from(old.emission_ns), u128::from(new.emission_ns));
    // ⌊used × new / old⌋ in two parts, as u128 cannot hold used × new for a long backlog at a
    // slow rate: whole emissions times `new` (a backlog within a burst has below 2^32 of them,
    // so below 2^96; saturating all the same), plus the remainder, below `old` < 2^64, times
    // `new` < 2^64, which fits.
    let whole = (used_ns / old_ns).saturating_mul(new_ns);
    let part = (used_ns % old_ns) * new_ns / old_ns;
    whole.saturating_add(part).min(new.capacity_ns())
}

pub(crate) fn emission_ns(per_second: f64) -> Result<u64, RateConfigError> {
    if !(per_second.is_finite() && per_second > 0.0 && per_second <= 1e9) {
        return Err(RateConfigError::BadRate(per_second));
    }
    // A rate ≤ 1e9 gives at least 1 ns; a tiny positive rate saturates at u64::MAX ns
    // (about 584 years between permits) instead of overflowing.
    let ns = (1e9 / per_second).round();
    Ok(if ns >= u64::MAX as f64 {
        u64::MAX
    } else {
        (ns as u64).max(1)
    })
}

pub(crate) fn check_burst(burst: u32) -> Result<u32, RateConfigError> {
    if burst == 0 {
        Err(RateConfigError::ZeroBurst)
    } else {
        Ok(burst)
    }
}

pub(crate) fn nanos(ns: u128) -> Duration {
    let secs = u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 1e9, so it fits in u32.
    Duration::new(secs, (ns % 1_000_000_000) as u32)
}

pub(crate) fn limited(ns: u128) -> RateLimited {
    RateLimited {
        retry_after: nanos(ns),
        reason: LimitReason::Rate,
    }
}

impl fmt::Display for LimitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rate => "rate",
            Self::KeysFull => "keys full",
        })
    }
}
