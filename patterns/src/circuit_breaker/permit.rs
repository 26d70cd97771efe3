//! Asking the breaker before one call that is not a coordinator operation, and reporting how
//! it went: the guard a client middleware (such as the signaling HTTP layer) holds per call.

use std::fmt;
use std::time::Duration;

use super::{CircuitBreaker, CircuitState, ProbeDecision};

/// Why [`CircuitBreaker::try_acquire`] refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (CircuitState::HalfOpen, _) => f.write_str(
                "the circuit is half-open and every probe slot is taken: retry when the probes have finished",
            ),
            (_, Some(after)) => {
                // Whole milliseconds: nobody schedules a retry by the nanosecond.
                let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                let after = Duration::from_millis(ms);
                write!(
                    f,
                    "the circuit is open: calls are refused for another {after:?}; retry later"
                )
            }
            (_, None) => f.write_str("the circuit is open: calls are refused until it is reset"),
        }
    }
}

impl std::error::Error for CircuitOpen {}

impl CircuitOpen {
    /// The breaker's state when it refused: `Open`, or `HalfOpen` with every probe slot taken.
    #[must_use]
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// While open, how long until the breaker goes half-open and admits probes; `None` when
    /// half-open (retry when a probe has finished) or when only a reset ends the open period.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Permission from a [`CircuitBreaker`] for one call, from
/// [`try_acquire`](CircuitBreaker::try_acquire).
///
/// Report the call's verdict by consuming the permit with [`success`](Self::success) or
/// [`failure`](Self::failure). Dropping it without a verdict gives back its half-open probe
/// slot, if it held one, so another call may probe (as a cancelled operation does).
///
/// A verdict counts only in the phase the permit was granted in: a call admitted while closed
/// that finishes after the breaker opened changes nothing, and a success of a call that was
/// not a half-open probe never closes the breaker. Callers that raise failure signals the
/// breaker listens to should not also call [`failure`](Self::failure): the signal already
/// counted; drop the permit instead.
#[must_use = "dropping a permit without a verdict reports neither success nor failure"]
pub struct BreakerPermit {
    breaker: CircuitBreaker,
    probe: bool,
    generation: u64,
}

impl BreakerPermit {
    /// Whether this call is a half-open probe (its outcome decides whether the breaker closes).
    #[must_use]
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded: closed, this resets the consecutive-failure count; for a half-open
    /// probe, it counts toward closing the breaker.
    pub fn success(mut self) {
        self.breaker.settle_permit(self.generation, Some(true));
        // Settled: the drop that follows must not also give the probe slot back.
        self.probe = false;
    }

    /// The call failed: counted exactly as a failure signal would be (a half-open probe
    /// reopens the breaker).
    pub fn failure(mut self) {
        self.breaker.settle_permit(self.generation, Some(false));
        self.probe = false;
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.settle_permit(self.generation, None);
        }
    }
}

impl fmt::Debug for BreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("probe", &self.probe)
            .field("generation", &self.generation)
            .finish()
    }
}

impl CircuitBreaker {
    /// Asks to make one call now, outside any coordinator (a client middleware, a hand-written
    /// loop): closed grants a permit, open refuses, half-open grants a probe permit while a
    /// probe slot is free and refuses once every slot is taken (a caller outside a coordinator
    /// fails fast rather than queueing behind the probes; a coordinator's
    /// [`admission`](Self::admission) defers instead).
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the call must not be made, saying for how long.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral::SignalSink;
    /// use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sink = SignalSink::default();
    /// let breaker = CircuitBreaker::new(
    ///     &sink,
    ///     CircuitBreakerOptions::default()
    ///         .consecutive_failures(2)
    ///         .open_for(Duration::from_secs(5)),
    /// )?;
    /// for _ in 0..2 {
    ///     let permit = breaker.try_acquire()?;
    ///     permit.failure(); // the downstream failed
    /// }
    /// let refused = breaker.try_acquire().unwrap_err();
    /// assert_eq!(refused.retry_after(), Some(Duration::from_secs(5)));
    ///
    /// tokio::time::sleep(Duration::from_secs(5)).await;
    /// let probe = breaker.try_acquire()?;
    /// assert!(probe.is_probe());
    /// assert!(breaker.try_acquire().is_err()); // the one probe slot is taken
    /// probe.success();
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_acquire(&self) -> Result<BreakerPermit, CircuitOpen> {
        let (decision, state, generation) = self.take_permit();
        match decision {
            ProbeDecision::Admit => Ok(BreakerPermit {
                breaker: self.clone(),
                probe: state == CircuitState::HalfOpen,
                generation,
            }),
            ProbeDecision::Refuse => Err(CircuitOpen {
                state: CircuitState::Open,
                retry_after: self.time_until_close(),
            }),
            ProbeDecision::Wait => Err(CircuitOpen {
                state: CircuitState::HalfOpen,
                retry_after: None,
            }),
        }
    }
}
