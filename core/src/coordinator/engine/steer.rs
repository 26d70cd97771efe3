//! The steering task: one per coordinator, woken by the sink (never polling) to apply the
//! drain, cancel-running, clear and defer rules, and `max_defer`.

use std::sync::Arc;

use tokio::time::Instant;

use super::super::options::DrainSignals;
use super::super::queue::Queue;
use super::super::snapshot::CancelReason;
use super::inner::{Inner, sleep_until};
use crate::{Pattern, SignalSink};

/// Spawns the steering task, watching `pattern` (every signal a rule reacts to).
pub(crate) fn spawn<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    pattern: Pattern,
) {
    inner.runtime.spawn(run(inner.clone(), pattern));
}

async fn run<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: Arc<Inner<T, R, Q>>,
    pattern: Pattern,
) {
    let sink = inner.ctx.sink.clone();
    let mut watch = sink.watch(pattern.as_str());
    let mut seen = Seen {
        cancel: inner.created_seq,
        clear: inner.created_seq,
    };
    let mut done = inner.done.subscribe();
    loop {
        let deadline = step(&inner, &sink, &mut seen);
        if inner.root.is_cancelled() || *done.borrow() {
            return;
        }
        tokio::select! {
            () = watch.changed() => {}
            () = inner.steer.notified() => {}
            () = sleep_until(deadline) => {}
            () = inner.root.cancelled() => return,
            _ = done.changed() => {}
        }
    }
}

/// The highest sequence numbers already acted on, so each signal acts once.
struct Seen {
    cancel: u64,
    clear: u64,
}

/// Applies the rules once; returns when the next queued job reaches `max_defer`.
fn step<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    sink: &SignalSink,
    seen: &mut Seen,
) -> Option<Instant> {
    let rules = &inner.rules;
    if drain_requested(sink, rules.drain_signals, inner.created_seq, &rules.id) {
        inner.complete();
    }
    if let Some(pattern) = &rules.cancel_running_on
        && let Some(signal) = sink.latest(pattern.as_str())
        && signal.sequence() > seen.cancel
    {
        seen.cancel = signal.sequence();
        let reason = CancelReason::Signal(signal.name().clone());
        inner.update(|core, _| core.cancel_running(&reason));
    }
    if let Some(pattern) = &rules.clear_on
        && let Some(signal) = sink.latest(pattern.as_str())
        && signal.sequence() > seen.clear
    {
        // Everything up to now is cleared once; `sink.cleared` and later raises count anew.
        seen.clear = sink.sequence();
        sink.clear();
        seen.clear = seen.clear.max(signal.sequence());
    }
    let now = Instant::now();
    inner.update(|core, fx| core.steer_deferral(fx, sink, now))
}

/// Whether a drain signal this coordinator obeys was raised after it was created.
fn drain_requested(sink: &SignalSink, which: DrainSignals, created: u64, id: &str) -> bool {
    let fresh = |s: &crate::Signal| s.sequence() > created;
    if which.obeys_all()
        && sink
            .latest("coordinator.drain.all")
            .is_some_and(|s| fresh(&s))
    {
        return true;
    }
    if which.obeys_id()
        && sink
            .sense("coordinator.drain.id")
            .iter()
            .any(|s| fresh(s) && s.key() == Some(id))
    {
        return true;
    }
    which.obeys_pattern()
        && sink
            .sense("coordinator.drain.pattern")
            .iter()
            .any(|s| fresh(s) && s.key().is_some_and(|k| Pattern::new(k).matches(id)))
}
