//! The response future: the inner call raced against the timeout, then signals and the
//! breaker's verdict when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::http::{Method, Response, StatusCode};
use ephemeral::{Name, OperationId, SignalBuilder};
use pin_project::{pin_project, pinned_drop};
use tokio::time::{Instant, Sleep};

use super::error::SignalingError;
use super::layer::{Counters, Shared};
use crate::circuit_breaker::{BreakerPermit, CircuitOpen};

/// The future of a call through a [`Signaling`](super::Signaling) service.
///
/// Dropped before the call ended, it drops the inner call, raises nothing, gives a circuit
/// breaker no verdict (a half-open probe's slot is given back) and counts the call in
/// [`SignalingStats::abandoned`](super::SignalingStats::abandoned).
#[pin_project(PinnedDrop)]
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project(project = StateProj)]
enum State<F> {
    Called {
        #[pin]
        future: F,
        #[pin]
        deadline: Option<Sleep>,
        /// Taken when the call ends, so the signals are raised exactly once.
        call: Option<Call>,
    },
    Refused(CircuitOpen),
    /// A timeout was set outside a tokio runtime.
    NoRuntime,
}

/// One call in flight: what its signals will carry, and the breaker's permit.
pub(crate) struct Call {
    pub(crate) shared: Arc<Shared>,
    pub(crate) host: Option<Arc<str>>,
    pub(crate) method: Method,
    pub(crate) operation: Option<OperationId>,
    pub(crate) started: Instant,
    /// Dropped without a verdict when the caller drops the future: a probe slot is given back.
    pub(crate) permit: Option<BreakerPermit>,
}

/// How a call ended, for the signals.
enum Ended {
    /// A response: its status, and its `Retry-After` header as text, if it has a readable one.
    Response(StatusCode, Option<Box<str>>),
    Transport,
    Timeout,
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, deadline: Option<Instant>, call: Call) -> Self {
        Self {
            state: State::Called {
                future,
                deadline: deadline.map(tokio::time::sleep_until),
                call: Some(call),
            },
        }
    }

    pub(crate) fn refused(open: CircuitOpen) -> Self {
        Self {
            state: State::Refused(open),
        }
    }

    pub(crate) fn no_runtime() -> Self {
        Self {
            state: State::NoRuntime,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, SignalingError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Refused(open) => Poll::Ready(Err(SignalingError::CircuitOpen(*open))),
            StateProj::NoRuntime => Poll::Ready(Err(SignalingError::NoRuntime)),
            StateProj::Called {
                future,
                deadline,
                call,
            } => {
                // The response first: one that is ready at the deadline is not a timeout.
                if let Poll::Ready(result) = future.poll(cx) {
                    let ended = match &result {
                        Ok(response) => Ended::Response(response.status(), retry_after(response)),
                        Err(_) => Ended::Transport,
                    };
                    if let Some(call) = call.take() {
                        call.end(&ended);
                    }
                    return Poll::Ready(result.map_err(SignalingError::Inner));
                }
                let Some(deadline) = deadline.as_pin_mut() else {
                    return Poll::Pending;
                };
                if deadline.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let timeout = call.take().map(|call| {
                    let after = call.shared.options.timeout.unwrap_or_default();
                    call.end(&Ended::Timeout);
                    after
                });
                Poll::Ready(Err(SignalingError::Timeout(timeout.unwrap_or_default())))
            }
        }
    }
}

#[pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        // A call still in flight was given up by its caller: counted, so that every call
        // made ends in one visible outcome. (Its permit, dropped with it, gives a probe slot
        // back.)
        if let StateProj::Called {
            call: Some(call), ..
        } = self.project().state.project()
        {
            Counters::bump(&call.shared.counters.abandoned);
        }
    }
}

impl Call {
    /// Raises the call's signals and gives the breaker its verdict.
    fn end(self, ended: &Ended) {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let elapsed = self.started.elapsed();
        let mut failed = false;
        let mut retry_after = None;
        let (name, status) = match ended {
            Ended::Response(status, after) => {
                let status = *status;
                Counters::bump(&counters.responses);
                if (shared.options.is_error)(status) {
                    Counters::bump(&counters.error_responses);
                    let name = format!("{}{}", shared.names.error_prefix, status.as_u16());
                    retry_after = after.as_deref();
                    (Name::new(&name).ok(), Some(status))
                } else {
                    (None, Some(status))
                }
            }
            Ended::Transport => {
                Counters::bump(&counters.transport_errors);
                (Some(shared.names.transport.clone()), None)
            }
            Ended::Timeout => {
                Counters::bump(&counters.timeouts);
                (Some(shared.names.timeout.clone()), None)
            }
        };
        if let Some(name) = name {
            failed |= self.raise(name, status, elapsed, retry_after);
        }
        let slow = !matches!(ended, Ended::Timeout)
            && shared.options.slow_after.is_some_and(|t| elapsed >= t);
        if slow {
            Counters::bump(&counters.slow);
            failed |= self.raise(shared.names.slow.clone(), status, elapsed, None);
        }
        if let Some(permit) = self.permit {
            // A failure signal already reached the breaker through its listener; a response
            // with no failure signal is a success (the server answered). A transport error or
            // timeout the breaker does not count gets no verdict: the permit is dropped.
            if !failed && matches!(ended, Ended::Response(..)) {
                permit.success();
            }
        }
    }

    /// Raises one signal; whether the breaker saw it as a failure.
    fn raise(
        &self,
        name: Name,
        status: Option<StatusCode>,
        elapsed: Duration,
        retry_after: Option<&str>,
    ) -> bool {
        let mut builder = SignalBuilder::new(name)
            .header("method", self.method.as_str())
            .header(
                "elapsed_ms",
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            );
        if let Some(status) = status {
            builder = builder.header("status", i64::from(status.as_u16()));
        }
        if let Some(after) = retry_after {
            builder = builder.header("retry-after", after);
        }
        if let Some(host) = &self.host {
            builder = builder.key(host.clone());
        }
        // A call made outside the body's scope but awaited inside it is still tagged.
        if let Some(id) = self.operation.or_else(ephemeral::current_operation) {
            builder = builder.operation(id);
        }
        self.shared.raise(builder)
    }
}

/// The longest `Retry-After` value carried onto a signal: a number of seconds or an HTTP date
/// fits many times over; anything longer is not a `Retry-After` a limiter could read.
const MAX_RETRY_AFTER: usize = 64;

/// The response's `Retry-After` header, trimmed, if it is visible text of a sensible length:
/// carried on `http.error.<status>` as `retry-after`, where an
/// `adaptive_rate::AdaptiveRate` limiter (or anyone) reads it.
fn retry_after<B>(response: &Response<B>) -> Option<Box<str>> {
    let value = response
        .headers()
        .get(::http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    (!value.is_empty() && value.len() <= MAX_RETRY_AFTER).then(|| value.into())
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { call: Some(_), .. } => "in flight",
            State::Called { call: None, .. } => "ended",
            State::Refused(_) => "refused",
            State::NoRuntime => "no runtime",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
