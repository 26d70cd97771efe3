//! `EphemeralResultCoordinator<T, R>`: a work coordinator that keeps each body's result.

use std::fmt;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::admission::Admission;
use super::context::OperationContext;
use super::engine::{Answerer, Record, Reply};
use super::engine::{Engine, enqueue_each, user_body};
use super::error::{CoordinatorError, EnqueueError, EnqueueManyError, ResultError};
use super::methods::coordinator_methods;
use super::options::EphemeralOptions;
use super::queue::Fifo;
use super::snapshot::OperationState;
use super::work::EnqueuePermit;
use crate::OperationId;

/// A work coordinator whose bodies return a value, kept with the operation in the window.
///
/// [`result`](Self::result) reads it while the operation is tracked;
/// [`wait_for_result`](Self::wait_for_result) waits for it. Results live exactly as long as
/// their operation: evicted by count or age like any other (pin an operation to keep it).
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let squares = EphemeralResultCoordinator::new(
///     |n: u64, _ctx: OperationContext| async move {
///         if n == 0 { Err("zero") } else { Ok(n * n) }
///     },
///     EphemeralOptions::default(),
/// )?;
/// let id = squares.enqueue(12).await?;
/// assert_eq!(squares.wait_for_result(id).await?, 144);
///
/// let zero = squares.enqueue(0).await?;
/// assert!(squares.wait_for_result(zero).await.is_err());
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle shuts the coordinator down (pending items are cancelled)"]
pub struct EphemeralResultCoordinator<T: Send + 'static, R: Send + 'static> {
    engine: Engine<T, R, Fifo<T>>,
}

impl<T: Send + 'static, R: Send + 'static> Clone for EphemeralResultCoordinator<T, R> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

/// The outcome of a finished operation from its record, its value cloned; `None` while it
/// has none.
fn outcome<R: Clone>(id: OperationId, record: &Record<R>) -> Option<Result<R, ResultError>> {
    settled(id, record, record.result.clone())
}

/// [`outcome`] as a waiting caller's answer: the value stays in the record (for `result`,
/// `wait_for_result` and `results`).
pub(super) fn cloned_outcome<R: Clone>(
    id: OperationId,
    record: &mut Record<R>,
) -> Option<Result<R, ResultError>> {
    outcome(id, record)
}

/// A waiting caller's answer that moves the value out of the record: for coordinators whose
/// every result goes to its caller ([`CoordinatorLayer`](super::CoordinatorLayer)'s), so
/// the value need not be `Clone` and is not copied.
#[cfg(feature = "tower")]
pub(super) fn taken_outcome<R>(
    id: OperationId,
    record: &mut Record<R>,
) -> Option<Result<R, ResultError>> {
    let value = record.result.take();
    settled(id, record, value)
}

/// The outcome of a record in `record.state`, a completed one with `value`.
fn settled<R>(
    id: OperationId,
    record: &Record<R>,
    value: Option<R>,
) -> Option<Result<R, ResultError>> {
    match &record.state {
        OperationState::Completed => value.map(Ok),
        OperationState::Failed => Some(Err(ResultError::Failed {
            id,
            message: record
                .error
                .clone()
                .unwrap_or_else(|| super::OperationError::from_message("unknown error")),
        })),
        OperationState::Cancelled(reason) => Some(Err(ResultError::Cancelled {
            id,
            reason: reason.clone(),
        })),
        OperationState::Pending | OperationState::Deferred | OperationState::Running => None,
    }
}

impl<T: Send + 'static, R: Send + 'static> EphemeralResultCoordinator<T, R> {
    /// Cancels `id` because the caller waiting for it went away ([`CancelReason::Abandoned`]).
    #[cfg(feature = "tower")]
    pub(crate) fn abandon(&self, id: crate::OperationId) {
        self.engine.cancel_for(id, super::CancelReason::Abandoned);
    }

    /// The result coordinator over an existing engine (a work coordinator's, with `()`
    /// results): another view of the same coordinator.
    #[cfg(feature = "tower")]
    pub(super) fn from_engine(engine: Engine<T, R, Fifo<T>>) -> Self {
        Self { engine }
    }

    /// The coordinator over `body`, whatever its results: `new` and `with_admission` for
    /// results kept to clone out, and [`CoordinatorLayer`]'s, whose every result is moved to
    /// its caller (see [`taken_outcome`]), so they need not be `Clone`.
    ///
    /// [`CoordinatorLayer`]: super::CoordinatorLayer
    pub(super) fn build<F, Fut, E>(
        body: F,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let engine = Engine::new(user_body(body), options, Fifo::new(), hooks, Vec::new())?;
        Ok(Self { engine })
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> EphemeralResultCoordinator<T, R> {
    /// A coordinator running `body` on every item and keeping its result.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(body: F, options: EphemeralOptions) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::with_admission(body, options, Vec::new())
    }

    /// [`new`](Self::new) with [`Admission`] hooks.
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
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::build(body, options, hooks)
    }
}

impl<T: Send + 'static, R: Send + 'static> EphemeralResultCoordinator<T, R> {
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
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let doubler = EphemeralResultCoordinator::new(
    ///     |n: u32, _ctx: OperationContext| async move { Ok::<_, std::convert::Infallible>(n * 2) },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let permit = doubler.reserve().await?; // the room is held from here on
    /// let id = permit.send(21)?; // never waits
    /// assert_eq!(doubler.wait_for_result(id).await?, 42);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve(&self) -> Result<EnqueuePermit<T, R>, EnqueueError<()>> {
        Ok(EnqueuePermit {
            reserved: self.engine.reserve().await?,
        })
    }

    /// Room for one item now if there is some, without waiting (the tower service's fast path).
    #[cfg(feature = "tower")]
    pub(crate) fn try_reserve(&self) -> Result<Option<EnqueuePermit<T, R>>, EnqueueError<()>> {
        Ok(self
            .engine
            .try_reserve()?
            .map(|reserved| EnqueuePermit { reserved }))
    }

    /// Enqueues every item in order, waiting for room as [`enqueue`](Self::enqueue) does.
    ///
    /// # Errors
    ///
    /// Stops at the first refused item: [`EnqueueManyError`] holds the ids of the items
    /// accepted before it, and gives back the refused item and every item after it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let lengths = EphemeralResultCoordinator::new(
    ///     |word: &'static str, _ctx: OperationContext| async move {
    ///         Ok::<_, std::convert::Infallible>(word.len())
    ///     },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let ids = lengths.enqueue_many(["one", "three"]).await?;
    /// assert_eq!(lengths.wait_for_result(ids[1]).await?, 5);
    ///
    /// lengths.complete();
    /// let refused = lengths.enqueue_many(["four", "five"]).await.unwrap_err();
    /// assert_eq!(refused.into_inner(), ["four", "five"]); // every item comes back
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_many(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<OperationId>, EnqueueManyError<T>> {
        enqueue_each(items, |item| self.enqueue(item)).await
    }

    /// Feeds `stream` into the coordinator on a task; [`drain`](Self::drain) waits for the
    /// stream to end.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let squares = EphemeralResultCoordinator::new(
    ///     |n: u64, _ctx: OperationContext| async move { Ok::<_, std::convert::Infallible>(n * n) },
    ///     EphemeralOptions::default(),
    /// )?;
    /// squares.intake(futures::stream::iter(1..=4u64));
    /// squares.drain().await?;
    /// let values: Vec<u64> = squares.results().into_iter().map(|(_, v)| v).collect();
    /// assert_eq!(values, [1, 4, 9, 16]);
    /// # Ok(())
    /// # }
    /// ```
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

impl<T: Send + 'static, R: Clone + Send + 'static> EphemeralResultCoordinator<T, R> {
    /// The outcome of `id` if it finished and is still tracked; `None` while it is pending
    /// or running, or once it is evicted.
    #[must_use]
    pub fn result(&self, id: OperationId) -> Option<Result<R, ResultError>> {
        self.engine.with_record(id, |r| outcome(id, r)).flatten()
    }

    /// Waits until `id` finishes and returns its value.
    ///
    /// A call made while the operation is pending or running is answered at its finish,
    /// before the window may evict it: it gets the outcome even when the window keeps
    /// nothing (`max_tracked` reached, tracking off), and any number of callers may wait
    /// for one id. A call made after the finish reads the window, so it finds the outcome
    /// only while the operation is tracked: pin it, or use
    /// [`enqueue_for_result`](Self::enqueue_for_result), whose future always gets it.
    ///
    /// # Errors
    ///
    /// [`ResultError::Unknown`] for an id this coordinator does not track when called (never
    /// handed out, or already evicted), [`ResultError::Failed`] or
    /// [`ResultError::Cancelled`] for those outcomes.
    pub async fn wait_for_result(&self, id: OperationId) -> Result<R, ResultError> {
        match self.engine.wait_outcome(id, cloned_outcome::<R>).await {
            Some(Some(result)) => result,
            _ => Err(ResultError::Unknown(id)),
        }
    }

    /// Accepts `item` (waiting for room as [`enqueue`](Self::enqueue) does) and returns the
    /// future of its result, delivered at the finish even if the window evicts the operation
    /// right away (see [`PendingResult`]).
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Tracking off: nothing is kept in the window, yet every caller gets its result.
    /// let squares = EphemeralResultCoordinator::new(
    ///     |n: u64, _ctx: OperationContext| async move { Ok::<_, std::convert::Infallible>(n * n) },
    ///     EphemeralOptions::default().tracking(false),
    /// )?;
    /// let nine = squares.enqueue_for_result(3).await?;
    /// let sixteen = squares.enqueue_for_result(4).await?;
    /// assert_eq!((nine.await?, sixteen.await?), (9, 16));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_for_result(&self, item: T) -> Result<PendingResult<R>, EnqueueError<T>> {
        match self.reserve().await {
            Ok(permit) => permit.send_for_result(item),
            Err(refused) => Err(refused.map(|()| item)),
        }
    }

    /// The values of every tracked successful operation, by id.
    #[must_use]
    pub fn results(&self) -> Vec<(OperationId, R)> {
        self.engine.records(|_, r| match r.state {
            OperationState::Completed => r.result.clone(),
            _ => None,
        })
    }

    /// Tracked successful operations (as [`completed`](Self::completed)).
    #[must_use]
    pub fn successful(&self) -> Vec<super::OperationSnapshot> {
        self.completed()
    }
}

/// The result of one accepted item: a future that resolves when its operation finishes,
/// whether or not the window still holds the operation then.
///
/// Made by [`EphemeralResultCoordinator::enqueue_for_result`] and
/// [`EnqueuePermit::send_for_result`]. The outcome is taken when the operation finishes,
/// under the lock that files it, and handed over right after that lock is released (waking
/// the caller's task is not part of the engine's critical section); a small `max_tracked`,
/// tracking turned off, or a busy window cannot lose it (as it can between
/// [`enqueue`](EphemeralResultCoordinator::enqueue) and a later
/// [`wait_for_result`](EphemeralResultCoordinator::wait_for_result)). Dropping it does not
/// cancel the operation.
///
/// It is fused, as [`futures::future::Fuse`] is: polled again after it gave its result (a
/// `select!` loop over `&mut pending` may), it stays pending and never wakes, rather than
/// panicking, and [`FusedFuture::is_terminated`](futures::future::FusedFuture::is_terminated)
/// says it is done.
#[must_use = "the result is delivered only to this future"]
pub struct PendingResult<R> {
    id: OperationId,
    reply: oneshot::Receiver<Option<Result<R, ResultError>>>,
}

impl<R> PendingResult<R> {
    /// The operation's id (for snapshots, `cancel_operation`, `pin`).
    #[must_use]
    pub fn id(&self) -> OperationId {
        self.id
    }
}

impl<R> fmt::Debug for PendingResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingResult")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R> Future for PendingResult<R> {
    type Output = Result<R, ResultError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let id = self.id;
        // Given already: `Fuse`'s answer, not the receiver's panic.
        if self.reply.is_terminated() {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.reply)
            .poll(cx)
            .map(|reply| match reply {
                Ok(Some(result)) => result,
                // A completed operation always has its value; the reply goes unanswered only
                // when the coordinator itself is gone.
                Ok(None) | Err(_) => Err(ResultError::Cancelled {
                    id,
                    reason: super::CancelReason::Shutdown,
                }),
            })
    }
}

impl<R> futures::future::FusedFuture for PendingResult<R> {
    fn is_terminated(&self) -> bool {
        self.reply.is_terminated()
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> EnqueuePermit<T, R> {
    /// Accepts `item` into the reserved room and returns the future of its result (see
    /// [`PendingResult`]).
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] if the coordinator stopped taking items meanwhile
    /// (`complete`, `drain` or `cancel`; the permit's room is then given back).
    pub fn send_for_result(self, item: T) -> Result<PendingResult<R>, EnqueueError<T>> {
        self.send_answered(item, cloned_outcome::<R>)
    }
}

impl<T: Send + 'static, R: Send + 'static> EnqueuePermit<T, R> {
    /// [`send_for_result`](Self::send_for_result) with the caller's answer made by `answer`
    /// from the finished record.
    pub(super) fn send_answered(
        self,
        item: T,
        answer: Answerer<R>,
    ) -> Result<PendingResult<R>, EnqueueError<T>> {
        let (tx, reply) = oneshot::channel();
        let on_finish = Reply::new(tx, answer);
        let id = self.reserved.send_replying(item, (), None, on_finish)?;
        Ok(PendingResult { id, reply })
    }
}

impl<T: Send + 'static, R: Send + 'static> fmt::Debug for EphemeralResultCoordinator<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.engine, f)
    }
}
