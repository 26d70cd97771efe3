//! The simulated downstream: a payment provider that is flaky, sometimes slow, and has one
//! incident in the middle of the run during which most calls fail.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use tokio::time::{Instant, sleep};

/// How often a call is slow (a few hundred milliseconds instead of a few tens).
const SLOW_SHARE: f64 = 0.08;
/// The failure probability while the incident lasts.
const INCIDENT_FAILURE_RATE: f64 = 0.85;

/// Why one call to the downstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The provider did not answer in time.
    Timeout,
    /// The provider answered 503.
    Unavailable,
    /// The circuit breaker opened while this order was between attempts: not retried.
    CircuitOpen,
}

impl CallError {
    /// The signal a failed call raises (the circuit breaker counts `error.downstream.*`).
    pub(crate) fn signal(self) -> Option<&'static str> {
        match self {
            Self::Timeout => Some("error.downstream.timeout"),
            Self::Unavailable => Some("error.downstream.unavailable"),
            Self::CircuitOpen => None,
        }
    }

    /// Whether another attempt may help.
    pub(crate) fn is_retryable(self) -> bool {
        !matches!(self, Self::CircuitOpen)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "payment provider timed out",
            Self::Unavailable => "payment provider unavailable (503)",
            Self::CircuitOpen => "circuit opened while retrying",
        })
    }
}

/// The random draws of one attempt, made up front from the order's own seeded generator so
/// that a run is reproducible whatever the scheduling: the same order's n-th attempt always
/// draws the same numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    roll: f64,
    timeout: bool,
    latency: Duration,
}

impl Attempt {
    /// Draws one attempt.
    pub(crate) fn draw(rng: &mut SmallRng) -> Self {
        let roll = rng.random::<f64>();
        let timeout = rng.random_bool(0.4);
        let slow = rng.random_bool(SLOW_SHARE);
        let millis = if slow {
            rng.random_range(250..600)
        } else {
            rng.random_range(8..40)
        };
        Self {
            roll,
            timeout,
            latency: Duration::from_millis(millis),
        }
    }
}

/// The provider: a base failure rate, and an incident window (measured from `start`) during
/// which most calls fail.
#[derive(Debug)]
pub(crate) struct Downstream {
    start: Instant,
    incident: Range<Duration>,
    failure_rate: f64,
}

impl Downstream {
    /// A provider failing `failure_rate` of calls, and most calls during `incident`.
    pub(crate) fn new(start: Instant, incident: Range<Duration>, failure_rate: f64) -> Self {
        Self {
            start,
            incident,
            failure_rate,
        }
    }

    /// Whether the incident is going on now.
    pub(crate) fn in_incident(&self) -> bool {
        self.incident.contains(&self.start.elapsed())
    }

    /// One call: waits for the attempt's latency, then answers.
    pub(crate) async fn charge(&self, attempt: Attempt) -> Result<(), CallError> {
        let failure_rate = if self.in_incident() {
            INCIDENT_FAILURE_RATE
        } else {
            self.failure_rate
        };
        if attempt.roll < failure_rate {
            if attempt.timeout {
                // A timeout costs the client its whole timeout budget.
                sleep(Duration::from_millis(150)).await;
                Err(CallError::Timeout)
            } else {
                sleep(attempt.latency / 2).await;
                Err(CallError::Unavailable)
            }
        } else {
            sleep(attempt.latency).await;
            Ok(())
        }
    }
}
