//! Options of a [`CircuitBreaker`](super::CircuitBreaker) and their validation.

use std::time::Duration;

use ephemeral::{NameError, Pattern};

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trip {
    /// Open after `failures` failures seen within the sliding `window`.
    Within {
        /// How many failures open the breaker (at least 1).
        failures: usize,
        /// How far back failures count (non-zero).
        window: Duration,
    },
    /// Open after this many failures in a row, with no success in between (at least 1).
    Consecutive(usize),
}

/// The cap on a growing open period when [`CircuitBreakerOptions::backoff`] is not called
/// (5 minutes), or `open_for` if that is longer: an `open_for` past it alone is valid.
pub const DEFAULT_MAX_OPEN: Duration = Duration::from_secs(300);

/// How a [`CircuitBreaker`](super::CircuitBreaker) trips, how long it stays open and how it
/// probes its way back.
///
/// The defaults: failures are signals matching `failure`; five within 30 s open the breaker
/// for 30 s (no growth; were a growth factor given without a cap, the cap would be
/// [`DEFAULT_MAX_OPEN`] or `open_for`, whichever is longer); one probe in half-open, one
/// success closes it; signals are named `circuit.open`, `circuit.half_open`,
/// `circuit.closed`.
#[derive(Debug, Clone)]
#[must_use]
pub struct CircuitBreakerOptions {
    pub(crate) failure_pattern: String,
    pub(crate) success_pattern: Option<String>,
    pub(crate) trip: Trip,
    pub(crate) open_for: Duration,
    pub(crate) backoff: f64,
    /// The cap given with [`CircuitBreakerOptions::backoff`]; `None`: the default cap.
    pub(crate) max_open: Option<Duration>,
    pub(crate) probes: usize,
    pub(crate) successes_to_close: usize,
    pub(crate) prefix: String,
}

impl Default for CircuitBreakerOptions {
    fn default() -> Self {
        Self {
            failure_pattern: "failure".to_owned(),
            success_pattern: None,
            trip: Trip::Within {
                failures: 5,
                window: Duration::from_secs(30),
            },
            open_for: Duration::from_secs(30),
            backoff: 1.0,
            max_open: None,
            probes: 1,
            successes_to_close: 1,
            prefix: "circuit".to_owned(),
        }
    }
}

impl CircuitBreakerOptions {
    /// Signals matching this pattern count as failures (default `failure`). The breaker's own
    /// signals never count, even if the pattern matches them. A pattern that can match no
    /// signal name (`""`, `" , "`, `"a b"`: see [`Pattern::is_empty`]) is refused
    /// ([`BreakerConfigError::EmptyFailurePattern`]): the breaker would never open.
    pub fn failure_on(mut self, pattern: &str) -> Self {
        self.failure_pattern = pattern.to_owned();
        self
    }

    /// Signals matching this pattern count as successes (default: none; successes are then
    /// reported with [`record_success`](super::CircuitBreaker::record_success)). A pattern
    /// that can match no signal name is refused ([`BreakerConfigError::EmptySuccessPattern`]);
    /// to count no success signal, leave this option out.
    pub fn success_on(mut self, pattern: &str) -> Self {
        self.success_pattern = Some(pattern.to_owned());
        self
    }

    /// Opens after `failures` failures within `window`.
    pub fn failures_within(mut self, failures: usize, window: Duration) -> Self {
        self.trip = Trip::Within { failures, window };
        self
    }

    /// Opens after `failures` failures in a row.
    pub fn consecutive_failures(mut self, failures: usize) -> Self {
        self.trip = Trip::Consecutive(failures);
        self
    }

    /// How long the breaker stays open the first time (default 30 s). Any non-zero period
    /// is valid on its own; only a `max_open` given with [`backoff`](Self::backoff) must not
    /// be shorter.
    pub fn open_for(mut self, period: Duration) -> Self {
        self.open_for = period;
        self
    }

    /// Each reopening from half-open multiplies the open period by `factor` (≥ 1; default 1,
    /// no growth), up to `max_open`. A success that closes the breaker resets the period.
    pub fn backoff(mut self, factor: f64, max_open: Duration) -> Self {
        self.backoff = factor;
        self.max_open = Some(max_open);
        self
    }

    /// How many items half-open admits as probes (default 1), and how many of them must
    /// succeed to close the breaker (default 1, at most `probes`).
    pub fn probes(mut self, probes: usize, successes_to_close: usize) -> Self {
        self.probes = probes;
        self.successes_to_close = successes_to_close;
        self
    }

    /// The first segments of the breaker's signal names (default `circuit`, giving
    /// `circuit.open`, `circuit.half_open`, `circuit.closed`). An empty prefix is refused
    /// ([`BreakerConfigError::EmptyPrefix`]), and so is one that starts or ends with a dot
    /// ([`BreakerConfigError::PrefixDot`]): the dot after it is added.
    pub fn signal_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`BreakerConfigError`].
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        match self.trip {
            Trip::Within { failures: 0, .. } | Trip::Consecutive(0) => {
                return Err(BreakerConfigError::ZeroFailures);
            }
            Trip::Within { window, .. } if window.is_zero() => {
                return Err(BreakerConfigError::ZeroWindow);
            }
            _ => {}
        }
        if self.open_for.is_zero() {
            return Err(BreakerConfigError::ZeroOpenPeriod);
        }
        if !self.backoff.is_finite() || self.backoff < 1.0 {
            return Err(BreakerConfigError::Backoff(self.backoff));
        }
        if let Some(max_open) = self.max_open
            && max_open < self.open_for
        {
            return Err(BreakerConfigError::MaxOpenTooShort {
                open_for: self.open_for,
                max_open,
            });
        }
        if self.probes == 0 {
            return Err(BreakerConfigError::ZeroProbes);
        }
        if self.successes_to_close == 0 || self.successes_to_close > self.probes {
            return Err(BreakerConfigError::Successes {
                successes: self.successes_to_close,
                probes: self.probes,
            });
        }
        // A listener that can hear nothing leaves the breaker deaf: almost surely a typo or an
        // unset variable, so it is refused, as a watcher's or an adaptive limiter's is.
        if Pattern::new(&self.failure_pattern).is_empty() {
            return Err(BreakerConfigError::EmptyFailurePattern {
                pattern: self.failure_pattern.clone(),
            });
        }
        if let Some(pattern) = &self.success_pattern
            && Pattern::new(pattern).is_empty()
        {
            return Err(BreakerConfigError::EmptySuccessPattern {
                pattern: pattern.clone(),
            });
        }
        if self.prefix.is_empty() {
            return Err(BreakerConfigError::EmptyPrefix);
        }
        if self.prefix.starts_with('.') || self.prefix.ends_with('.') {
            return Err(BreakerConfigError::PrefixDot(self.prefix.clone()));
        }
        for suffix in ["open", "half_open", "closed"] {
            ephemeral::validate_name(&format!("{}.{suffix}", self.prefix))
                .map_err(BreakerConfigError::Prefix)?;
        }
        Ok(())
    }

    /// The longest open period: the `max_open` given with [`backoff`](Self::backoff), else
    /// [`DEFAULT_MAX_OPEN`] or `open_for`, whichever is longer.
    pub(crate) fn cap(&self) -> Duration {
        self.max_open
            .unwrap_or_else(|| DEFAULT_MAX_OPEN.max(self.open_for))
    }
}

/// Why a [`CircuitBreaker`](super::CircuitBreaker) could not be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// The trip count was zero.
    #[error("the failure count that opens the breaker is 0: use at least 1")]
    ZeroFailures,
    /// The failure window was zero.
    #[error("the failure window is 0: use a non-zero window, or consecutive_failures")]
    ZeroWindow,
    /// The open period was zero.
    #[error("the open period is 0: use a non-zero open_for")]
    ZeroOpenPeriod,
    /// The backoff factor was below 1 or not finite.
    #[error("the backoff factor {0} is not a finite number >= 1: use 1 for no growth")]
    Backoff(f64),
    /// `max_open` was shorter than `open_for`.
    #[error("max_open {max_open:?} is shorter than open_for {open_for:?}: raise max_open")]
    MaxOpenTooShort {
        /// The first open period.
        open_for: Duration,
        /// The cap.
        max_open: Duration,
    },
    /// Zero probes were allowed.
    #[error("half-open admits 0 probes, so the breaker could never close: use at least 1")]
    ZeroProbes,
    /// The success count was zero or above the probe count.
    #[error("{successes} successes to close with {probes} probes: use 1..={probes}")]
    Successes {
        /// Successes asked for.
        successes: usize,
        /// Probes allowed.
        probes: usize,
    },
    /// The failure pattern can match no signal name (`""`, `" , "`, `"a b"`: see
    /// [`Pattern::is_empty`]), so the breaker would never open.
    #[error(
        "failure pattern `{pattern}` matches no signal name, so no failure would ever open the breaker: give a pattern such as `failure` (the default) or `error.*`"
    )]
    EmptyFailurePattern {
        /// The pattern given.
        pattern: String,
    },
    /// The success pattern can match no signal name, so no signal would ever count as a
    /// success.
    #[error(
        "success pattern `{pattern}` matches no signal name, so no signal would ever count as a success: give a pattern such as `success`, or leave success_on out and call record_success"
    )]
    EmptySuccessPattern {
        /// The pattern given.
        pattern: String,
    },
    /// The signal prefix was empty: the names would start with a dot (`.open`).
    #[error("the signal prefix is empty: give one, such as `circuit` (the default)")]
    EmptyPrefix,
    /// The prefix starts or ends with a dot (`circuit.`, `.circuit`): the names would hold
    /// an empty segment (`circuit..open`). The dot after the prefix is added.
    #[error(
        "the signal prefix `{0}` starts or ends with a dot, which would leave an empty segment (`circuit..open`): give the segments alone, such as `circuit` or `db.circuit`"
    )]
    PrefixDot(String),
    /// The signal prefix does not make valid names.
    #[error("the signal prefix does not make valid signal names: {0}")]
    Prefix(#[source] NameError),
    /// Built outside a tokio runtime (the open timer needs one).
    #[error("a circuit breaker needs a tokio runtime: create it inside one")]
    NoRuntime,
}
