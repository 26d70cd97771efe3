//! The breaker as a coordinator's admission hook, and its view of finished operations.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision, OperationSnapshot, OperationState};
use futures::future::BoxFuture;

use super::{CircuitBreaker, ProbeDecision};

/// The [`Admission`] hook of a [`CircuitBreaker`]: closed admits, open cancels, half-open
/// admits the configured number of probes and defers the rest until the breaker's state
/// changes (the deferred items hold no slot). A probe put aside by a later hook in the
/// coordinator's list keeps its slot and is admitted again when it comes back.
///
/// The coordinator's `max_defer` bounds that wait. With `DeferPolicy::Cancel` an item that
/// waited that long for a probe slot ends `Cancelled(DeferTimeout)`; with `DeferPolicy::Run`
/// the coordinator starts it anyway, whatever the hook says: beside the probes, not as one
/// (its outcome closes nothing), so half-open then lets more than `probes` items through.
/// Pair the hook with `DeferPolicy::Cancel` where the probe bound matters.
pub struct BreakerAdmission {
    breaker: CircuitBreaker,
}

impl fmt::Debug for BreakerAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerAdmission")
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl Admission for BreakerAdmission {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        // Subscribed before deciding, so that a change between the decision and the wait
        // still wakes the deferred item.
        let mut changes = self.breaker.watch_state();
        changes.mark_unchanged();
        let decision = match self.breaker.take_probe(Some(request.id)) {
            ProbeDecision::Admit => Decision::Admit,
            ProbeDecision::Refuse => Decision::cancel("circuit open"),
            ProbeDecision::Wait => Decision::defer(async move {
                // Err only when the breaker is gone; then the item is simply re-checked.
                let _ = changes.changed().await;
            }),
        };
        Box::pin(async move { decision })
    }
}

impl CircuitBreaker {
    /// The breaker as an [`Admission`] hook, for `EphemeralWorkCoordinator::with_admission`.
    /// Pair it with [`observe`](Self::observe) in the coordinator's `on_finalized`, so that
    /// probes report their outcome.
    #[must_use]
    pub fn admission(&self) -> Arc<dyn Admission> {
        Arc::new(BreakerAdmission {
            breaker: self.clone(),
        })
    }

    /// Feeds a finished operation to the breaker (call it from `on_finalized`):
    ///
    /// * completed: a success (closes the breaker once enough half-open probes succeeded;
    ///   closed, it resets the consecutive-failure count). A completion that was not a
    ///   half-open probe never closes the breaker.
    /// * failed, for a probe: a failure (reopens). Other failures are counted from failure
    ///   signals, so that a body that both signals and fails counts once.
    /// * cancelled, for a probe: its slot is given back, so another item may probe.
    ///
    /// Probes are the items [`admission`](Self::admission) admitted in half-open: without that
    /// hook in the coordinator (a `defer_on("circuit.open")` alone), no completion is a
    /// probe, and `observe` never closes a half-open breaker (see the [module
    /// docs](super)).
    pub fn observe(&self, snapshot: &OperationSnapshot) {
        let probe = self.forget_probe(snapshot.id);
        match &snapshot.state {
            OperationState::Completed if probe || self.state() == super::CircuitState::Closed => {
                self.record_success();
            }
            OperationState::Failed if probe => self.record_failure(),
            OperationState::Cancelled(_) if probe => self.release_probe(),
            _ => {}
        }
    }

    /// A closure for `EphemeralOptions::on_finalized` that calls [`observe`](Self::observe).
    pub fn observer(&self) -> impl Fn(&OperationSnapshot) + Send + Sync + 'static {
        let breaker = self.clone();
        move |snapshot| breaker.observe(snapshot)
    }
}
