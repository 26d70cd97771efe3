//! The steering task: one per coordinator, woken by the sink (never polling) to apply the
//! drain, cancel-running, clear and defer rules.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::super::options::{DeferPolicy, DrainSignals};
use super::super::queue::{PopCx, Queue};
use super::super::snapshot::{CancelReason, OperationState};
use super::inner::{Core, Shared};
use crate::{Pattern, SignalSink};

pub(crate) async fn run<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: Arc<Shared<T, R, Q>>,
    pattern: Pattern,
) {
    let sink = shared.ctx.sink.clone();
    let mut watch = sink.watch(pattern.as_str());
    let mut seen = Seen {
        cancel: shared.created_seq,
        clear: shared.created_seq,
    };
    let mut done = shared.done.subscribe();
    loop {
        let deadline = step(&shared, &sink, &mut seen);
        if shared.root.is_cancelled() || *done.borrow() {
            return;
        }
        tokio::select! {
            () = watch.changed() => {}
            () = shared.steer.notified() => {}
            () = sleep_until(deadline) => {}
            () = shared.root.cancelled() => return,
            _ = done.changed() => {}
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The highest sequence numbers already acted on, so each signal acts once.
struct Seen {
    cancel: u64,
    clear: u64,
}

/// Applies the rules once; returns when the next queued job passes `max_defer`.
fn step<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    sink: &SignalSink,
    seen: &mut Seen,
) -> Option<Instant> {
    let rules = &shared.rules;
    if drain_requested(sink, rules.drain_signals, shared.created_seq, &rules.id) {
        shared.complete();
    }
    if let Some(pattern) = &rules.cancel_running_on
        && let Some(signal) = sink.latest(pattern.as_str())
        && signal.sequence() > seen.cancel
    {
        seen.cancel = signal.sequence();
        let mut core = shared.lock();
        for record in core.window.records.values_mut() {
            if let (OperationState::Running, Some(token)) = (&record.state, &record.token) {
                record
                    .cancel_requested
                    .get_or_insert_with(|| CancelReason::Signal(signal.name().clone()));
                token.cancel();
            }
        }
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
    let mut core = shared.lock();
    if rules.defer_on.is_some() {
        shared.refresh_deferral(&mut core, now);
    }
    let global = core.defer_since.is_some();
    core.queue.refresh_routes(&mut PopCx {
        sink,
        now,
        global,
        held: false,
    });
    let deadline = rules
        .max_defer
        .and_then(|max| overdue(shared, &mut core, max, now));
    let owed = core.owed();
    // Any change may have lifted a deferral (the workers re-check it under the lock).
    shared.wake_all(core);
    shared.notify_finished();
    shared.deliver(owed);
    deadline
}

/// Applies the `max_defer` policy to the held jobs whose deferrals, summed, reached it, and
/// returns when the next one will.
fn overdue<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    core: &mut MutexGuard<'_, Core<T, R, Q>>,
    max: Duration,
    now: Instant,
) -> Option<Instant> {
    let cancel = shared.rules.defer_policy == DeferPolicy::Cancel;
    let mut next: Option<Instant> = None;
    let mut late = 0usize;
    core.queue.for_each_mut(&mut |job| {
        if job.is_overdue() {
            return;
        }
        let Some(due) = job.defer_deadline(max) else {
            return;
        };
        if due > now {
            next = Some(next.map_or(due, |n| n.min(due)));
        } else if cancel {
            late += 1;
        } else {
            job.set_overdue();
            late += 1;
        }
    });
    if late == 0 {
        return next;
    }
    if !cancel {
        core.overdue += late;
        return next;
    }
    let expired = core.queue.remove_where(&mut |job| {
        !job.is_overdue() && job.defer_deadline(max).is_some_and(|due| due <= now)
    });
    for job in expired {
        shared.room.add_permits(1);
        let state = OperationState::Cancelled(CancelReason::DeferTimeout);
        shared.settle(core, job.id, now, state);
    }
    shared.check_done(core);
    next
}

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
