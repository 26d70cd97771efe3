//! The signaling HTTP client layer: what happens to your HTTP calls, as signals.
//!
//! [`SignalingLayer`] wraps any tower HTTP client service (`Service<http::Request<B>,
//! Response = http::Response<R>>`: hyper-util's client, a reqwest-backed service, a test
//! double) and raises, on a [`SignalSink`](ephemeral::SignalSink):
//!
//! | signal | when | headers |
//! |---|---|---|
//! | `http.error.<status>` | a response whose status is an error (400 and up by default; see [`SignalingOptions::error_when`]) | `method`, `status`, `elapsed_ms`; `retry-after` when the response has a `Retry-After` header (its text, at most 64 bytes) |
//! | `http.error.transport` | the inner service failed (connection refused, reset, ...), in a call or in `poll_ready` | `method`, `elapsed_ms` (none for a failed `poll_ready`, which has no request yet) |
//! | `http.timeout` | no response within [`SignalingOptions::timeout`]; the call fails with [`SignalingError::Timeout`] | `method`, `elapsed_ms` |
//! | `http.slow` | a call that ended (response or error) after at least [`SignalingOptions::slow_after`] | `method`, `status` if any, `elapsed_ms` |
//!
//! Every signal of a call is keyed by the request's host, so `sink.sense("http.error.*")`
//! tells which downstream failed (a failed `poll_ready` has no request, so its
//! `http.error.transport` has no key), and, when the call (or the `poll_ready`) is made
//! inside a coordinator operation's body, it carries that operation's id (read with [`ephemeral::current_operation`]), so
//! `sink.signals_of(id)`, a watcher or a coordinator's `cancel_on("http.error.*")` see which
//! operation met which failure. Responses are returned to the caller whatever their status:
//! the layer reports, it does not judge.
//!
//! With [`SignalingLayer::with_breaker`], a [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker)
//! that counts these signals as failures (see [`SignalingOptions::failure_pattern`]) opens
//! after enough of them, and from then on the layer refuses calls at once with
//! [`SignalingError::CircuitOpen`] without touching the network, until the breaker lets
//! probes through. Successes (responses with no failure signal) reach the breaker too, so a
//! half-open probe that gets an answer closes it.
//!
//! An error response's `Retry-After` (a 429 or a 503 that says when to come back) travels
//! on its signal as the `retry-after` header, as text (`"120"`, or an HTTP date), so an
//! `adaptive_rate::AdaptiveRate` limiter listening to `http.*` pauses for it (it
//! reads a number of seconds; a date it counts as unreadable).
//!
//! Timing is measured from the call to the response head; a streamed body is not timed.
//! The timeout and the slow threshold run on tokio's clock, so tests can use the paused
//! clock. This is the Rust counterpart of the .NET original's signaling HTTP client (a
//! `DelegatingHandler` there, a tower layer here).
//!
//! # Examples
//!
//! A breaker opened by HTTP failures refuses the next call without sending it:
//!
//! ```
//! use std::time::Duration;
//! use ephemeral::SignalSink;
//! use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
//! use ephemeral_patterns::http::{SignalingError, SignalingLayer, SignalingOptions};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SignalSink::default();
//! let options = SignalingOptions::default().timeout(Duration::from_secs(1));
//! let breaker = CircuitBreaker::new(
//!     &sink,
//!     CircuitBreakerOptions::default()
//!         .failure_on(&options.failure_pattern())
//!         .consecutive_failures(2)
//!         .open_for(Duration::from_secs(10)),
//! )?;
//! let client = ServiceBuilder::new()
//!     .layer(SignalingLayer::with_breaker(&breaker, options)?)
//!     .service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(
//!             Response::builder().status(StatusCode::BAD_GATEWAY).body(()).unwrap(),
//!         )
//!     });
//!
//! for _ in 0..2 {
//!     let response = client.clone().oneshot(Request::get("http://inventory/items").body(())?).await?;
//!     assert_eq!(response.status(), 502);
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let refused = client.oneshot(Request::get("http://inventory/items").body(())?).await;
//! assert!(matches!(refused, Err(SignalingError::CircuitOpen(_))));
//! # Ok(())
//! # }
//! ```

mod error;
mod future;
mod layer;
mod options;
mod service;

pub use error::SignalingError;
pub use future::ResponseFuture;
pub use layer::{SignalingLayer, SignalingStats};
pub use options::{SignalingConfigError, SignalingOptions};
pub use service::Signaling;
