//! A worker: a long-lived task that takes jobs, admits them, runs bodies and files outcomes.
//! There is no task per item; a coordinator has at most `max_concurrency` workers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::time::Instant;

use super::super::admission::{AdmissionRequest, Decision};
use super::super::context::OperationContext;
use super::super::key_label::KeyLabel;
use super::super::options::DeferPolicy;
use super::super::queue::{Job, Queue};
use super::super::snapshot::CancelReason;
use super::body::{Body, Running, panic_message};
use super::inner::{Inner, SpawnWorker, sleep_until};
use super::mailbox::Mailbox;
use super::slot::Slot;
use super::state::{Ended, Next, Outcome, Taken, Unstarted};
use crate::OperationId;

/// What spawns one worker task running `body` on the coordinator's runtime: the body's type
/// is known here, and erased in the returned function (see `body.rs`).
pub(crate) fn spawner<T: Send + 'static, R: Send + 'static, Q: Queue<T>, B: Body<T, R>>(
    body: B,
) -> SpawnWorker<T, R, Q> {
    let body = Arc::new(body);
    Box::new(move |inner| {
        let gone = RuntimeGone(Some(inner.clone()));
        let (worker, body) = (inner.clone(), body.clone());
        inner.runtime.spawn(async move {
            let mut gone = gone;
            run(worker, body).await;
            gone.0 = None;
        });
    })
}

/// A worker's task, dropped before its worker returned: its runtime shut down under it, or
/// was gone already when it was spawned (a coordinator used from another runtime after its
/// own ended). The coordinator can run nothing any more, so it is shut down as by
/// `cancel()`: what is queued ends `Cancelled(Shutdown)` and every later enqueue fails,
/// instead of items accepted and left pending for good (a `drain` that never returns).
struct RuntimeGone<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(Option<Arc<Inner<T, R, Q>>>);

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for RuntimeGone<T, R, Q> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.shutdown();
        }
    }
}

async fn run<T: Send + 'static, R: Send + 'static, Q: Queue<T>, B: Body<T, R>>(
    inner: Arc<Inner<T, R, Q>>,
    body: Arc<B>,
) {
    let mut slot = Arc::new(Slot::new(inner.ctx.clone()));
    let mailbox = Arc::new(Mailbox::new());
    inner.update(|core, _| core.register(slot.clone()));
    let mut taken: Option<Taken<T, Q>> = None;
    let mut woke = false;
    loop {
        let next = match taken.take() {
            Some(job) => process(&inner, &*body, &mut slot, &mailbox, job).await,
            None => look(&inner, &slot, &mailbox, std::mem::take(&mut woke)),
        };
        match next {
            Next::Start(job) => taken = Some(job),
            // On the idle list since that section: woken once, with a job started for it
            // (no lock to take to find it) or with none (it looks under the lock).
            Next::Wait => match mailbox.wait().await {
                Some(job) => taken = Some(job),
                None => woke = true,
            },
            Next::Exit => return,
        }
    }
}

/// One critical section: counts the worker awake again after a wake-up with no job
/// (`woke`), then starts a job, or waits (on the idle list, so an accept or a wake after the
/// unlock reaches it), or exits.
fn look<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    slot: &Arc<Slot>,
    mailbox: &Arc<Mailbox<Taken<T, Q>>>,
    woke: bool,
) -> Next<T, Q> {
    let now = Instant::now();
    inner.update(|core, fx| {
        if woke {
            core.woke();
        }
        core.next_for_worker(fx, &inner.ctx.sink, slot, mailbox, now)
    })
}

/// Admits and runs one job, files its outcome, and says under the same lock what the worker
/// does next (see [`look`]).
async fn process<T: Send + 'static, R: Send + 'static, Q: Queue<T>, B: Body<T, R>>(
    inner: &Arc<Inner<T, R, Q>>,
    body: &B,
    slot: &mut Arc<Slot>,
    mailbox: &Arc<Mailbox<Taken<T, Q>>>,
    job: Taken<T, Q>,
) -> Next<T, Q> {
    let id = job.id;
    // With admission hooks the job still holds its room among `max_pending` (see
    // `Core::try_start`): given back here once it is no longer waiting to start, and kept
    // while a hook's `Defer` puts it aside, where it still counts as pending.
    let hooked = !inner.hooks.is_empty();
    if let Some(reason) = refusal(inner, &job) {
        if hooked {
            inner.room.add_permits(1);
        }
        let outcome = Outcome::Refused(reason);
        let span = job.span.as_deref();
        return finish(inner, slot, mailbox, None, id, &job.route, outcome, span);
    }
    if hooked {
        let key = job.key.as_ref();
        let verdict = admission(inner, slot, id, key, job.is_overdue()).await;
        if !matches!(verdict, Verdict::Decided(Decision::Defer(_))) {
            inner.room.add_permits(1);
        }
        let outcome = match verdict {
            Verdict::Decided(Decision::Admit) => None,
            Verdict::Decided(Decision::Cancel(reason)) => {
                Some(Outcome::Refused(CancelReason::Admission(reason)))
            }
            Verdict::Decided(Decision::Defer(until)) => {
                park(inner, slot, job, until);
                return look(inner, slot, mailbox, false);
            }
            Verdict::Panicked(message) => Some(Outcome::Panic(message)),
            Verdict::Cancelled => Some(Outcome::Unstarted),
        };
        if let Some(outcome) = outcome {
            let span = job.span.as_deref();
            return finish(inner, slot, mailbox, None, id, &job.route, outcome, span);
        }
    }
    let Job {
        item,
        route,
        key,
        span,
        ..
    } = job;
    let span = span.map_or_else(
        || operation_span(&inner.rules.name, id, key.as_ref()),
        |s| *s,
    );
    let ctx = OperationContext {
        id,
        key,
        key_text: std::sync::OnceLock::new(),
        token: std::sync::OnceLock::new(),
        slot: slot.clone(),
    };
    // A span no subscriber wants is neither entered on every poll nor filled in at the end.
    let wanted = (!span.is_disabled()).then_some(&span);
    let unfiled = Unfiled {
        inner,
        slot: &*slot,
        id,
    };
    let start = || crate::current::sync_scope(id, || body.call(item, ctx));
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(start)) {
        Err(panic) => Outcome::Panic(panic_message(&*panic)),
        Ok(future) => {
            let guarded = std::pin::pin!(Running::new(future, id, wanted));
            let grace = inner.rules.abort_grace;
            tokio::select! {
                biased;
                result = guarded => match result {
                    Ok(Ok(value)) => Outcome::Ok(value),
                    Ok(Err(message)) => Outcome::Err(message),
                    Err(panic) => Outcome::Panic(panic_message(&*panic)),
                },
                () = async {
                    slot.cancelled(id).await;
                    tokio::time::sleep(grace).await;
                } => Outcome::Aborted,
            }
        }
    };
    // Filed below, with its outcome.
    std::mem::forget(unfiled);
    if Arc::strong_count(slot) > 2 {
        // The body's context outlived its future (moved into a spawned task, say): it must
        // keep seeing this operation's cancellation state, never a later operation's, so it
        // keeps this slot and the worker carries on with a fresh one. The count is final
        // here: the future is dropped, and a context is not `Clone`.
        let fresh = Arc::new(Slot::new(inner.ctx.clone()));
        let old = std::mem::replace(slot, fresh);
        return finish(
            inner,
            slot,
            mailbox,
            Some(&old),
            id,
            &route,
            outcome,
            wanted,
        );
    }
    finish(inner, slot, mailbox, None, id, &route, outcome, wanted)
}

/// What the admission hooks made of a taken job.
enum Verdict {
    /// The first decision other than `Admit`, else `Admit`.
    Decided(Decision),
    /// A hook panicked, with this message.
    Panicked(Arc<str>),
    /// The operation was cancelled (explicitly, by a signal or by shutdown) while the hooks
    /// decided: it must not start, whatever they said.
    Cancelled,
}

/// Asks the admission hooks in order about a taken job: the first decision other than
/// `Admit` (a `Defer` of a job past `max_defer` under `DeferPolicy::Run` no longer holds it),
/// else `Admit`. A hook that panics is caught like a panicking body (the worker goes on):
/// the operation ends panicked. The job counts as running meanwhile, so it can be cancelled
/// like a running one: a hook still deciding is then dropped, and the operation ends
/// cancelled at once without starting (a hook that never answers cannot keep it), as does
/// one cancelled while a hook decided. If the worker's task is dropped while a hook
/// decides, the operation is filed as cancelled by shutdown ([`Unfiled`]). A future of its
/// own: with the guard written into `process` itself, the worker's path for items without
/// hooks compiled 48 instructions an item slower (callgrind, `--child coord-loop`).
async fn admission<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    slot: &Slot,
    id: OperationId,
    key: Option<&KeyLabel>,
    overdue: bool,
) -> Verdict {
    use futures::FutureExt;
    let request = AdmissionRequest {
        id,
        key: key.map(KeyLabel::text),
    };
    let unfiled = Unfiled { inner, slot, id };
    let mut verdict = Verdict::Decided(Decision::Admit);
    for hook in &inner.hooks {
        // The call inside the future too: a hook may panic before it returns its future.
        let asked = AssertUnwindSafe(async { hook.admit(&request).await }).catch_unwind();
        let answer = tokio::select! {
            biased;
            () = slot.cancelled(id) => None,
            answer = asked => Some(answer),
        };
        match answer {
            None => {
                verdict = Verdict::Cancelled;
                break;
            }
            Some(Ok(Decision::Admit)) => {}
            Some(Ok(Decision::Defer(_))) if overdue => {}
            Some(Ok(decision)) => {
                verdict = Verdict::Decided(decision);
                break;
            }
            Some(Err(panic)) => {
                let message = panic_message(&*panic);
                verdict =
                    Verdict::Panicked(Arc::from(format!("admission hook panicked: {message}")));
                break;
            }
        }
    }
    // A cancel that came while the last hook answered: the job does not start (nor wait).
    if matches!(
        verdict,
        Verdict::Decided(Decision::Admit | Decision::Defer(_))
    ) && slot.is_cancelled(id)
    {
        verdict = Verdict::Cancelled;
    }
    // Decided: the worker files or parks the job itself.
    std::mem::forget(unfiled);
    verdict
}

/// A running operation whose body (or admission hook) a worker awaits: dropped with the
/// worker's task before the outcome is known (the runtime shut down under it), it files the
/// operation as cancelled by shutdown ([`Core::abandon`](super::state::Core::abandon)), so
/// the item still ends in a terminal state, and a waiting result is answered, instead of
/// staying `Running` for good. Forgotten once the outcome is known: the worker files that.
struct Unfiled<'a, T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    inner: &'a Arc<Inner<T, R, Q>>,
    slot: &'a Slot,
    id: OperationId,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for Unfiled<'_, T, R, Q> {
    fn drop(&mut self) {
        let now = Instant::now();
        self.inner
            .update(|core, _| core.abandon(self.id, self.slot, now));
    }
}

/// Reports on its span how a filed operation ended: the `outcome` field, and an event for a
/// failure or a panic.
fn trace_end(span: &tracing::Span, ended: &Ended) {
    let outcome = match ended {
        Ended::Completed => "completed",
        Ended::Failed(error) => {
            span.in_scope(|| tracing::warn!(error = %error, "operation failed"));
            "failed"
        }
        Ended::Panicked(message) => {
            span.in_scope(|| tracing::error!(panic = %message, "operation panicked"));
            "panicked"
        }
        Ended::Cancelled => "cancelled",
    };
    span.record("outcome", outcome);
}

/// An operation's `debug` span: a root (the worker's spans are not its parents), filled in
/// with its outcome when it ends.
pub(crate) fn operation_span(
    coordinator: &str,
    id: OperationId,
    key: Option<&KeyLabel>,
) -> tracing::Span {
    tracing::debug_span!(
        parent: None,
        "operation",
        coordinator = %coordinator,
        id = %id,
        key = key.map(tracing::field::display),
        outcome = tracing::field::Empty,
    )
}

/// Why the built-in rules refuse a job at admission, if they do.
fn refusal<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Inner<T, R, Q>,
    job: &Job<T, Q::Route>,
) -> Option<CancelReason> {
    if inner.is_shut_down() {
        return Some(CancelReason::Shutdown);
    }
    if let Some(name) = &job.cancel {
        return Some(CancelReason::Signal(name.clone()));
    }
    let pattern = inner.rules.cancel_on.as_ref()?;
    let signal = inner.ctx.sink.latest(pattern.as_str())?;
    Some(CancelReason::Signal(signal.name().clone()))
}

/// How a parked job's wait ended.
enum Unparked {
    /// The hook's future completed: ask again.
    Woken,
    /// The hook's future panicked (the message): the item ends panicked.
    Panicked(Arc<str>),
    /// The coordinator was cancelled.
    Shutdown,
    /// Its deferrals reached `max_defer`.
    Overdue,
    /// Cancelled by `cancel_operation` (the core keeps the reason).
    Cancelled,
}

/// Puts a job aside, holding no slot, until `until` completes (or `max_defer` is reached);
/// then it is first in line again.
fn park<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    slot: &Slot,
    mut job: Job<T, Q::Route>,
    until: futures::future::BoxFuture<'static, ()>,
) {
    job.hold(Instant::now());
    let (cancel, cancelled) = tokio::sync::oneshot::channel();
    let (max_defer, policy) = {
        let id = job.id;
        inner.update(|core, _| {
            core.park(id, &job.route, slot, cancel);
            let rules = core.defer_rules();
            (rules.max_defer, rules.policy)
        })
    };
    let deadline = max_defer.and_then(|max| job.defer_deadline(max));
    let mut parked = Parked {
        inner: inner.clone(),
        job: Some(job),
    };
    inner.runtime.spawn(async move {
        let inner = parked.inner.clone();
        // Caught as a hook's own panic is (see `admission`): the item ends panicked.
        let until = futures::FutureExt::catch_unwind(AssertUnwindSafe(until));
        let unparked = tokio::select! {
            waited = until => match waited {
                Ok(()) => Unparked::Woken,
                Err(panic) => Unparked::Panicked(Arc::from(format!(
                    "admission hook's deferral panicked: {}",
                    panic_message(&*panic)
                ))),
            },
            () = inner.root.cancelled() => Unparked::Shutdown,
            () = sleep_until(deadline) => Unparked::Overdue,
            // A sender dropped unsent (the wait ended another way) cancels nothing.
            Ok(()) = cancelled => Unparked::Cancelled,
        };
        let Some(mut job) = parked.job.take() else {
            return;
        };
        let now = Instant::now();
        job.unhold(now);
        let ends = match unparked {
            Unparked::Woken => None,
            Unparked::Panicked(message) => Some(Unstarted::Panicked(message)),
            Unparked::Shutdown => Some(Unstarted::Cancelled(CancelReason::Shutdown)),
            // `unpark` ends it with the reason `cancel_operation` left.
            Unparked::Cancelled => None,
            Unparked::Overdue if policy == DeferPolicy::Cancel => {
                Some(Unstarted::Cancelled(CancelReason::DeferTimeout))
            }
            Unparked::Overdue => {
                job.set_overdue();
                None
            }
        };
        inner.update(|core, fx| core.unpark(fx, job, ends, now));
    });
}

/// A parked job in its waiting task: dropped with the task before its wait ended (the
/// runtime shut down under it), it ends the job cancelled by shutdown, as
/// [`Unfiled`] does for a running one, instead of leaving it deferred for good.
struct Parked<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    inner: Arc<Inner<T, R, Q>>,
    job: Option<Job<T, Q::Route>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for Parked<T, R, Q> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let now = Instant::now();
            let ends = Some(Unstarted::Cancelled(CancelReason::Shutdown));
            self.inner
                .update(|core, fx| core.unpark(fx, job, ends, now));
        }
    }
}

/// Files an outcome and, under the same lock, decides what the worker does next: the next
/// job if one can start, else a wait (or an exit), with no second section for it. `retired`
/// is the slot the operation ran in when its context outlived the body (`slot` is then the
/// fresh one the worker carries on with). How it ended is then reported on `span` (`None`
/// when no subscriber wants it).
#[allow(clippy::too_many_arguments)]
fn finish<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(
    inner: &Arc<Inner<T, R, Q>>,
    slot: &Arc<Slot>,
    mailbox: &Arc<Mailbox<Taken<T, Q>>>,
    retired: Option<&Arc<Slot>>,
    id: crate::OperationId,
    route: &Q::Route,
    outcome: Outcome<R>,
    span: Option<&tracing::Span>,
) -> Next<T, Q> {
    let now = Instant::now();
    let (ended, next) = inner.update(|core, fx| {
        // The slot is read under the lock, which every cancel holds while it marks slots.
        let ended = core.finish(id, route, outcome, retired.unwrap_or(slot), now);
        if let Some(old) = retired {
            core.replace_slot(old, slot.clone());
        }
        (
            ended,
            core.next_for_worker(fx, &inner.ctx.sink, slot, mailbox, now),
        )
    });
    if let Some(span) = span {
        trace_end(span, &ended);
    }
    next
}
