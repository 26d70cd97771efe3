//! Backoff schedules: an iterator of delays, with jitter and a cap.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// How a delay is randomised so that many clients retrying together spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: the schedule's delays exactly.
    None,
    /// Uniform in `[0, d]` ("full jitter", the AWS recommendation for contended resources).
    Full,
    /// Uniform in `[d/2, d]` ("equal jitter": never less than half the delay).
    Equal,
    /// Uniform in `[d·(1-f), d·(1+f)]` for a fraction `f` in `[0, 1]` (clamped), capped by the
    /// max delay.
    Proportional(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Constant,
    Exponential { factor: f64 },
    Fibonacci,
}

/// A backoff schedule: the delays between attempts, as an iterator of [`Duration`]s.
///
/// Three shapes (with `base` = the first delay):
///
/// | shape | delays |
/// |---|---|
/// | [`constant(d)`](Backoff::constant) | `d, d, d, …` |
/// | [`exponential(d)`](Backoff::exponential) | `d, 2d, 4d, 8d, …` ([`factor`](Backoff::factor) changes 2) |
/// | [`fibonacci(d)`](Backoff::fibonacci) | `d, d, 2d, 3d, 5d, 8d, …` |
///
/// Every delay is capped by [`max_delay`](Backoff::max_delay) (default 30 s), jitter included,
/// and the arithmetic saturates instead of overflowing; a zero `base` gives zero delays
/// throughout. The iterator never ends: the number of attempts is the
/// [`Retry`](super::Retry) policy's business.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::retry::{Backoff, Jitter};
///
/// let ms = Duration::from_millis;
/// let delays: Vec<_> = Backoff::exponential(ms(100)).max_delay(ms(500)).iter().take(5).collect();
/// assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
///
/// let fib: Vec<_> = Backoff::fibonacci(ms(10)).iter().take(6).collect();
/// assert_eq!(fib, [ms(10), ms(10), ms(20), ms(30), ms(50), ms(80)]);
///
/// for d in Backoff::constant(ms(100)).jitter(Jitter::Equal).iter().take(100) {
///     assert!(d >= ms(50) && d <= ms(100));
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Backoff {
    kind: Kind,
    base: Duration,
    max_delay: Duration,
    jitter: Jitter,
    seed: Option<u64>,
}

impl Backoff {
    /// The same delay every time.
    pub fn constant(delay: Duration) -> Self {
        Self::with_kind(Kind::Constant, delay)
    }

    /// Delays that double each time, starting at `base`.
    pub fn exponential(base: Duration) -> Self {
        Self::with_kind(Kind::Exponential { factor: 2.0 }, base)
    }

    /// Delays that follow the Fibonacci sequence scaled by `base` (gentler than doubling).
    pub fn fibonacci(base: Duration) -> Self {
        Self::with_kind(Kind::Fibonacci, base)
    }

    fn with_kind(kind: Kind, base: Duration) -> Self {
        Self {
            kind,
            base,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::None,
            seed: None,
        }
    }

    /// The growth factor of an exponential schedule (default 2; values below 1, NaN and
    /// infinities are treated as 1). No effect on the other shapes.
    pub fn factor(mut self, factor: f64) -> Self {
        if let Kind::Exponential { factor: f } = &mut self.kind {
            *f = if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            };
        }
        self
    }

    /// The largest delay ever produced, jitter included (default 30 s).
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Randomises each delay (default [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random numbers, for reproducible schedules in tests. Without a
    /// seed, every iterator draws a fresh random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The delays, starting with the one before the first retry.
    pub fn iter(&self) -> BackoffIter {
        let seed = self
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(0x5eed_u64));
        BackoffIter {
            backoff: self.clone(),
            step: 0,
            prev: 0.0,
            current: 0.0,
            rng: XorShift::new(seed),
        }
    }
}

impl IntoIterator for &Backoff {
    type Item = Duration;
    type IntoIter = BackoffIter;

    fn into_iter(self) -> BackoffIter {
        self.iter()
    }
}

/// The iterator of a [`Backoff`]: endless, every item at most the max delay.
#[derive(Debug, Clone)]
pub struct BackoffIter {
    backoff: Backoff,
    step: u32,
    // Fibonacci and exponential state in units of `base`, as f64 so that it saturates at
    // infinity rather than overflowing; the cap is applied when converting to a Duration.
    prev: f64,
    current: f64,
    rng: XorShift,
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let units = match self.backoff.kind {
            Kind::Constant => 1.0,
            Kind::Exponential { factor } => {
                self.current = if self.step == 0 {
                    1.0
                } else {
                    self.current * factor
                };
                self.current
            }
            Kind::Fibonacci => {
                let next = if self.step == 0 {
                    1.0
                } else {
                    self.prev + self.current
                };
                self.prev = self.current;
                self.current = next;
                next
            }
        };
        self.step = self.step.saturating_add(1);
        let max = self.backoff.max_delay.as_secs_f64();
        // Once the units saturate at infinity, a zero base gives 0 × ∞ = NaN, which `min`
        // would turn into the max delay: a zero base stays zero however far the schedule has
        // grown.
        let planned = if self.backoff.base.is_zero() {
            0.0
        } else {
            (self.backoff.base.as_secs_f64() * units).min(max)
        };
        let r = self.rng.unit();
        let jittered = match self.backoff.jitter {
            Jitter::None => planned,
            Jitter::Full => planned * r,
            Jitter::Equal => planned / 2.0 + planned / 2.0 * r,
            Jitter::Proportional(f) => {
                let f = if f.is_finite() {
                    f.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                planned * (1.0 - f + 2.0 * f * r)
            }
        };
        let delay =
            Duration::try_from_secs_f64(jittered.clamp(0.0, max)).unwrap_or(self.backoff.max_delay);
        Some(delay.min(self.backoff.max_delay))
    }
}

/// xorshift64*: small, fast, good enough for jitter (not for anything secret).
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // A zero state would stay zero forever.
        Self(seed | 1)
    }

    /// A number in `[0, 1]`.
    fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let out = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (out >> 11) as f64 / ((1u64 << 53) - 1) as f64
    }
}
