//! The service the layer wraps around an HTTP client.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::http::{Request, Response};
use tokio::time::Instant;
use tower::Service;

use super::error::SignalingError;
use super::future::{Call, ResponseFuture};
use super::layer::{Counters, Shared};

/// An HTTP client service wrapped by a [`SignalingLayer`](super::SignalingLayer).
///
/// Readiness is the inner service's. A readiness error (`poll_ready` failing: a closed
/// connection pool, a dead worker) is a transport error: it is counted in
/// [`SignalingStats::transport_errors`](super::SignalingStats::transport_errors), raises
/// `http.error.transport` (which a breaker built on
/// [`failure_pattern`](super::SignalingOptions::failure_pattern) counts as a failure) and
/// comes back as [`SignalingError::Inner`]. Each `poll_ready` that fails is reported once.
///
/// A call refused by the circuit breaker does not use the readiness it was given (as tower's
/// `LoadShed` refuses in `call`); the inner service is never called for it.
///
/// Without a timeout the service needs no runtime (any executor will do). With one, the
/// timeout runs on tokio's timer: a call made outside a tokio runtime fails at once with
/// [`SignalingError::NoRuntime`], without reaching the inner service or the counters.
///
/// # Panics
///
/// With a timeout set, `call` panics (tokio's panic) inside a tokio runtime built without
/// the time driver: tokio gives no way to ask a runtime whether its timer is enabled, so
/// this cannot be turned into an error. Build runtimes with `enable_time` or `enable_all`
/// (`#[tokio::main]` and `#[tokio::test]` do).
#[derive(Clone)]
pub struct Signaling<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Signaling<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for Signaling<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = SignalingError<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|e| {
            self.shared.readiness_failed();
            SignalingError::Inner(e)
        })
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        // The timeout's sleep is made below, and tokio panics when it is made outside a
        // runtime: refuse first, with a typed error, before the call is counted or sent.
        if shared.options.timeout.is_some() && tokio::runtime::Handle::try_current().is_err() {
            return ResponseFuture::no_runtime();
        }
        Counters::bump(&shared.counters.calls);
        let permit = match shared.breaker.as_ref().map(|b| b.try_acquire()) {
            Some(Err(open)) => {
                Counters::bump(&shared.counters.refused);
                return ResponseFuture::refused(open);
            }
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let call = Call {
            shared: shared.clone(),
            host: host_of(&request),
            method: request.method().clone(),
            // Read at the call; if the call is made outside the body's scope (a body closure
            // that returns the client's future), it is read again when the call ends.
            operation: ephemeral::current_operation(),
            started: Instant::now(),
            permit,
        };
        let deadline = shared
            .options
            .timeout
            .and_then(|t| call.started.checked_add(t));
        ResponseFuture::called(self.inner.call(request), deadline, call)
    }
}

/// The request's host: the URI's (absolute-form requests, as clients send them), else the
/// `Host` header's without the port.
fn host_of<B>(request: &Request<B>) -> Option<Arc<str>> {
    if let Some(host) = request.uri().host() {
        return Some(Arc::from(host));
    }
    let header = request.headers().get(::http::header::HOST)?.to_str().ok()?;
    let authority: ::http::uri::Authority = header.parse().ok()?;
    Some(Arc::from(authority.host()))
}

impl<S: fmt::Debug> fmt::Debug for Signaling<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signaling")
            .field("inner", &self.inner)
            .field("options", &self.shared.options)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_comes_from_the_uri_or_the_host_header() {
        let absolute = Request::get("http://api.example.com:8080/x")
            .body(())
            .unwrap();
        assert_eq!(host_of(&absolute).as_deref(), Some("api.example.com"));
        let origin_form = Request::get("/x")
            .header("host", "db.internal:5432")
            .body(())
            .unwrap();
        assert_eq!(host_of(&origin_form).as_deref(), Some("db.internal"));
        let neither = Request::get("/x").body(()).unwrap();
        assert_eq!(host_of(&neither), None);
    }
}
