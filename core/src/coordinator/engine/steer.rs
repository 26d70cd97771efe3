//! The steering task: one per coordinator, woken by the sink (never polling) to apply the
//! drain, cancel-running, clear and defer rules, and `max_defer`; and, when the window
//! sweeps (`on_evicted` is set), woken at each finished operation's due time to evict it by
//! age on time, also once the coordinator is done.

use std::sync::Arc;

use tokio::time::Instant;

use super::super::options::DrainSignals;
use super::super::queue::Queue;
use super::super::snapshot::CancelReason;
use super::inner::{Inner, sleep_until};
use crate::{Pattern, SignalSink};

/// Spawns the steering task, watching `pattern` (every signal a rule reacts to) if any.
pub(crate) fn spawn<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    pattern: Option<Pattern>,
) {
    inner.runtime.spawn(run(inner.clone(), pattern));
}

/// The least time between two sweeps in a row (see `run`).
const SWEEP_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// Why the steering task woke.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Woke {
    /// A signal, a `max_defer` clock, a change of the window's next due time, or `done`:
    /// the rules are applied again.
    Rules,
    /// The window's next due time came: only the window is swept (applying the rules would
    /// wake every waiting worker for nothing).
    Sweep,
}

async fn run<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: Arc<Inner<T, R, Q>>,
    pattern: Option<Pattern>,
) {
    let sink = inner.ctx.sink.clone();
    let mut watch = pattern.as_ref().map(|p| sink.watch(p.as_str()));
    let mut seen = Seen {
        cancel: inner.created_seq,
        clear: inner.created_seq,
    };
    let mut done = inner.done.subscribe();
    let sweeps = inner.lock().sweeps();
    let mut deadline = None;
    let mut woke = Woke::Rules;
    loop {
        let cancelled = inner.root.is_cancelled();
        // Once the last handle is gone nothing is reported any more; after a `cancel` the
        // window is still swept while the coordinator lives.
        if inner.are_handles_gone() || (cancelled && !sweeps) {
            return;
        }
        // A done or cancelled coordinator takes no more items: no rule has anything left to
        // act on.
        let finished = cancelled || *done.borrow();
        if woke == Woke::Rules && !finished {
            deadline = step(&inner, &sink, &mut seen);
        }
        let due = if sweeps {
            let now = Instant::now();
            let due = inner.update(|core, _| core.sweep(now));
            // Back to back sweeps (operations due one after another on a busy coordinator)
            // are spaced out, so that the task takes the engine's lock at most a hundred
            // times a second for them; the first after a quiet time is on time.
            match (woke, due) {
                (Woke::Sweep, Some(due)) => Some(due.max(now + SWEEP_GAP)),
                _ => due,
            }
        } else {
            None
        };
        if finished && !sweeps {
            return;
        }
        let signals = async {
            match watch.as_mut() {
                Some(watch) if !finished => watch.changed().await,
                _ => std::future::pending().await,
            }
        };
        woke = tokio::select! {
            () = signals => Woke::Rules,
            () = inner.steer.notified() => Woke::Rules,
            () = sleep_until(deadline), if !finished => Woke::Rules,
            () = sleep_until(due) => Woke::Sweep,
            () = inner.root.cancelled(), if !cancelled => Woke::Rules,
            _ = done.changed(), if !finished => Woke::Rules,
        };
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
        seen.clear = signal.sequence();
        // A clear's own `sink.cleared` never clears again (a pattern matching it, `*` say,
        // would otherwise clear for ever); later raises count anew.
        if signal.name().as_str() != crate::signal::SINK_CLEARED {
            seen.clear = sink.sequence();
            sink.clear();
            seen.clear = seen.clear.max(signal.sequence());
        }
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
