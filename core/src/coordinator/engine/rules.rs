//! The rules a coordinator reads from its options once: names, signal patterns, callbacks.

use std::sync::Arc;
use std::time::Duration;

use super::super::defer::{defer_active, defer_started};
use super::super::options::{DeferPolicy, DrainSignals, EvictedCallback, FinalizedCallback};
use super::super::snapshot::OperationSnapshot;
use super::body::panic_message;
use crate::{Pattern, SignalSink};

/// The options the workers, the steering task and the callbacks read, fixed at creation.
pub(crate) struct Rules {
    pub(crate) name: Arc<str>,
    pub(crate) id: Arc<str>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) cancel_running_on: Option<Pattern>,
    pub(crate) clear_on: Option<Pattern>,
    pub(crate) drain_signals: DrainSignals,
    pub(crate) abort_grace: Duration,
    pub(crate) on_finalized: Option<FinalizedCallback>,
    pub(crate) on_evicted: Option<EvictedCallback>,
}

impl Rules {
    /// Runs the callbacks, outside every lock: every finalization first, then every
    /// eviction, each in the order it happened. A panicking callback is logged and the rest
    /// still run.
    pub(crate) fn deliver(
        &self,
        finalized: Vec<OperationSnapshot>,
        evicted: Vec<OperationSnapshot>,
    ) {
        for (callback, snaps, which) in [
            (&self.on_finalized, finalized, "on_finalized"),
            (&self.on_evicted, evicted, "on_evicted"),
        ] {
            let Some(callback) = callback else { continue };
            for snap in &snaps {
                let call = std::panic::AssertUnwindSafe(|| callback(snap));
                if let Err(panic) = std::panic::catch_unwind(call) {
                    tracing::error!(
                        coordinator = %self.name,
                        id = %snap.id,
                        panic = %panic_message(&*panic),
                        "the {which} callback panicked",
                    );
                }
            }
        }
    }
}

/// The coordinator-wide defer rule and the `max_defer` bound, kept with the state they steer.
#[derive(Debug, Clone)]
pub(crate) struct DeferRules {
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
    pub(crate) max_defer: Option<Duration>,
    pub(crate) policy: DeferPolicy,
}

impl DeferRules {
    /// Whether `defer_on` holds now (a sink query).
    pub(crate) fn holds(&self, sink: &SignalSink) -> bool {
        self.defer_on
            .as_ref()
            .is_some_and(|defer| defer_active(sink, defer, self.resume_on.as_ref()))
    }

    /// The signal `defer_on` holds by (see [`defer_started`]); `None` when it does not hold
    /// now.
    pub(crate) fn held_by(&self, sink: &SignalSink) -> Option<crate::Signal> {
        self.defer_on
            .as_ref()
            .and_then(|defer| defer_started(sink, defer, self.resume_on.as_ref()))
    }
}

/// The names of the drain signals `which` obeys.
pub(crate) fn drain_names(which: DrainSignals) -> impl Iterator<Item = &'static str> {
    [
        (which.obeys_all(), "coordinator.drain.all"),
        (which.obeys_id(), "coordinator.drain.id"),
        (which.obeys_pattern(), "coordinator.drain.pattern"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
}

/// The pattern the steering task watches (every signal a rule reacts to), if there is any.
pub(crate) fn steer_pattern(
    rules: &Rules,
    defer: &DeferRules,
    extra_watch: &[Pattern],
) -> Option<Pattern> {
    let mut parts: Vec<&str> = drain_names(rules.drain_signals).collect();
    for p in [
        &rules.cancel_running_on,
        &defer.defer_on,
        &defer.resume_on,
        &rules.clear_on,
    ]
    .into_iter()
    .flatten()
    {
        parts.push(p.as_str());
    }
    for p in extra_watch {
        parts.push(p.as_str());
    }
    if parts.is_empty() {
        None
    } else {
        Some(Pattern::new(&parts.join(",")))
    }
}
