//! The circuit breaker as an admission hook: the payments coordinator stops taking work while
//! the breaker is open, and lets through a bounded number of probes while it is half-open.

use ephemeral::{Admission, AdmissionRequest, Decision};
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, ProbeDecision};
use futures::future::BoxFuture;

/// Asks the breaker before every payment takes a concurrency slot.
#[derive(Debug, Clone)]
pub(crate) struct BreakerGate {
    breaker: CircuitBreaker,
}

impl BreakerGate {
    /// A gate in front of `breaker`.
    pub(crate) fn new(breaker: CircuitBreaker) -> Self {
        Self { breaker }
    }
}

impl Admission for BreakerGate {
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        // Subscribe before asking: a state change between the question and the wait still
        // wakes the parked item, so nothing waits for a change that already happened.
        let mut changes = self.breaker.watch_state();
        let decision = self.breaker.try_probe();
        Box::pin(async move {
            match decision {
                ProbeDecision::Admit => Decision::Admit,
                // Open, or half-open with every probe slot taken: park the item (it holds no
                // slot) until the breaker changes state, then it is asked again.
                ProbeDecision::Refuse | ProbeDecision::Wait => Decision::defer(async move {
                    // An error would mean the breaker's state sender is gone, which the
                    // gate's own handle prevents; either way the item is simply asked again.
                    let _ = changes.changed().await;
                }),
            }
        })
    }
}
