//! The adaptive limiter: GCRA at a rate that signals cut and time restores.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ephemeral::{HeaderValue, Listener, Pattern, Signal, SignalSink, command};
use tokio::time::Instant;

use ephemeral_atoms::rate_limit::{
    GcraLimiter, LimitReason, RateConfigError, RateLimited, RateLimiter, Tunable, Waiters,
};

/// The longest pause a throttle starts: 30 years, which stands for "until further notice".
/// Longer ones, up to `Duration::MAX`, pause this long.
const LONGEST_PAUSE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Settings of an [`AdaptiveRate`].
///
/// Defaults: 100 per second, burst 1, listening to every signal (`*`), decrease factor 0.5,
/// minimum 1 per second (or the base rate, if that is lower: a base rate under 1 per second
/// is valid on its own, and its throttles then pause without cutting the rate unless
/// [`decrease`](Self::decrease) gives a lower minimum), recovery ×1.5 every second.
#[derive(Debug, Clone)]
#[must_use]
pub struct AdaptiveRateOptions {
    rate: f64,
    burst: u32,
    pattern: String,
    decrease: f64,
    /// The minimum given with [`AdaptiveRateOptions::decrease`]; `None`: the default one.
    min_rate: Option<f64>,
    recover_factor: f64,
    recover_every: Duration,
}

impl Default for AdaptiveRateOptions {
    fn default() -> Self {
        Self {
            rate: 100.0,
            burst: 1,
            pattern: "*".to_owned(),
            decrease: 0.5,
            min_rate: None,
            recover_factor: 1.5,
            recover_every: Duration::from_secs(1),
        }
    }
}

impl AdaptiveRateOptions {
    /// The base rate, in starts per second, reached again after recovery.
    pub fn rate_per_second(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    /// How many starts may go at once (default 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Which signals are read for `rate-limit:<duration>` or a `retry-after` header (default
    /// `*`; narrow it, e.g. to `*rate-limit*,http.error.429`, the name the `http` pattern
    /// gives a 429, to spare the listener on busy sinks).
    /// A pattern that can match no name (`""`, `" , "`) is refused when the limiter is built
    /// ([`AdaptiveRateError::EmptyPattern`]).
    pub fn listen_on(mut self, pattern: &str) -> Self {
        self.pattern = pattern.to_owned();
        self
    }

    /// Each throttle signal multiplies the current rate by `factor` (in (0, 1]), never going
    /// below `min_rate` per second.
    pub fn decrease(mut self, factor: f64, min_rate: f64) -> Self {
        self.decrease = factor;
        self.min_rate = Some(min_rate);
        self
    }

    /// After a pause ends, the rate is multiplied by `factor` (> 1) every `every`, up to the
    /// base rate.
    pub fn recovery(mut self, factor: f64, every: Duration) -> Self {
        self.recover_factor = factor;
        self.recover_every = every;
        self
    }

    /// The floor no cut goes below: the minimum given with [`decrease`](Self::decrease),
    /// else 1 per second or the base rate, whichever is lower.
    fn floor(&self) -> f64 {
        self.min_rate.unwrap_or_else(|| 1.0_f64.min(self.rate))
    }

    fn validate(&self) -> Result<(), AdaptiveRateError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let min_rate = self.floor();
        if !positive(self.rate) || !positive(min_rate) || min_rate > self.rate {
            return Err(AdaptiveRateError::Rates {
                rate: self.rate,
                min_rate,
            });
        }
        // At least one start per 1000 days keeps every interval well inside tokio's clock;
        // at most 1e9 per second is what the GCRA resolves (one nanosecond apart).
        if min_rate < 1.0 / 86_400_000.0 || self.rate > 1e9 {
            return Err(AdaptiveRateError::Rates {
                rate: self.rate,
                min_rate,
            });
        }
        if self.burst == 0 {
            return Err(AdaptiveRateError::ZeroBurst);
        }
        // A listener that can hear nothing leaves the limiter deaf to every downstream:
        // almost surely a typo or an unset variable, so it is refused, not kept quiet.
        if Pattern::new(&self.pattern).is_empty() {
            return Err(AdaptiveRateError::EmptyPattern {
                pattern: self.pattern.clone(),
            });
        }
        if !(positive(self.decrease) && self.decrease <= 1.0) {
            return Err(AdaptiveRateError::Decrease(self.decrease));
        }
        if !(self.recover_factor.is_finite() && self.recover_factor > 1.0)
            || self.recover_every.is_zero()
        {
            return Err(AdaptiveRateError::Recovery {
                factor: self.recover_factor,
                every: self.recover_every,
            });
        }
        Ok(())
    }
}

/// Why an [`AdaptiveRate`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdaptiveRateError {
    /// The base or minimum rate is not a positive finite number, or the minimum exceeds the
    /// base.
    #[error(
        "rate {rate}/s with minimum {min_rate}/s: both must be finite, at least one per 1000 days, at most 1e9 per second, and min <= rate"
    )]
    Rates {
        /// The base rate.
        rate: f64,
        /// The minimum rate.
        min_rate: f64,
    },
    /// The burst was 0.
    #[error("a burst of 0 would never admit anything: use at least 1")]
    ZeroBurst,
    /// The decrease factor was outside (0, 1].
    #[error("decrease factor {0} is outside (0, 1]: use 0.5 to halve the rate on each signal")]
    Decrease(f64),
    /// The recovery factor was not above 1 or the interval was zero.
    #[error("recovery factor {factor} every {every:?}: use a factor > 1 and a non-zero interval")]
    Recovery {
        /// The recovery factor.
        factor: f64,
        /// The recovery interval.
        every: Duration,
    },
    /// The `listen_on` pattern can match no signal name (`""`, `" , "`, `"a b"`: see
    /// [`Pattern::is_empty`]), so no signal would ever slow the limiter.
    #[error(
        "listen_on pattern `{pattern}` matches no signal name, so no rate-limit signal would ever be heard: give a pattern such as `*rate-limit*,http.error.429` (or leave the default `*`)"
    )]
    EmptyPattern {
        /// The pattern given.
        pattern: String,
    },
    /// Built outside a tokio runtime.
    #[error("an adaptive rate limiter needs a tokio runtime: create it inside one")]
    NoRuntime,
}

/// A rate limiter that slows down on `rate-limit:<duration>` signals or `retry-after` headers
/// and recovers gradually.
///
/// Cheap to clone; clones share one limit.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let limiter = AdaptiveRate::new(&sink, AdaptiveRateOptions::default().rate_per_second(10.0))?;
/// limiter.acquire().await; // first start goes at once
///
/// sink.raise("api.rate-limit:2s")?; // the downstream asks for a 2 s pause
/// assert_eq!(limiter.paused_for(), Some(Duration::from_secs(2)));
/// assert_eq!(limiter.current_rate(), 5.0); // and the rate is halved
///
/// let start = tokio::time::Instant::now();
/// limiter.acquire().await;
/// assert!(start.elapsed() >= Duration::from_secs(2));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "the limiter stops listening for rate signals when its last handle is dropped"]
pub struct AdaptiveRate {
    inner: Arc<Inner>,
}

struct Inner {
    options: AdaptiveRateOptions,
    state: Mutex<State>,
    listener: Mutex<Option<Listener>>,
    /// Whoever waits for a start (an `acquire`, or an item the admission hook deferred)
    /// waits here first, in order, and only the first waits on the clock.
    waiters: Waiters,
}

struct State {
    gcra: GcraLimiter,
    /// The rate recovered to: the options' rate, or the last `Tunable::set_rate`.
    base: f64,
    current: f64,
    /// The end of the last pause (in the past once it is over).
    paused_until: Option<Instant>,
    /// Recovery steps are counted from here (the end of the last pause).
    recover_from: Instant,
    throttles: u64,
    bad_signals: u64,
    last_bad_signal: Option<String>,
}

impl AdaptiveRate {
    /// A limiter at the base rate, listening to `sink`.
    ///
    /// # Errors
    ///
    /// [`AdaptiveRateError`] for invalid options or outside a tokio runtime.
    pub fn new(sink: &SignalSink, options: AdaptiveRateOptions) -> Result<Self, AdaptiveRateError> {
        options.validate()?;
        tokio::runtime::Handle::try_current().map_err(|_| AdaptiveRateError::NoRuntime)?;
        let gcra = GcraLimiter::new(options.rate, options.burst).map_err(|_| {
            AdaptiveRateError::Rates {
                rate: options.rate,
                min_rate: options.floor(),
            }
        })?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                gcra,
                base: options.rate,
                current: options.rate,
                paused_until: None,
                recover_from: Instant::now(),
                throttles: 0,
                bad_signals: 0,
                last_bad_signal: None,
            }),
            listener: Mutex::new(None),
            waiters: Waiters::new(),
            options,
        });
        let weak = Arc::downgrade(&inner);
        let listener = sink.on_signal(&inner.options.pattern, move |signal| {
            if let Some(inner) = weak.upgrade() {
                inner.read(signal);
            }
        });
        *lock(&inner.listener) = Some(listener);
        Ok(Self { inner })
    }

    /// Waits until a start is allowed, then takes it. Dropping the future takes nothing, and
    /// gives up its place.
    ///
    /// Waiters are served in the order they began waiting (the admission hook's deferred
    /// items among them), and only the first waits on the clock: a thousand waiters cost one
    /// timer and one check per start, not a thousand. A pause a signal asks for while they
    /// wait holds them too. The same as [`RateLimiter::acquire`], callable without the trait
    /// in scope.
    pub async fn acquire(&self) {
        RateLimiter::acquire(self).await;
    }

    /// Takes a start now if allowed; otherwise says how long until one may be (the same
    /// answer as [`RateLimiter::try_acquire`], whose [`RateLimited`] carries this wait as
    /// `retry_after`).
    ///
    /// # Errors
    ///
    /// The time to wait, when no start is allowed now: what is left of a pause, or the time
    /// until the next start at the current rate — while the rate recovers, at most the
    /// time to the next recovery step, when the rate grows and the answer may be sooner
    /// (ask again then; [`acquire`](Self::acquire) does).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        RateLimiter::try_acquire(self).map_err(|limited| limited.retry_after)
    }

    /// A start now: taken if `take` (charged up to `waited` back, as
    /// [`RateLimiter::try_acquire_waited`], but never from within a pause), only looked at
    /// otherwise (for [`RateLimiter::check`]). Refused with what is left of a pause, or the
    /// time until the next start at the current rate.
    pub(super) fn start(&self, take: bool, waited: Duration) -> Result<(), RateLimited> {
        let now = Instant::now();
        let mut state = lock(&self.inner.state);
        let mut waited = waited;
        // Kept after it ends: no start is charged from within it.
        if let Some(until) = state.paused_until {
            if until > now {
                return Err(RateLimited {
                    retry_after: until - now,
                    reason: LimitReason::Rate,
                });
            }
            waited = waited.min(now - until);
        }
        self.inner.recover(&mut state, now);
        let answer = if take {
            state.gcra.try_acquire_waited(waited)
        } else {
            state.gcra.check()
        };
        // While the rate recovers, a start may come due sooner than the current rate says:
        // a waiter looks again at the next recovery step rather than sleeping past it.
        answer.map_err(|mut limited| {
            if state.current < state.base {
                let step = (state.recover_from + self.inner.options.recover_every)
                    .saturating_duration_since(now);
                if !step.is_zero() {
                    limited.retry_after = limited.retry_after.min(step);
                }
            }
            limited
        })
    }

    /// The queue of this limiter's waiters (for [`RateLimiter::waiters`]).
    pub(super) fn queue(&self) -> &Waiters {
        &self.inner.waiters
    }

    /// Slows down as a `rate-limit:<pause>` signal would: no start for `pause`, and the rate
    /// cut by the decrease factor. A pause longer than 30 years (up to `Duration::MAX`) pauses
    /// for 30 years; a pause already running longer is kept.
    pub fn throttle(&self, pause: Duration) {
        self.inner.throttle(pause);
    }

    /// The current rate in starts per second (after any recovery due by now).
    #[must_use]
    pub fn current_rate(&self) -> f64 {
        let mut state = lock(&self.inner.state);
        self.inner.recover(&mut state, Instant::now());
        state.current
    }

    /// The base rate, in starts per second: the options' rate, or the last one given to
    /// [`set_rate`](ephemeral_atoms::rate_limit::Tunable::set_rate).
    #[must_use]
    pub fn base_rate(&self) -> f64 {
        lock(&self.inner.state).base
    }

    /// Sets the base rate and the current rate (see the [`Tunable`] implementation).
    pub(super) fn set_base_rate(&self, per_second: f64) -> Result<(), RateConfigError> {
        // A usable rate below the minimum runs at the minimum, the floor no cut goes below
        // either; a rate that is not positive (or NaN) goes through to be refused.
        let rate = if per_second > 0.0 {
            per_second.max(self.inner.options.floor())
        } else {
            per_second
        };
        {
            let mut state = lock(&self.inner.state);
            state.gcra.set_rate(rate)?;
            state.base = rate;
            state.current = rate;
        }
        // A waiter asleep until the start the old rate promised looks again.
        self.inner.waiters.retuned();
        Ok(())
    }

    /// Runs `f` on the GCRA that paces the starts (for its burst).
    pub(super) fn with_gcra<R>(&self, f: impl FnOnce(&GcraLimiter) -> R) -> R {
        f(&lock(&self.inner.state).gcra)
    }

    /// Changes the burst of the GCRA that paces the starts; waiters look again.
    pub(super) fn set_gcra_burst(&self, burst: u32) -> Result<(), RateConfigError> {
        lock(&self.inner.state).gcra.set_burst(burst)?;
        self.inner.waiters.retuned();
        Ok(())
    }

    /// While paused by a signal, how long the pause still lasts.
    #[must_use]
    pub fn paused_for(&self) -> Option<Duration> {
        let now = Instant::now();
        lock(&self.inner.state)
            .paused_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// How many throttle signals (or calls) were applied.
    #[must_use]
    pub fn throttles(&self) -> u64 {
        lock(&self.inner.state).throttles
    }

    /// How many `rate-limit` signals or `retry-after` headers could not be read (a bad
    /// duration, or a bare `rate-limit` with none), and the last such signal's name with the
    /// reason. They are ignored, not guessed at.
    #[must_use]
    pub fn bad_signals(&self) -> (u64, Option<String>) {
        let state = lock(&self.inner.state);
        (state.bad_signals, state.last_bad_signal.clone())
    }
}

impl Inner {
    fn read(&self, signal: &Signal) {
        let name = signal.name().as_str();
        let pause = match command::payload(name, "rate-limit") {
            Some(payload) => Some(pause_of_text(payload).map_err(|reason| {
                command::CommandError {
                    command: "rate-limit".to_owned(),
                    payload: payload.to_owned(),
                    expected: "a duration such as `250ms` or `1m 30s`",
                    reason,
                }
                .to_string()
            })),
            // `rate-limit` with no duration asks for a pause without saying how long: not
            // guessed at, but counted, so it does not pass unnoticed.
            None if command::is_command(name, "rate-limit") => Some(Err(
                "`rate-limit` carries no duration: raise `rate-limit:<duration>`, such as `rate-limit:5s`"
                    .to_owned(),
            )),
            None => retry_after(signal),
        };
        match pause {
            Some(Ok(pause)) => self.throttle(pause),
            Some(Err(reason)) => {
                let mut state = lock(&self.state);
                state.bad_signals += 1;
                state.last_bad_signal = Some(format!("{name}: {reason}"));
            }
            None => {}
        }
    }

    fn throttle(&self, pause: Duration) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        self.recover(&mut state, now);
        state.throttles += 1;
        state.current = (state.current * self.options.decrease).max(self.options.floor());
        Self::apply(&state);
        // Capped, so that no pause overflows the clock (`Duration::MAX` would, and a pause
        // lost to the overflow let everything through) and a longer pause never ends sooner
        // than a shorter one. 30 years from now fits any clock, as tokio's own "far future".
        let until = now + pause.min(LONGEST_PAUSE);
        let until = state.paused_until.map_or(until, |old| old.max(until));
        state.paused_until = Some(until);
        state.recover_from = until;
    }

    fn recover(&self, state: &mut State, now: Instant) {
        if state.current >= state.base || now <= state.recover_from {
            return;
        }
        let every = self.options.recover_every;
        let steps = (now - state.recover_from).as_nanos() / every.as_nanos();
        if steps == 0 {
            return;
        }
        let steps = u32::try_from(steps).unwrap_or(u32::MAX);
        let grown = state.current * self.options.recover_factor.powi(steps.min(1_000) as i32);
        state.current = grown.min(state.base);
        state.recover_from += every.saturating_mul(steps);
        Self::apply(state);
    }

    /// Hands the current rate to the GCRA. The rate is validated at construction to lie
    /// within what the limiter accepts (between `min_rate` and `rate`), so this cannot fail;
    /// if it somehow did, the limiter keeps its previous rate, which is still within bounds.
    fn apply(state: &State) {
        let _ = state.gcra.set_rate(state.current);
    }
}

/// The pause a `retry-after` header asks for, if the signal has one.
fn retry_after(signal: &Signal) -> Option<Result<Duration, String>> {
    let value = signal
        .header("retry-after")
        .or_else(|| signal.header("Retry-After"))?;
    Some(match value {
        HeaderValue::Int(secs) => u64::try_from(*secs)
            .map(Duration::from_secs)
            .map_err(|_| format!("retry-after {secs} is negative")),
        HeaderValue::Float(secs) => pause_of_secs(*secs).map_err(|e| format!("retry-after {e}")),
        HeaderValue::Str(text) => {
            pause_of_text(text).map_err(|e| format!("retry-after `{text}`: {e}"))
        }
        other => Err(format!("retry-after {other} is not a duration")),
    })
}

/// A pause written as text: a number of seconds (`120`, `1.5`, `1e20`: how HTTP's
/// `Retry-After` carries it), else a duration string (`1m 30s`).
fn pause_of_text(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) => pause_of_secs(secs),
        Err(_) => command::parse_duration(text),
    }
}

/// A pause of `secs` seconds. A number too large for a `Duration` (`1e20`, `inf`) asks for
/// a longer pause than any, so it is read as `Duration::MAX` (which `throttle` caps at the
/// longest pause), not refused: refusing it would not pause at all, the opposite of what the
/// sender asked. A negative number or NaN says nothing readable and is refused.
fn pause_of_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_nan() {
        return Err(format!("{secs} is not a number of seconds"));
    }
    if secs < 0.0 {
        return Err(format!("{secs} seconds is negative"));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a panic hit mid-update; every update is a single consistent step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for AdaptiveRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("AdaptiveRate")
            .field("base_rate", &state.base)
            .field("current_rate", &state.current)
            .field("paused_until", &state.paused_until)
            .field("throttles", &state.throttles)
            .finish_non_exhaustive()
    }
}
