//! Sampling a coordinator into a [`CoordinatorState`], through its public API.

use std::time::Duration;

use ephemeral::{CoordinatorStats, OperationSnapshot, OperationState, SignalSink};
use tokio::time::Instant;

use super::format::{CoordinatorState, Counts, Latency, OperationEntry, Rates, State, clip};
use super::publisher::{PublishOptions, Sampler, millis};

/// Keys are cut to this many bytes in a frame.
const MAX_KEY: usize = 128;
/// Error texts are cut to this many bytes in a frame.
const MAX_ERROR: usize = 512;
/// At most this many distinct names in `deferred_by`.
const MAX_DEFERRED_BY: usize = 16;

/// What the publisher reads of a coordinator: the public methods every coordinator type
/// has, gathered so that one sampler serves the four types.
pub(crate) trait CoordinatorView: Send + Sync + 'static {
    /// `work`, `keyed`, `result` or `priority`.
    const TYPE: &'static str;
    fn stats(&self) -> CoordinatorStats;
    fn snapshot(&self) -> Vec<OperationSnapshot>;
    fn sink(&self) -> &SignalSink;
    fn id(&self) -> &str;
    fn is_done(&self) -> bool;
}

/// Samples one coordinator; remembers the previous counters for the rates.
pub(crate) struct CoordinatorSampler<C> {
    coordinator: C,
    previous: (Instant, CoordinatorStats),
}

impl<C: CoordinatorView> CoordinatorSampler<C> {
    pub(crate) fn new(coordinator: C) -> Self {
        let stats = coordinator.stats();
        Self {
            coordinator,
            previous: (Instant::now(), stats),
        }
    }
}

impl<C: CoordinatorView> Sampler for CoordinatorSampler<C> {
    fn rebase(&mut self) {
        self.previous = (Instant::now(), self.coordinator.stats());
    }

    fn sample(&mut self, options: &PublishOptions) -> State {
        let now = Instant::now();
        let stats = self.coordinator.stats();
        let operations = self.coordinator.snapshot();
        let (then, before) = std::mem::replace(&mut self.previous, (now, stats));
        let window = now.saturating_duration_since(then);
        let deferred_by = options
            .deferred_by
            .as_ref()
            .map(|pattern| deferred_by(self.coordinator.sink(), pattern.as_str()))
            .unwrap_or_default();
        let latency = latency(&operations);
        let (operations, operations_omitted, recent_failures) = select(operations, now, options);
        State::Coordinator(CoordinatorState {
            coordinator_type: C::TYPE.to_owned(),
            id: self.coordinator.id().to_owned(),
            counts: counts(&stats),
            max_concurrency: stats.max_concurrency,
            rates: Rates {
                window_ms: millis(window),
                accepted_per_s: rate(before.accepted, stats.accepted, window),
                completed_per_s: rate(before.completed, stats.completed, window),
                failed_per_s: rate(before.failed, stats.failed, window),
                cancelled_per_s: rate(before.cancelled, stats.cancelled, window),
            },
            latency,
            deferred_by,
            done: self.coordinator.is_done(),
            operations,
            operations_omitted,
            recent_failures,
        })
    }
}

fn counts(stats: &CoordinatorStats) -> Counts {
    Counts {
        accepted: stats.accepted,
        pending: stats.pending,
        running: stats.running,
        completed: stats.completed,
        failed: stats.failed,
        cancelled: stats.cancelled,
        panicked: stats.panicked,
        evicted: stats.evicted,
        tracked: stats.tracked,
        peak_running: stats.peak_running,
    }
}

/// Per second, from two counter readings `window` apart (0 over an empty window).
pub(crate) fn rate(before: u64, after: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / secs
}

/// The distinct names of the live signals matching `pattern`, oldest first.
fn deferred_by(sink: &SignalSink, pattern: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for signal in sink.sense(pattern) {
        if names.len() >= MAX_DEFERRED_BY {
            break;
        }
        if !names.iter().any(|n| n == signal.name().as_str()) {
            names.push(signal.name().as_str().to_owned());
        }
    }
    names
}

/// Nearest-rank percentiles of the run times of the finished operations in `operations`.
fn latency(operations: &[OperationSnapshot]) -> Option<Latency> {
    let mut micros: Vec<u64> = operations
        .iter()
        .filter(|op| op.state.is_finished())
        .filter_map(|op| Some(op.finished?.saturating_duration_since(op.started?)))
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .collect();
    micros.sort_unstable();
    let max_us = *micros.last()?;
    Some(Latency {
        samples: micros.len() as u64,
        p50_us: percentile(&micros, 50),
        p99_us: percentile(&micros, 99),
        max_us,
    })
}

/// The nearest-rank `p`th percentile of sorted, non-empty `values`.
pub(crate) fn percentile(values: &[u64], p: usize) -> u64 {
    let rank = (values.len() * p).div_ceil(100).max(1);
    values[rank.min(values.len()) - 1]
}

/// The bounded sample (running oldest first, pending oldest first, finished most recent
/// first), how many were left out, and the recent failures.
fn select(
    mut operations: Vec<OperationSnapshot>,
    now: Instant,
    options: &PublishOptions,
) -> (Vec<OperationEntry>, u64, Vec<OperationEntry>) {
    // Sort keys: the phase, then the instant that orders within it.
    let phase = |op: &OperationSnapshot| match op.state {
        OperationState::Running => 0,
        OperationState::Pending | OperationState::Deferred => 1,
        _ => 2,
    };
    operations.sort_by(|a, b| {
        phase(a).cmp(&phase(b)).then_with(|| match phase(a) {
            0 => a.started.cmp(&b.started),
            1 => a.enqueued.cmp(&b.enqueued),
            _ => b.finished.cmp(&a.finished),
        })
    });
    let omitted = operations.len().saturating_sub(options.max_operations) as u64;
    let failures = operations
        .iter()
        .filter(|op| matches!(op.state, OperationState::Failed))
        .take(options.max_failures)
        .map(|op| entry(op, now))
        .collect();
    let sample = operations
        .iter()
        .take(options.max_operations)
        .map(|op| entry(op, now))
        .collect();
    (sample, omitted, failures)
}

fn entry(op: &OperationSnapshot, now: Instant) -> OperationEntry {
    let (state, error) = match &op.state {
        // A deferred item is pending; the frame's `deferred_by` says what holds it.
        OperationState::Pending | OperationState::Deferred => ("pending", None),
        OperationState::Running => ("running", None),
        OperationState::Completed => ("completed", None),
        OperationState::Failed => ("failed", op.error.as_deref().map(|e| clip(e, MAX_ERROR))),
        OperationState::Cancelled(reason) => {
            ("cancelled", Some(clip(&reason.to_string(), MAX_ERROR)))
        }
        _ => ("unknown", None),
    };
    let since = match op.state {
        OperationState::Pending | OperationState::Deferred => Some(op.enqueued),
        OperationState::Running => op.started,
        _ => op.finished,
    }
    .unwrap_or(op.enqueued);
    OperationEntry {
        id: op.id.as_u64(),
        state: state.to_owned(),
        key: op.key.as_deref().map(|k| clip(k, MAX_KEY)),
        age_ms: millis(now.saturating_duration_since(since)),
        run_ms: op
            .started
            .map(|s| millis(op.finished.unwrap_or(now).saturating_duration_since(s))),
        error,
        panicked: op.panicked,
    }
}
