//! `process_all`: run a body over a collection or a stream with bounded concurrency.

use std::fmt;
use std::sync::Arc;

use super::context::OperationContext;
use super::error::{CoordinatorError, IntakeError};
use super::options::EphemeralOptions;
use super::work::EphemeralWorkCoordinator;
use crate::OperationId;

/// What [`process_all`] / [`process_stream`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Summary {
    /// Items processed.
    pub total: u64,
    /// Bodies that returned `Ok`.
    pub completed: u64,
    /// Bodies that failed (errors and panics).
    pub failed: u64,
    /// Items cancelled.
    pub cancelled: u64,
    /// The failures still in the window (at most `max_tracked`), oldest first.
    pub failures: Vec<(OperationId, Arc<str>)>,
    /// The intake stream's error, if it failed.
    pub intake_error: Option<IntakeError>,
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
    E: fmt::Display,
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
    E: fmt::Display,
{
    let coordinator = EphemeralWorkCoordinator::new(
        body,
        EphemeralOptions::default()
            .max_concurrency(concurrency)
            .name("process_all"),
    )?;
    coordinator.intake(stream);
    let intake_error = coordinator.drain().await.err();
    let stats = coordinator.stats();
    Ok(Summary {
        total: stats.accepted,
        completed: stats.completed,
        failed: stats.failed,
        cancelled: stats.cancelled,
        failures: coordinator
            .failed()
            .into_iter()
            .map(|s| (s.id, s.error.unwrap_or_else(|| Arc::from("unknown error"))))
            .collect(),
        intake_error,
    })
}
