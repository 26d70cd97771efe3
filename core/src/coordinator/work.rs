//! `EphemeralWorkCoordinator<T>`: bounded, tracked, signal-steered work in FIFO order.

use std::fmt;
use std::sync::Arc;

use super::admission::Admission;
use super::context::OperationContext;
use super::engine::Reserved;
use super::engine::{Engine, enqueue_each, user_body};
use super::error::{CoordinatorError, EnqueueError, EnqueueManyError};
use super::methods::coordinator_methods;
use super::options::EphemeralOptions;
use super::queue::Fifo;
use crate::OperationId;

/// Runs an async body on every enqueued item, at most `max_concurrency` at once, starting
/// them in the order they were accepted, and keeps every operation in a bounded window.
///
/// * **Intake.** At most `max_pending` (1024) items wait to start: [`enqueue`](Self::enqueue)
///   waits for room, [`try_enqueue`](Self::try_enqueue) gives the item back at once, and
///   [`reserve`](Self::reserve) holds room so an enqueue inside `select!` loses nothing.
/// * **Tracking.** Every accepted item ends in exactly one terminal state and stays visible
///   until evicted: at most `max_tracked` (200) finished operations are kept, each for at most
///   `max_lifetime` (5 min) after it finished; pending and running ones are never evicted.
/// * **Signals.** The body raises signals through its [`OperationContext`]; the
///   `cancel_on`, `defer_on`, `resume_on`, `cancel_running_on`, `clear_on` and drain rules
///   read the same sink.
/// * **Workers.** At most `max_concurrency` long-lived worker tasks; there is no task per item.
///
/// Where a plain `JoinSet` or a `Semaphore` plus `spawn` would do (no tracking, no signals,
/// no bounded intake), use those: they are simpler.
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let coordinator = EphemeralWorkCoordinator::new(
///     |order: u32, ctx: OperationContext| async move {
///         if order == 13 {
///             ctx.signal("error.payment").map_err(|e| e.to_string())?;
///             return Err("card declined".to_string());
///         }
///         Ok(())
///     },
///     EphemeralOptions::default().max_concurrency(8).signals(sink.clone()),
/// )?;
/// for order in 10..15 {
///     coordinator.enqueue(order).await?;
/// }
/// coordinator.drain().await?;
///
/// assert!(sink.has_signal("error.*"));
/// let stats = coordinator.stats();
/// assert_eq!((stats.completed, stats.failed), (4, 1));
/// assert_eq!(coordinator.failed()[0].error.as_deref(), Some("card declined"));
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle shuts the coordinator down (pending items are cancelled)"]
pub struct EphemeralWorkCoordinator<T: Send + 'static> {
    engine: Engine<T, (), Fifo<T>>,
}

impl<T: Send + 'static> EphemeralWorkCoordinator<T> {
    /// The engine, for other views of this coordinator (its `tower` service).
    #[cfg(feature = "tower")]
    pub(super) fn engine(&self) -> &Engine<T, (), Fifo<T>> {
        &self.engine
    }
}

impl<T: Send + 'static> Clone for EphemeralWorkCoordinator<T> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<T: Send + 'static> EphemeralWorkCoordinator<T> {
    /// A coordinator running `body` on every item.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(body: F, options: EphemeralOptions) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::with_admission(body, options, Vec::new())
    }

    /// [`new`](Self::new) with [`Admission`] hooks, asked in order before an item takes a slot.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_admission<F, Fut, E>(
        body: F,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let engine = Engine::new(user_body(body), options, Fifo::new(), hooks, Vec::new())?;
        Ok(Self { engine })
    }

    /// Accepts `item`, waiting while `max_pending` items wait to start.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    pub async fn enqueue(&self, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.engine.enqueue(item, (), None).await
    }

    /// Accepts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] or [`EnqueueError::Closed`], with the item.
    pub fn try_enqueue(&self, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.engine.try_enqueue(item, (), None)
    }

    /// Waits for room for one item and holds it: [`EnqueuePermit::send`] never waits, and
    /// dropping the permit (say, when another `select!` branch won) gives the room back.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] after `complete`, `drain` or `cancel`.
    pub async fn reserve(&self) -> Result<EnqueuePermit<T>, EnqueueError<()>> {
        Ok(EnqueuePermit {
            reserved: self.engine.reserve().await?,
        })
    }

    /// Enqueues every item in order, waiting for room as [`enqueue`](Self::enqueue) does.
    ///
    /// # Errors
    ///
    /// Stops at the first refused item: [`EnqueueManyError`] holds the ids of the items
    /// accepted before it, and gives back the refused item and every item after it.
    pub async fn enqueue_many(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<OperationId>, EnqueueManyError<T>> {
        enqueue_each(items, |item| self.enqueue(item)).await
    }

    /// Feeds `stream` into the coordinator on a task; [`drain`](Self::drain) waits for the
    /// stream to end.
    pub fn intake<S>(&self, stream: S)
    where
        S: futures::Stream<Item = T> + Send + 'static,
    {
        use futures::StreamExt;
        self.engine
            .intake(stream.map(Ok::<T, std::convert::Infallible>), |item| {
                Ok((item, (), None))
            });
    }

    /// Feeds a fallible `stream`; the first error stops it and is returned by
    /// [`drain`](Self::drain).
    pub fn intake_results<S, E>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<T, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.engine.intake(stream, |item| Ok((item, (), None)));
    }

    coordinator_methods!();
}

impl<T: Send + 'static> fmt::Debug for EphemeralWorkCoordinator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.engine, f)
    }
}

/// Room for one item, reserved by [`EphemeralWorkCoordinator::reserve`] or
/// [`EphemeralResultCoordinator::reserve`](super::EphemeralResultCoordinator::reserve)
/// (`R` is the result type).
#[must_use = "dropping the permit gives the room back"]
pub struct EnqueuePermit<T: Send + 'static, R: Send + 'static = ()> {
    pub(crate) reserved: Reserved<T, R, Fifo<T>>,
}

impl<T: Send + 'static, R: Send + 'static> EnqueuePermit<T, R> {
    /// Accepts `item` into the reserved room.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] if the coordinator stopped taking items meanwhile
    /// (`complete`, `drain` or `cancel`; the permit's room is then given back).
    pub fn send(self, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.reserved.send(item, (), None)
    }
}

impl<T: Send + 'static, R: Send + 'static> fmt::Debug for EnqueuePermit<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnqueuePermit")
    }
}
