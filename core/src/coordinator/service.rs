//! `tower` integration: a coordinator as a [`tower::Service`], and [`CoordinatorLayer`] to
//! run any inner service as a coordinator's body.
//!
//! [`CoordinatorService`]'s [`poll_ready`](tower::Service::poll_ready) holds a reserved
//! slot of the coordinator's intake (an [`EnqueuePermit`]) the way
//! `tower::limit::ConcurrencyLimit` holds a semaphore permit: ready means the next
//! [`call`](tower::Service::call) is accepted without waiting, and a service dropped while
//! ready gives the slot back. The response future resolves with the operation's result once
//! the body finished.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio_util::sync::ReusableBoxFuture;

use super::admission::Admission;
use super::engine::Answerer;
use super::error::{CoordinatorError, EnqueueError, ResultError};
use super::operation_error::OperationError;
use super::options::EphemeralOptions;
use super::result::{EphemeralResultCoordinator, PendingResult, cloned_outcome, taken_outcome};
use super::work::EnqueuePermit;

/// Why a [`CoordinatorService`] call did not produce a response.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError<T> {
    /// The coordinator no longer accepts items: it was completed, drained or cancelled (by a
    /// call, a drain signal, or the shutdown of its runtime).
    /// It never accepts items again, so every service on it answers this: calls need a new
    /// coordinator (a new `CoordinatorLayer` service builds one).
    #[error(
        "the coordinator no longer accepts items and never will again: it was completed, drained or cancelled (by a call, a drain signal, or the shutdown of its runtime); make a new coordinator (a new CoordinatorLayer service builds one)"
    )]
    Closed,
    /// `call` without a successful `poll_ready` before it; the item is given back.
    #[error("call was made without poll_ready returning ready first: poll the service until ready")]
    NotReady(T),
    /// The coordinator stopped taking items (`complete`, `drain` or `cancel`) between
    /// `poll_ready` and `call`; the item is given back. (A `poll_ready` after the stop
    /// answers [`Closed`](Self::Closed), also on a service that was ready before it.)
    #[error(
        "the coordinator stopped taking items between poll_ready and call (it was completed, drained or cancelled): the item was not run and is given back (ServiceError::into_item)"
    )]
    Refused(T),
    /// The layer could not build its coordinator (no tokio runtime, or a bad option).
    #[error("the coordinator could not be built: {0}")]
    Build(#[from] CoordinatorError),
    /// The item was accepted; the operation failed, was cancelled or was evicted before its
    /// result was read.
    #[error(transparent)]
    Operation(#[from] ResultError),
}

impl<T> ServiceError<T> {
    /// The item, for the errors where it was not accepted and is given back.
    pub fn into_item(self) -> Option<T> {
        match self {
            Self::NotReady(item) | Self::Refused(item) => Some(item),
            Self::Closed | Self::Build(_) | Self::Operation(_) => None,
        }
    }
}

impl<T> fmt::Debug for ServiceError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("Closed"),
            Self::NotReady(_) => f.write_str("NotReady(..)"),
            Self::Refused(_) => f.write_str("Refused(..)"),
            Self::Build(e) => f.debug_tuple("Build").field(e).finish(),
            Self::Operation(e) => f.debug_tuple("Operation").field(e).finish(),
        }
    }
}

type Reserve<T, R> = ReusableBoxFuture<'static, Result<EnqueuePermit<T, R>, EnqueueError<()>>>;

/// An [`EphemeralResultCoordinator`] as a [`tower::Service`]: every call is one tracked,
/// bounded, signal-steered operation, and its response is the operation's result.
///
/// Made by [`EphemeralResultCoordinator::service`] or by [`CoordinatorLayer`]. Clones share
/// the coordinator; each clone holds its own readiness (its own reserved slot), as clones of
/// `tower::limit::ConcurrencyLimit` do.
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralResultCoordinator, OperationContext};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let doubler = EphemeralResultCoordinator::new(
///     |n: u32, _ctx: OperationContext| async move { Ok::<_, std::convert::Infallible>(n * 2) },
///     EphemeralOptions::default(),
/// )?;
/// let mut service = doubler.service();
/// assert_eq!(service.ready().await?.call(21).await?, 42);
/// # Ok(())
/// # }
/// ```
pub struct CoordinatorService<T: Send + 'static, R: Send + 'static> {
    coordinator: Result<EphemeralResultCoordinator<T, R>, CoordinatorError>,
    reserve: Reserve<T, R>,
    reserving: bool,
    permit: Option<EnqueuePermit<T, R>>,
    /// Makes a call's answer from its finished record: a clone of the value for a service on
    /// a coordinator of the caller's (its results stay readable there), the value itself
    /// for [`CoordinatorLayer`]'s own coordinator.
    answer: Answerer<R>,
}

impl<T: Send + 'static, R: Send + 'static> CoordinatorService<T, R> {
    fn from_result(
        coordinator: Result<EphemeralResultCoordinator<T, R>, CoordinatorError>,
        answer: Answerer<R>,
    ) -> Self {
        Self {
            coordinator,
            reserve: ReusableBoxFuture::new(async { Err(EnqueueError::Closed(())) }),
            reserving: false,
            permit: None,
            answer,
        }
    }

    /// The coordinator behind the service (to read snapshots, `drain`, `cancel`), or the
    /// error that kept the layer from building it.
    ///
    /// # Errors
    ///
    /// The [`CoordinatorError`] of a [`CoordinatorLayer`] that could not build its coordinator.
    pub fn coordinator(&self) -> Result<&EphemeralResultCoordinator<T, R>, &CoordinatorError> {
        self.coordinator.as_ref()
    }
}

impl<T: Send + 'static, R: Send + 'static> Clone for CoordinatorService<T, R> {
    /// A service on the same coordinator, not ready (it reserves its own slot).
    fn clone(&self) -> Self {
        Self::from_result(self.coordinator.clone(), self.answer)
    }
}

impl<T: Send + 'static, R: Send + 'static> fmt::Debug for CoordinatorService<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorService")
            .field("coordinator", &self.coordinator)
            .field("ready", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static, R: Send + 'static> tower::Service<T> for CoordinatorService<T, R> {
    type Response = R;
    type Error = ServiceError<T>;
    type Future = ResponseFuture<T, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_some() {
            // Stopped taking items since this service became ready: its room goes back, and
            // readiness is refused as for a service that was not ready yet.
            if self.coordinator.as_ref().is_ok_and(|c| c.is_closed()) {
                self.permit = None;
                return Poll::Ready(Err(ServiceError::Closed));
            }
            return Poll::Ready(Ok(()));
        }
        let coordinator = match &self.coordinator {
            Ok(coordinator) => coordinator,
            Err(e) => return Poll::Ready(Err(ServiceError::Build(e.clone()))),
        };
        if !self.reserving {
            // Room free now: no future to build (the common case when the coordinator keeps up).
            match coordinator.try_reserve() {
                Ok(Some(permit)) => {
                    self.permit = Some(permit);
                    return Poll::Ready(Ok(()));
                }
                Ok(None) => {}
                Err(_) => return Poll::Ready(Err(ServiceError::Closed)),
            }
            let coordinator = coordinator.clone();
            self.reserve.set(async move { coordinator.reserve().await });
            self.reserving = true;
        }
        let reserved = ready!(Pin::new(&mut self.reserve).poll(cx));
        self.reserving = false;
        match reserved {
            Ok(permit) => {
                self.permit = Some(permit);
                Poll::Ready(Ok(()))
            }
            Err(_) => Poll::Ready(Err(ServiceError::Closed)),
        }
    }

    fn call(&mut self, item: T) -> Self::Future {
        let Some(permit) = self.permit.take() else {
            return ResponseFuture::done(Err(ServiceError::NotReady(item)));
        };
        // The outcome is handed over at the finish (a `PendingResult`), so the response
        // never depends on the window still holding the operation. The response future
        // holds the coordinator: a service dropped after `call` (as `oneshot` does) must not
        // shut it down under the call.
        let alive = self.coordinator.clone();
        match permit.send_answered(item, self.answer) {
            Ok(pending) => ResponseFuture {
                state: Response::Waiting {
                    pending,
                    _alive: alive,
                },
            },
            Err(e) => ResponseFuture::done(Err(ServiceError::Refused(e.into_inner()))),
        }
    }
}

/// The response of one [`CoordinatorService`] call: the operation's result once it finished,
/// or why the call was not made. A named future (no allocation per call), so it can appear
/// in the bounds of code generic over services.
///
/// It holds the coordinator, so a service dropped right after `call` (as `oneshot` does)
/// does not shut the coordinator down under the call. Dropping it before it completed
/// cancels the operation ([`CancelReason::Abandoned`](crate::CancelReason::Abandoned)): a
/// pending one never starts, a running one is cancelled as by `cancel_operation` (the inner
/// call dropped at once, its slot freed), so a `timeout` outside the layer sheds the load it
/// gave up on, as tower's `Buffer` and `ConcurrencyLimit` do. (A [`PendingResult`] dropped
/// does not cancel: its operation's result stays readable by id.) Polled again after it
/// completed (a misuse of any future), it answers [`ServiceError::Closed`] rather than
/// panicking.
#[must_use = "the response is delivered only to this future"]
pub struct ResponseFuture<T: Send + 'static, R: Send + 'static> {
    state: Response<T, R>,
}

enum Response<T: Send + 'static, R: Send + 'static> {
    /// Waiting for the operation's result.
    Waiting {
        pending: PendingResult<R>,
        _alive: Result<EphemeralResultCoordinator<T, R>, CoordinatorError>,
    },
    /// Known at the call (`None` once returned).
    Done(Option<Result<R, ServiceError<T>>>),
}

impl<T: Send + 'static, R: Send + 'static> ResponseFuture<T, R> {
    fn done(result: Result<R, ServiceError<T>>) -> Self {
        Self {
            state: Response::Done(Some(result)),
        }
    }
}

// Nothing in it is pinned: the pending result is a oneshot receiver, the rest is moved out.
impl<T: Send + 'static, R: Send + 'static> Unpin for ResponseFuture<T, R> {}

impl<T: Send + 'static, R: Send + 'static> Drop for ResponseFuture<T, R> {
    fn drop(&mut self) {
        // Still waiting: the caller gave up on the call, and nobody else can have its
        // result (the layer's coordinator keeps no values). A finished operation is not
        // live, so this is a no-op for one that finished but was not polled since.
        if let Response::Waiting {
            pending,
            _alive: Ok(coordinator),
        } = &self.state
        {
            coordinator.abandon(pending.id());
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Future for ResponseFuture<T, R> {
    type Output = Result<R, ServiceError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            Response::Waiting { pending, .. } => {
                let result = ready!(Pin::new(pending).poll(cx));
                this.state = Response::Done(None);
                Poll::Ready(result.map_err(ServiceError::from))
            }
            // Polled again after it returned (a misuse): an error rather than a panic.
            Response::Done(result) => {
                Poll::Ready(result.take().unwrap_or(Err(ServiceError::Closed)))
            }
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> fmt::Debug for ResponseFuture<T, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Response::Waiting { pending, .. } => f
                .debug_struct("ResponseFuture")
                .field("operation", &pending.id())
                .finish(),
            Response::Done(_) => f.write_str("ResponseFuture(done)"),
        }
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> EphemeralResultCoordinator<T, R> {
    /// This coordinator as a [`tower::Service`] (see [`CoordinatorService`]). Each call's
    /// value is cloned to its caller and stays readable here (`result`, `results`).
    #[must_use]
    pub fn service(&self) -> CoordinatorService<T, R> {
        CoordinatorService::from_result(Ok(self.clone()), cloned_outcome::<R>)
    }
}

impl<T: Send + 'static> super::EphemeralWorkCoordinator<T> {
    /// This coordinator as a [`tower::Service`] whose responses are `()`: a call resolves
    /// once its operation completed, with the failure or cancellation otherwise (see
    /// [`CoordinatorService`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
    /// use tower::{Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mailer = EphemeralWorkCoordinator::new(
    ///     |to: &'static str, _ctx: OperationContext| async move {
    ///         if to.contains('@') { Ok(()) } else { Err(format!("no address in {to:?}")) }
    ///     },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let mut service = mailer.service();
    /// service.ready().await?.call("ada@example.org").await?;
    /// assert!(service.ready().await?.call("nobody").await.is_err());
    /// assert_eq!(mailer.stats().failed, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn service(&self) -> CoordinatorService<T, ()> {
        CoordinatorService::from_result(
            Ok(EphemeralResultCoordinator::from_engine(
                self.engine().clone(),
            )),
            cloned_outcome::<()>,
        )
    }
}

/// A [`tower::Layer`] that runs the inner service as the body of a new
/// [`EphemeralResultCoordinator`]: calls are bounded (`max_concurrency`, `max_pending`),
/// tracked in the window, and steered by signals like any operation.
///
/// Each `layer` call builds one coordinator, so build the stack once and clone the service.
/// The inner service is cloned for each operation (the usual tower habit for services used
/// concurrently); its errors become the operation's failure. A coordinator that cannot be
/// built (outside a tokio runtime, or with a bad option) makes `poll_ready` return
/// [`ServiceError::Build`].
///
/// # What the inner service must be
///
/// * `Clone + Send + Sync + 'static`: every worker clones it from one shared copy. A boxed
///   stack must be a `tower::util::BoxCloneSyncService`; a `BoxCloneService` is not `Sync`
///   and does not fit (the compiler says ``dyn CloneService<..> cannot be shared between
///   threads safely``).
/// * A `Response` that is `Send + 'static`, nothing more: each call's response is moved to
///   its caller when the operation finishes, never cloned, so a streaming
///   `http::Response<Incoming>` fits. The layer's coordinator therefore keeps no values:
///   its operations are tracked (state, timings, errors, signals) like any other, but
///   [`result`](EphemeralResultCoordinator::result) and
///   [`results`](EphemeralResultCoordinator::results) find no value for a call (its caller
///   has it). A service made by [`EphemeralResultCoordinator::service`] is different: it
///   clones each value to its caller and keeps it.
/// * An `Error` that is `Display + Send + Sync + 'static` (`tower::BoxError` is): it is kept
///   as the operation's [`OperationError`], whose `downcast_ref` gives the value back.
///
/// # Examples
///
/// ```
/// use ephemeral::{CoordinatorLayer, EphemeralOptions};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let options = EphemeralOptions::default().max_concurrency(4);
/// let service = ServiceBuilder::new()
///     .layer(CoordinatorLayer::new(options))
///     .service(service_fn(|n: u64| async move { Ok::<_, std::convert::Infallible>(n + 1) }));
/// assert_eq!(service.oneshot(41).await?, 42);
/// # Ok(())
/// # }
/// ```
///
/// A boxed inner stack (`BoxCloneSyncService`, not `BoxCloneService`), its error boxed:
///
/// ```
/// use ephemeral::{CoordinatorLayer, EphemeralOptions, ResultError, ServiceError};
/// use tower::util::BoxCloneSyncService;
/// use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lookup: BoxCloneSyncService<u64, String, BoxError> = BoxCloneSyncService::new(
///     service_fn(|id: u64| async move {
///         if id == 0 {
///             return Err(std::io::Error::other("no user 0"));
///         }
///         Ok(format!("user {id}"))
///     })
///     .map_err(BoxError::from),
/// );
/// let service = ServiceBuilder::new()
///     .layer(CoordinatorLayer::new(EphemeralOptions::default()))
///     .service(lookup);
/// assert_eq!(service.clone().oneshot(7).await?, "user 7");
/// match service.oneshot(0).await {
///     Err(ServiceError::Operation(ResultError::Failed { message, .. })) => {
///         let error = message.downcast_ref::<BoxError>().expect("the inner error value");
///         assert!(error.is::<std::io::Error>());
///     }
///     other => panic!("expected the inner error, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct CoordinatorLayer<T> {
    options: EphemeralOptions,
    hooks: Vec<Arc<dyn Admission>>,
    _request: PhantomData<fn(T)>,
}

impl<T> CoordinatorLayer<T> {
    /// A layer building its coordinators with `options`.
    #[must_use]
    pub fn new(options: EphemeralOptions) -> Self {
        Self::with_admission(options, Vec::new())
    }

    /// [`new`](Self::new) with [`Admission`] hooks, asked in order before an item takes a
    /// slot, as a coordinator's `with_admission` takes them (a circuit breaker's
    /// `admission()`, a rate limit). Every coordinator the layer builds shares these hooks
    /// (they are `Arc`s): a breaker guarding one downstream stays one breaker however many
    /// services the layer makes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::future::BoxFuture;
    /// use ephemeral::{
    ///     Admission, AdmissionRequest, CoordinatorLayer, Decision, EphemeralOptions, ResultError,
    ///     ServiceError,
    /// };
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// /// Lets nothing through: a circuit that stays open.
    /// #[derive(Debug)]
    /// struct Open;
    ///
    /// impl Admission for Open {
    ///     fn admit<'a>(&'a self, _req: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
    ///         Box::pin(async { Decision::cancel("circuit open") })
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let service = ServiceBuilder::new()
    ///     .layer(CoordinatorLayer::with_admission(
    ///         EphemeralOptions::default(),
    ///         vec![Arc::new(Open)],
    ///     ))
    ///     .service(service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n + 1) }));
    /// let refused = service.oneshot(41).await;
    /// assert!(matches!(refused, Err(ServiceError::Operation(ResultError::Cancelled { .. }))));
    /// # }
    /// ```
    #[must_use]
    pub fn with_admission(options: EphemeralOptions, hooks: Vec<Arc<dyn Admission>>) -> Self {
        Self {
            options,
            hooks,
            _request: PhantomData,
        }
    }
}

impl<T> Clone for CoordinatorLayer<T> {
    fn clone(&self) -> Self {
        Self::with_admission(self.options.clone(), self.hooks.clone())
    }
}

impl<T> fmt::Debug for CoordinatorLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorLayer")
            .field("options", &self.options)
            .field("hooks", &self.hooks)
            .finish()
    }
}

impl<T, S> tower::Layer<S> for CoordinatorLayer<T>
where
    T: Send + 'static,
    S: tower::Service<T> + Clone + Send + Sync + 'static,
    S::Response: Send + 'static,
    S::Error: fmt::Display + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Service = CoordinatorService<T, S::Response>;

    fn layer(&self, inner: S) -> Self::Service {
        let body = move |item: T, ctx: super::OperationContext| {
            let mut inner = inner.clone();
            // No token: the operation's own wake-up, which costs no allocation and no lock.
            let cancelled = ctx.cancelled();
            async move {
                // Tower futures stop when dropped: a cancelled operation drops the inner
                // call at once rather than waiting out `abort_grace`.
                // The inner error is kept as the operation's error value, so a caller can
                // downcast it (`ServiceError::Operation(ResultError::Failed { message, .. })`).
                let call = async {
                    std::future::poll_fn(|cx| inner.poll_ready(cx))
                        .await
                        .map_err(OperationError::new)?;
                    inner.call(item).await.map_err(OperationError::new)
                };
                tokio::select! {
                    biased;
                    result = call => result,
                    () = cancelled => Err(OperationError::from_message(
                        "the operation was cancelled while the inner service ran",
                    )),
                }
            }
        };
        CoordinatorService::from_result(
            EphemeralResultCoordinator::build(body, self.options.clone(), self.hooks.clone()),
            taken_outcome::<S::Response>,
        )
    }
}
