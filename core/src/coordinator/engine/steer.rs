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
/// The watch and the event subscription are made here, at the coordinator's creation, not
/// when the task first runs: a rule signal raised in between and gone before the task ran
/// (retracted, cleared) still counts.
pub(crate) fn spawn<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    pattern: Option<Pattern>,
) {
    let sink = &inner.ctx.sink;
    let watch = pattern.as_ref().map(|p| sink.watch(p.as_str()));
    // Every raise an event rule acts on, kept for the next step even if the signal is gone
    // from the window by then (retracted, evicted, cleared); the watch above wakes the task.
    let events = events_pattern(&inner.rules).map(|p| {
        sink.subscribe_with(
            p.as_str(),
            crate::Buffer::bounded(EVENTS_BUFFER).unwrap_or_default(),
        )
    });
    inner.runtime.spawn(run(inner.clone(), watch, events));
}

/// The least time between two sweeps in a row (see `run`).
const SWEEP_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// How many raises of the event rules' signals wait for the steering task. Past it the
/// oldest are dropped: the step then still acts on what is live (`latest`, `sense`).
const EVENTS_BUFFER: usize = 64;

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
    mut watch: Option<crate::Watch>,
    mut events: Option<crate::Subscription>,
) {
    let sink = inner.ctx.sink.clone();
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
            deadline = step(&inner, &sink, &mut seen, events.as_mut());
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
///
/// The event rules (drain, `cancel_running_on`, `clear_on`) act on every raise of theirs
/// since the last step, from `events`, so a signal gone from the window before the task
/// looked (retracted at once, evicted, cleared) still counts; then on what is live, which
/// also covers raises the buffer dropped and those from before the task subscribed.
fn step<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    sink: &SignalSink,
    seen: &mut Seen,
    events: Option<&mut crate::Subscription>,
) -> Option<Instant> {
    let rules = &inner.rules;
    if let Some(events) = events {
        while let Some(event) = events.try_recv() {
            // A loss (`Lagged`): what is live is looked at below all the same.
            let Ok(signal) = event else { continue };
            if drains(rules.drain_signals, inner.created_seq, &rules.id, &signal) {
                inner.complete();
            }
            if rules
                .cancel_running_on
                .as_ref()
                .is_some_and(|p| p.matches(signal.name().as_str()))
            {
                cancel_running(inner, seen, &signal);
            }
            if rules
                .clear_on
                .as_ref()
                .is_some_and(|p| p.matches(signal.name().as_str()))
            {
                clear(sink, seen, &signal);
            }
        }
    }
    if drain_requested(sink, rules.drain_signals, inner.created_seq, &rules.id) {
        inner.complete();
    }
    if let Some(pattern) = &rules.cancel_running_on
        && let Some(signal) = sink.latest(pattern.as_str())
    {
        cancel_running(inner, seen, &signal);
    }
    if let Some(pattern) = &rules.clear_on
        && let Some(signal) = sink.latest(pattern.as_str())
    {
        clear(sink, seen, &signal);
    }
    let now = Instant::now();
    inner.update(|core, fx| core.steer_deferral(fx, sink, now))
}

/// `cancel_running_on`: a matching signal newer than the last acted on cancels the running
/// bodies, once.
fn cancel_running<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    seen: &mut Seen,
    signal: &crate::Signal,
) {
    if signal.sequence() <= seen.cancel {
        return;
    }
    seen.cancel = signal.sequence();
    let reason = CancelReason::Signal(signal.name().clone());
    inner.update(|core, _| core.cancel_running(&reason, signal.sequence()));
}

/// `clear_on`: a matching signal newer than the last acted on clears the sink, once.
fn clear(sink: &SignalSink, seen: &mut Seen, signal: &crate::Signal) {
    if signal.sequence() <= seen.clear {
        return;
    }
    seen.clear = signal.sequence();
    // A clear's own `sink.cleared` never clears again (a pattern matching it, `*` say,
    // would otherwise clear for ever); later raises count anew.
    if signal.name().as_str() != crate::signal::SINK_CLEARED {
        seen.clear = sink.sequence();
        sink.clear();
        seen.clear = seen.clear.max(signal.sequence());
    }
}

/// The signals of the event rules (drain names obeyed, `cancel_running_on`, `clear_on`), if
/// any.
fn events_pattern(rules: &super::rules::Rules) -> Option<Pattern> {
    let mut parts: Vec<&str> = super::rules::drain_names(rules.drain_signals).collect();
    parts.extend(
        [&rules.cancel_running_on, &rules.clear_on]
            .into_iter()
            .flatten()
            .map(Pattern::as_str),
    );
    (!parts.is_empty()).then(|| Pattern::new(&parts.join(",")))
}

/// Whether `signal` is a drain signal this coordinator obeys, raised after it was created.
fn drains(which: DrainSignals, created: u64, id: &str, signal: &crate::Signal) -> bool {
    if signal.sequence() <= created {
        return false;
    }
    match signal.name().as_str() {
        "coordinator.drain.all" => which.obeys_all(),
        "coordinator.drain.id" => which.obeys_id() && signal.key() == Some(id),
        "coordinator.drain.pattern" => {
            which.obeys_pattern() && signal.key().is_some_and(|k| Pattern::new(k).matches(id))
        }
        _ => false,
    }
}

/// Whether a live drain signal this coordinator obeys was raised after it was created.
fn drain_requested(sink: &SignalSink, which: DrainSignals, created: u64, id: &str) -> bool {
    let names: Vec<&str> = super::rules::drain_names(which).collect();
    !names.is_empty()
        && sink
            .sense(&names.join(","))
            .iter()
            .any(|s| drains(which, created, id, s))
}
