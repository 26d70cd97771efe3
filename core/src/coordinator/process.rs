//! The one-shot helpers: run a body over a collection or a stream with bounded concurrency
//! (optionally per-key ordered, optionally cancellable) and get a [`Summary`].

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::OperationContext;
use super::error::{CoordinatorError, IntakeError};
use super::keyed::EphemeralKeyedWorkCoordinator;
use super::options::EphemeralOptions;
use super::snapshot::{CancelReason, CoordinatorStats, OperationSnapshot, OperationState};
use super::work::EphemeralWorkCoordinator;
use crate::OperationId;
use crate::sync::{Mutex, lock};

/// What [`process_all`] and its siblings did.
///
/// The counts are exact. `failures` holds the failures still in the window (the last 200
/// finished operations, the default `max_tracked`), so a long run's memory stays bounded;
/// `cancellations` holds every cancellation (only an interruption cancels, and it cancels at
/// most the waiting and running items: `max_pending` + `concurrency`).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Items accepted (every item of the input, unless the run was interrupted or the
    /// intake failed).
    pub total: u64,
    /// Bodies that returned `Ok`.
    pub completed: u64,
    /// Bodies that failed (errors and panics).
    pub failed: u64,
    /// Items cancelled.
    pub cancelled: u64,
    /// The failures still in the window, oldest first.
    pub failures: Vec<(OperationId, super::OperationError)>,
    /// Every cancelled item, in the order it ended, with the reason: after a
    /// [`process_all_with_cancel`] token fired, the items that were waiting
    /// (`Cancelled(Shutdown)`) and the running bodies that stopped on their token.
    pub cancellations: Vec<(OperationId, CancelReason)>,
    /// Whether the cancellation token fired before every item ended: the input was not read
    /// further, waiting items were cancelled and running bodies were asked to stop.
    pub interrupted: bool,
    /// The intake stream's error, if it failed.
    pub intake_error: Option<IntakeError>,
}

impl Summary {
    fn new(
        stats: CoordinatorStats,
        failed: Vec<OperationSnapshot>,
        cancellations: &Cancellations,
        intake_error: Option<IntakeError>,
        interrupted: bool,
    ) -> Self {
        Self {
            total: stats.accepted,
            completed: stats.completed,
            failed: stats.failed,
            cancelled: stats.cancelled,
            failures: failed
                .into_iter()
                .map(|s| {
                    let error = s
                        .error
                        .unwrap_or_else(|| super::OperationError::from_message("unknown error"));
                    (s.id, error)
                })
                .collect(),
            cancellations: std::mem::take(&mut lock(cancellations)),
            interrupted,
            intake_error,
        }
    }
}

/// Runs `body` over every item of `items`, at most `concurrency` at once, and returns a
/// summary once all are done.
///
/// # Errors
///
/// [`CoordinatorError`] for a zero `concurrency` or outside a tokio runtime.
///
/// # Examples
///
/// ```
/// use ephemeral::{OperationContext, process_all};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let summary = process_all(1..=10u32, 4, |n: u32, _ctx: OperationContext| async move {
///     if n % 5 == 0 { Err(format!("{n} is a multiple of 5")) } else { Ok(()) }
/// })
/// .await?;
/// assert_eq!((summary.completed, summary.failed), (8, 2));
/// # Ok(())
/// # }
/// ```
pub async fn process_all<T, I, F, Fut, E>(
    items: I,
    concurrency: usize,
    body: F,
) -> Result<Summary, CoordinatorError>
where
    T: Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    process_stream(futures::stream::iter(items), concurrency, body).await
}

/// [`process_all`] over a stream.
///
/// # Errors
///
/// As [`process_all`].
pub async fn process_stream<T, S, F, Fut, E>(
    stream: S,
    concurrency: usize,
    body: F,
) -> Result<Summary, CoordinatorError>
where
    T: Send + 'static,
    S: futures::Stream<Item = T> + Send + 'static,
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    process_stream_with_cancel(stream, concurrency, CancellationToken::new(), body).await
}

/// [`process_all`] that stops when `token` is cancelled: the rest of the input is not read,
/// waiting items end `Cancelled(Shutdown)`, running bodies are cancelled through their
/// tokens (one that ignores its token is dropped after the 5 s grace period and recorded
/// `Cancelled(Aborted)`), and the summary says so ([`Summary::interrupted`],
/// [`Summary::cancellations`]).
///
/// # Errors
///
/// As [`process_all`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::{OperationContext, process_all_with_cancel};
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let token = CancellationToken::new();
/// let stop = token.clone();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_millis(250)).await;
///     stop.cancel(); // say, Ctrl-C
/// });
/// let summary = process_all_with_cancel(0..10u32, 2, token, |_: u32, ctx: OperationContext| async move {
///     tokio::select! {
///         () = tokio::time::sleep(Duration::from_millis(100)) => Ok(()),
///         () = ctx.token().cancelled() => Err("stopped"),
///     }
/// })
/// .await?;
/// assert!(summary.interrupted);
/// assert_eq!(summary.completed, 4); // two rounds of two finished by 200 ms
/// assert_eq!(summary.cancelled, summary.total - 4);
/// assert_eq!(summary.cancellations.len() as u64, summary.cancelled);
/// # Ok(())
/// # }
/// ```
pub async fn process_all_with_cancel<T, I, F, Fut, E>(
    items: I,
    concurrency: usize,
    token: CancellationToken,
    body: F,
) -> Result<Summary, CoordinatorError>
where
    T: Send + 'static,
    I: IntoIterator<Item = T>,
    I::IntoIter: Send + 'static,
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    process_stream_with_cancel(futures::stream::iter(items), concurrency, token, body).await
}

/// [`process_all_with_cancel`] over a stream.
///
/// # Errors
///
/// As [`process_all`].
pub async fn process_stream_with_cancel<T, S, F, Fut, E>(
    stream: S,
    concurrency: usize,
    token: CancellationToken,
    body: F,
) -> Result<Summary, CoordinatorError>
where
    T: Send + 'static,
    S: futures::Stream<Item = T> + Send + 'static,
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    let cancellations = Cancellations::default();
    let coordinator = EphemeralWorkCoordinator::new(body, options(concurrency, &cancellations))?;
    coordinator.intake(stream);
    let (intake_error, interrupted) = tokio::select! {
        biased;
        drained = coordinator.drain() => (drained.err(), false),
        () = token.cancelled() => {
            coordinator.cancel();
            (coordinator.drain().await.err(), true)
        }
    };
    Ok(Summary::new(
        coordinator.stats(),
        coordinator.failed(),
        &cancellations,
        intake_error,
        interrupted,
    ))
}

/// Runs `body` over `(key, item)` pairs (the body gets the pair): items of one key strictly
/// in order, one at a time,
/// at most `concurrency` bodies overall, and a busy key never holds back the others (the
/// [`EphemeralKeyedWorkCoordinator`]'s rules). Returns a summary once all are done.
///
/// # Errors
///
/// As [`process_all`].
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ephemeral::{OperationContext, process_keyed};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ledger = Arc::new(Mutex::new(Vec::new()));
/// let seen = ledger.clone();
/// let moves = [("alice", 10), ("bob", 5), ("alice", -3), ("alice", 7)];
/// let summary = process_keyed(moves, 4, move |(account, amount): (&str, i32), _ctx: OperationContext| {
///     let seen = seen.clone();
///     async move {
///         seen.lock().unwrap().push((account, amount));
///         Ok::<_, std::convert::Infallible>(())
///     }
/// })
/// .await?;
/// assert_eq!(summary.completed, 4);
/// let alice: Vec<i32> = ledger.lock().unwrap().iter()
///     .filter(|(a, _)| *a == "alice").map(|(_, n)| *n).collect();
/// assert_eq!(alice, [10, -3, 7]); // per-key order
/// # Ok(())
/// # }
/// ```
pub async fn process_keyed<K, T, I, F, Fut, E>(
    items: I,
    concurrency: usize,
    body: F,
) -> Result<Summary, CoordinatorError>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
    I: IntoIterator<Item = (K, T)>,
    I::IntoIter: Send + 'static,
    F: Fn((K, T), OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    use futures::StreamExt;
    let cancellations = Cancellations::default();
    let coordinator =
        EphemeralKeyedWorkCoordinator::new(body, options(concurrency, &cancellations))?;
    let pairs = futures::stream::iter(items).map(|(key, item): (K, T)| (key.clone(), (key, item)));
    coordinator.intake(pairs);
    let intake_error = coordinator.drain().await.err();
    Ok(Summary::new(
        coordinator.stats(),
        coordinator.failed(),
        &cancellations,
        intake_error,
        false,
    ))
}

/// The cancellations of one run, collected as they happen.
type Cancellations = Arc<Mutex<Vec<(OperationId, CancelReason)>>>;

fn options(concurrency: usize, cancellations: &Cancellations) -> EphemeralOptions {
    let cancellations = cancellations.clone();
    EphemeralOptions::default()
        .max_concurrency(concurrency)
        .name("process_all")
        .on_finalized(move |op| {
            if let OperationState::Cancelled(reason) = &op.state {
                lock(&cancellations).push((op.id, reason.clone()));
            }
        })
}
