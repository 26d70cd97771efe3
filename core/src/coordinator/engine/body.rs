//! Erasing a user body into the engine's `BodyFn`.

use std::fmt::Display;
use std::sync::Arc;

use super::super::context::OperationContext;
use super::inner::BodyFn;

/// Boxes `body`'s future and renders its error through `Display`.
pub(crate) fn erase<T, R, E, F, Fut>(body: F) -> BodyFn<T, R>
where
    F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    E: Display,
    T: 'static,
    R: 'static,
{
    Arc::new(move |item, ctx| {
        let future = body(item, ctx);
        Box::pin(async move { future.await.map_err(|e| Arc::from(e.to_string())) })
    })
}
