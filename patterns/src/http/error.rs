//! What a call through the signaling layer can fail with.

use std::time::Duration;

use crate::circuit_breaker::CircuitOpen;

/// Why a call through a [`Signaling`](super::Signaling) service failed.
///
/// The inner service's own error is kept as it is (its type, its `Display`, its `source()`),
/// so callers can still match or downcast it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalingError<E> {
    /// The inner service failed (connection refused, reset, ...), in its call or in its
    /// readiness check (`poll_ready`); `http.error.transport` was raised.
    #[error(transparent)]
    Inner(E),
    /// No response within the timeout; `http.timeout` was raised.
    #[error(
        "no http response within {0:?}: the server is slow or unreachable; retry later or raise the timeout"
    )]
    Timeout(Duration),
    /// The circuit breaker refused the call; the inner service was not called.
    #[error(transparent)]
    CircuitOpen(CircuitOpen),
    /// A timeout is set and the call was made outside a tokio runtime, where the timeout
    /// cannot run: the inner service was not called and nothing was raised.
    #[error(
        "the http timeout runs on tokio's timer: make the call inside a tokio runtime with the time driver enabled (`enable_time` or `enable_all` on the runtime builder)"
    )]
    NoRuntime,
}

impl<E> SignalingError<E> {
    /// The inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the call timed out.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the circuit breaker refused the call.
    #[must_use]
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Self::CircuitOpen(_))
    }
}
