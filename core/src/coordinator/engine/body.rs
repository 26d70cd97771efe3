//! The user's body, type-erased: what a worker calls, and how a panic in it is described.

use std::fmt::Display;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::super::context::OperationContext;
use super::super::operation_error::OperationError;

/// A type-erased body: the item and its context in, a boxed future out, its error rendered.
pub(crate) type BodyFn<T, R> =
    Arc<dyn Fn(T, OperationContext) -> BoxFuture<'static, Result<R, OperationError>> + Send + Sync>;

/// Boxes `body`'s future and keeps its error as an [`OperationError`] (the value and its
/// `Display` text).
pub(crate) fn erase<T, R, E, F, Fut>(body: F) -> BodyFn<T, R>
where
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    E: Display + Send + Sync + 'static,
    T: 'static,
    R: 'static,
{
    Arc::new(move |item, ctx| {
        let future = body(item, ctx);
        Box::pin(async move { future.await.map_err(OperationError::new) })
    })
}

/// The message of a caught panic (a `&str` or `String` payload; a placeholder otherwise).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> Arc<str> {
    if let Some(s) = panic.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = panic.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("panic with a non-string payload")
    }
}
