//! A worker: a long-lived task that takes jobs, admits them, runs bodies and files outcomes.
//! There is no task per item; a coordinator has at most `max_concurrency` workers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::super::admission::{AdmissionRequest, Decision};
use super::super::context::OperationContext;
use super::super::options::DeferPolicy;
use super::super::queue::{Job, PopCx, Queue};
use super::super::snapshot::{CancelReason, OperationState};
use super::inner::{Core, Shared};

/// A popped job and the token of its operation.
type Taken<T, Q> = (Job<T, <Q as Queue<T>>::Route>, CancellationToken);

enum Outcome<R> {
    Ok(R),
    Err(Arc<str>),
    Panic(Arc<str>),
    Aborted,
    Refused(CancelReason),
}

pub(crate) async fn run<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: Arc<Shared<T, R, Q>>,
) {
    let mut next: Option<Taken<T, Q>> = None;
    loop {
        let taken = match next.take() {
            Some(taken) => taken,
            None => match next_job(&shared).await {
                Some(taken) => taken,
                None => return,
            },
        };
        next = process(&shared, taken).await;
    }
}

/// Waits for a job this worker may start; `None` when the worker should exit.
async fn next_job<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
) -> Option<Taken<T, Q>> {
    loop {
        let notified = shared.work.notified();
        let mut notified = std::pin::pin!(notified);
        {
            let mut core = shared.lock();
            if core.workers > core.limit {
                core.workers -= 1;
                return None;
            }
            if let Some(taken) = try_pop(shared, &mut core) {
                return Some(taken);
            }
            if core.closed && core.queue.len() == 0 {
                core.workers -= 1;
                return None;
            }
            core.idle += 1;
            // Enabled under the lock: a push or a wake after we release it reaches us.
            notified.as_mut().enable();
        }
        notified.await;
        shared.lock().idle -= 1;
    }
}

/// Takes the next startable job, if the limits, the pause and the defer rule allow.
pub(crate) fn try_pop<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    core: &mut Core<T, R, Q>,
) -> Option<Taken<T, Q>> {
    if core.paused || core.running >= core.limit || core.queue.len() == 0 {
        return None;
    }
    let now = Instant::now();
    let mut held = shared.rules.defer_on.is_some() && shared.refresh_deferral(core, now);
    if core.defer_since.is_some() && core.overdue == 0 {
        if held && shared.rules.max_defer.is_some() {
            shared.steer.notify_one();
        }
        return None;
    }
    let mut cx = PopCx {
        sink: &shared.ctx.sink,
        now,
        global: core.defer_since.is_some(),
        held: false,
    };
    let job = core.queue.pop(&mut cx);
    held |= cx.held;
    if held && shared.rules.max_defer.is_some() {
        shared.steer.notify_one();
    }
    let job = job?;
    if core.overdue > 0 {
        core.overdue -= usize::from(job.is_overdue());
    }
    core.running += 1;
    core.peak = core.peak.max(core.running as u64);
    shared.room.add_permits(1);
    // See `Shared::shutdown` for why this is not a child of `root`.
    let token = CancellationToken::new();
    if let Some(record) = core.window.records.get_mut(&job.id) {
        record.state = OperationState::Running;
        record.started = Some(now);
        record.token = Some(token.clone());
    }
    Some((job, token))
}

/// Admits and runs one job, files its outcome, and returns the next job if one can start.
async fn process<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    (job, token): Taken<T, Q>,
) -> Option<Taken<T, Q>> {
    let id = job.id;
    if let Some(reason) = refusal(shared, &job) {
        return finish(shared, id, &job.route, &token, Outcome::Refused(reason));
    }
    if !shared.hooks.is_empty() {
        let request = AdmissionRequest {
            id,
            key: job.key.clone(),
        };
        for hook in &shared.hooks {
            match hook.admit(&request).await {
                Decision::Admit => {}
                Decision::Cancel(reason) => {
                    let reason = CancelReason::Admission(reason);
                    return finish(shared, id, &job.route, &token, Outcome::Refused(reason));
                }
                // Past `max_defer` under `DeferPolicy::Run`: a hook's `Defer` no longer holds it.
                Decision::Defer(_) if job.is_overdue() => {}
                Decision::Defer(until) => {
                    park(shared, job, until);
                    let mut core = shared.lock();
                    return try_pop(shared, &mut core);
                }
            }
        }
    }
    let Job {
        item, route, key, ..
    } = job;
    let span = tracing::debug_span!(
        "operation",
        coordinator = %shared.rules.name,
        id = %id,
        key = key.as_deref(),
        outcome = tracing::field::Empty,
    );
    let ctx = OperationContext {
        id,
        key,
        token: token.clone(),
        shared: shared.ctx.clone(),
    };
    let body = &shared.body;
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| body(item, ctx))) {
        Err(panic) => Outcome::Panic(panic_message(&*panic)),
        Ok(future) => {
            let guarded = AssertUnwindSafe(future)
                .catch_unwind()
                .instrument(span.clone());
            let grace = shared.rules.abort_grace;
            tokio::select! {
                biased;
                result = guarded => match result {
                    Ok(Ok(value)) => Outcome::Ok(value),
                    Ok(Err(message)) => Outcome::Err(message),
                    Err(panic) => Outcome::Panic(panic_message(&*panic)),
                },
                () = async {
                    token.cancelled().await;
                    tokio::time::sleep(grace).await;
                } => Outcome::Aborted,
            }
        }
    };
    match &outcome {
        Outcome::Ok(_) => span.record("outcome", "completed"),
        Outcome::Err(message) => {
            span.in_scope(|| tracing::warn!(error = %message, "operation failed"));
            span.record("outcome", "failed")
        }
        Outcome::Panic(message) => {
            span.in_scope(|| tracing::error!(panic = %message, "operation panicked"));
            span.record("outcome", "panicked")
        }
        Outcome::Aborted | Outcome::Refused(_) => span.record("outcome", "cancelled"),
    };
    finish(shared, id, &route, &token, outcome)
}

/// Why the built-in rules refuse a job at admission, if they do.
fn refusal<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Shared<T, R, Q>,
    job: &Job<T, Q::Route>,
) -> Option<CancelReason> {
    if shared.root.is_cancelled() {
        return Some(CancelReason::Shutdown);
    }
    if let Some(name) = &job.cancel {
        return Some(CancelReason::Signal(name.clone()));
    }
    let pattern = shared.rules.cancel_on.as_ref()?;
    let signal = shared.ctx.sink.latest(pattern.as_str())?;
    Some(CancelReason::Signal(signal.name().clone()))
}

/// How a parked job's wait ended.
enum Unparked {
    /// The hook's future completed: ask again.
    Woken,
    /// The coordinator was cancelled.
    Shutdown,
    /// `max_defer` passed since the job was first held back.
    Overdue,
}

/// Puts a job aside, holding no slot, until `until` completes (or `max_defer` passes); then
/// it is first in line again.
fn park<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    mut job: Job<T, Q::Route>,
    until: futures::future::BoxFuture<'static, ()>,
) {
    let now = Instant::now();
    job.hold(now);
    let deadline = shared
        .rules
        .max_defer
        .and_then(|max| job.defer_deadline(max));
    {
        let mut core = shared.lock();
        core.running -= 1;
        core.parked += 1;
        if let Some(record) = core.window.records.get_mut(&job.id) {
            record.state = OperationState::Pending;
            record.started = None;
            record.token = None;
            record.parked = true;
        }
    }
    let task = shared.clone();
    shared.runtime.spawn(async move {
        let shared = task;
        let unparked = tokio::select! {
            () = until => Unparked::Woken,
            () = shared.root.cancelled() => Unparked::Shutdown,
            () = super::steer::sleep_until(deadline) => Unparked::Overdue,
        };
        let now = Instant::now();
        job.unhold(now);
        let mut core = shared.lock();
        core.parked -= 1;
        if let Some(record) = core.window.records.get_mut(&job.id) {
            record.parked = false;
        }
        let ends = match unparked {
            _ if core.cancelled => Some(CancelReason::Shutdown),
            Unparked::Shutdown => Some(CancelReason::Shutdown),
            Unparked::Overdue if shared.rules.defer_policy == DeferPolicy::Cancel => {
                Some(CancelReason::DeferTimeout)
            }
            Unparked::Overdue => {
                job.set_overdue();
                None
            }
            Unparked::Woken => None,
        };
        if let Some(reason) = ends {
            core.queue.finished(&job.route);
            let state = OperationState::Cancelled(reason);
            shared.settle(&mut core, job.id, now, state);
            shared.check_done(&mut core);
            let owed = core.owed();
            drop(core);
            shared.notify_finished();
            shared.deliver(owed);
        } else {
            core.overdue += usize::from(job.is_overdue());
            if core.defer_since.is_some() {
                job.hold(now);
            }
            core.queue.requeue(job);
            shared.wake_all(core);
        }
    });
}

/// Files an outcome and, under the same lock, takes the next job if one can start.
fn finish<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    shared: &Arc<Shared<T, R, Q>>,
    id: crate::OperationId,
    route: &Q::Route,
    token: &CancellationToken,
    outcome: Outcome<R>,
) -> Option<Taken<T, Q>> {
    let now = Instant::now();
    let mut core = shared.lock();
    core.running -= 1;
    core.queue.finished(route);
    let requested = core
        .window
        .records
        .get_mut(&id)
        .and_then(|r| r.cancel_requested.take());
    let state = match outcome {
        Outcome::Ok(value) => {
            if let Some(record) = core.window.records.get_mut(&id) {
                record.result = Some(value);
            }
            OperationState::Completed
        }
        Outcome::Err(message) if token.is_cancelled() => {
            let _ = message;
            OperationState::Cancelled(requested.unwrap_or(CancelReason::Shutdown))
        }
        Outcome::Err(message) => {
            if let Some(record) = core.window.records.get_mut(&id) {
                record.error = Some(message);
            }
            OperationState::Failed
        }
        Outcome::Panic(message) => {
            core.panicked += 1;
            if let Some(record) = core.window.records.get_mut(&id) {
                record.error = Some(message);
                record.panicked = true;
            }
            OperationState::Failed
        }
        Outcome::Aborted => OperationState::Cancelled(CancelReason::Aborted),
        Outcome::Refused(reason) => OperationState::Cancelled(reason),
    };
    shared.settle(&mut core, id, now, state);
    let next = if core.workers > core.limit {
        None
    } else {
        try_pop(shared, &mut core)
    };
    shared.check_done(&mut core);
    let owed = core.owed();
    drop(core);
    shared.notify_finished();
    shared.deliver(owed);
    next
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = panic.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("panic with a non-string payload")
    }
}
