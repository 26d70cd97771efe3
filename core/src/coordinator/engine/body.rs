//! The user's body, behind a trait the workers are generic over, and how a panic in it is
//! described.
//!
//! The coordinator types keep no body type parameter (`EphemeralWorkCoordinator<T>` names
//! only the item): the body is erased once, at creation, into the function that spawns a
//! worker ([`Inner`](super::inner::Inner)'s `spawn_worker`), and each worker task is
//! compiled for the concrete body. So a body's future lives inside its worker's task, not in
//! a box of its own: running an item allocates nothing for the body.

use std::any::Any;
use std::fmt::Display;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::MapErr;
use pin_project::{pin_project, pinned_drop};

use super::super::context::OperationContext;
use super::super::operation_error::OperationError;
use crate::OperationId;

/// A body: the item and its context in, a future of its result out, its error kept as an
/// [`OperationError`] (the value and its `Display` text).
pub(crate) trait Body<T, R>: Send + Sync + 'static {
    /// The future one call returns.
    type Future: Future<Output = Result<R, OperationError>> + Send + 'static;

    /// Starts the body on `item`.
    fn call(&self, item: T, ctx: OperationContext) -> Self::Future;
}

/// A user's closure as a [`Body`]: its future, with the error mapped by a plain function
/// pointer (so the future's type is nameable and nothing is boxed).
pub(crate) struct UserBody<F, Fut, E> {
    body: F,
    // `fn() -> ...`: the body is `Send + Sync` whatever `Fut` and `E` are (it only makes them).
    _made: PhantomData<fn() -> (Fut, E)>,
}

/// Wraps the user's `body` for the engine.
pub(crate) fn user_body<T, R, E, F, Fut>(body: F) -> UserBody<F, Fut, E>
where
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    E: Display + Send + Sync + 'static,
{
    UserBody {
        body,
        _made: PhantomData,
    }
}

impl<T, R, E, F, Fut> Body<T, R> for UserBody<F, Fut, E>
where
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    E: Display + Send + Sync + 'static,
{
    type Future = MapErr<Fut, fn(E) -> OperationError>;

    fn call(&self, item: T, ctx: OperationContext) -> Self::Future {
        (self.body)(item, ctx).map_err(OperationError::new as fn(E) -> OperationError)
    }
}

/// A body's future as a worker runs it, in one wrapper (so the future moves once, into it):
/// each poll makes the operation current (see `current.rs`), enters its span when a subscriber
/// wants it, and catches a panic, which ends the run (the future is not polled again). The
/// future is dropped inside the span too (as `tracing`'s `Instrumented` does), so what its
/// drop reports (a guard logging an abandoned step, say) belongs to the operation; the
/// operation is not current then, as `current_operation` promises.
#[pin_project(PinnedDrop)]
pub(crate) struct Running<'a, F> {
    /// `None` only while the wrapper is being dropped.
    #[pin]
    body: Option<F>,
    id: OperationId,
    span: Option<&'a tracing::Span>,
}

impl<'a, F: Future> Running<'a, F> {
    /// Runs `body` as operation `id`, inside `span` when given.
    pub(crate) fn new(body: F, id: OperationId, span: Option<&'a tracing::Span>) -> Self {
        Self {
            body: Some(body),
            id,
            span,
        }
    }
}

impl<F: Future> Future for Running<'_, F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(body) = this.body.as_pin_mut() else {
            // Only a wrapper being dropped has no body, and nothing polls it then.
            return Poll::Pending;
        };
        let _entered = this.span.map(tracing::Span::enter);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            crate::current::sync_scope(*this.id, || body.poll(cx))
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[pinned_drop]
impl<F> PinnedDrop for Running<'_, F> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        let _entered = this.span.map(tracing::Span::enter);
        let mut body = this.body;
        body.set(None);
    }
}

/// The message of a caught panic (a `&str` or `String` payload; a placeholder otherwise).
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = panic.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("panic with a non-string payload")
    }
}
