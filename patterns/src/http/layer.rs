//! The layer, and the state its services share: names, options, breaker and counters.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ephemeral::{Name, SignalBuilder, SignalSink};
use tower::Layer;

use super::options::{SignalingConfigError, SignalingOptions};
use super::service::Signaling;
use crate::circuit_breaker::CircuitBreaker;

/// A tower [`Layer`] that turns what happens to HTTP calls into signals on a sink:
/// `http.error.<status>`, `http.error.transport`, `http.timeout` and `http.slow`, keyed by the
/// request's host and tagged with the coordinator operation making the call (if any), and
/// that lets a [`CircuitBreaker`] refuse calls while it is open.
///
/// See the [module documentation](super) for the signals and the breaker rules.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::http::{SignalingLayer, SignalingOptions};
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let layer = SignalingLayer::new(&sink, SignalingOptions::default().timeout(Duration::from_secs(2)))?;
/// // Any HTTP client service fits; this one answers 503 to everything.
/// let client = ServiceBuilder::new().layer(layer.clone()).service_fn(|_req: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(
///         Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap(),
///     )
/// });
///
/// let response = client.oneshot(Request::get("http://payments.internal/charge").body(())?).await?;
/// assert_eq!(response.status(), 503); // the caller still gets the response
/// let signal = sink.latest("http.error.*").unwrap();
/// assert_eq!(signal.name().as_str(), "http.error.503");
/// assert_eq!(signal.key(), Some("payments.internal"));
/// assert_eq!(layer.stats().error_responses, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SignalingLayer {
    shared: Arc<Shared>,
}

/// Signal names, compiled once.
pub(crate) struct Names {
    /// `<prefix>.error.`, completed with the status code per error response.
    pub(crate) error_prefix: String,
    pub(crate) transport: Name,
    pub(crate) timeout: Name,
    pub(crate) slow: Name,
}

pub(crate) struct Shared {
    pub(crate) sink: SignalSink,
    pub(crate) options: SignalingOptions,
    pub(crate) names: Names,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) counters: Counters,
}

/// Relaxed counters: each is a plain tally read as a snapshot; nothing is ordered by them.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) error_responses: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) raise_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// Raises one of the layer's signals; whether the breaker counts it as a failure.
    pub(crate) fn raise(&self, signal: SignalBuilder) -> bool {
        let counts = self
            .breaker
            .as_ref()
            .is_some_and(|b| b.counts_as_failure(signal.name().as_str()));
        if self.sink.raise_with(signal).is_err() {
            Counters::bump(&self.counters.raise_failures);
            // The breaker's listener never sees a signal the sink refused: a failure it
            // counts is told to it here, so it is not taken for a success.
            if counts && let Some(breaker) = &self.breaker {
                breaker.record_failure();
            }
        }
        counts
    }

    /// The inner service failed its readiness check: a transport error, reported as one
    /// (counter, `http.error.transport`, and through it the breaker), though there is no
    /// request yet to take a method, a host or a start time from.
    pub(crate) fn readiness_failed(&self) {
        Counters::bump(&self.counters.transport_errors);
        let mut signal = SignalBuilder::new(self.names.transport.clone());
        if let Some(id) = ephemeral::current_operation() {
            signal = signal.operation(id);
        }
        self.raise(signal);
    }
}

/// What a [`SignalingLayer`] has seen, counted over every service it built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalingStats {
    /// Calls made (refused ones included). Once every call has ended, each is counted in
    /// exactly one of `responses`, `timeouts`, `refused`, `abandoned`, or `transport_errors`
    /// (which also counts failed readiness checks, that are no calls).
    pub calls: u64,
    /// Calls that got a response, whatever its status.
    pub responses: u64,
    /// Responses whose status raised `http.error.<status>`.
    pub error_responses: u64,
    /// Calls whose inner service failed, and failed readiness checks of the inner service
    /// (`http.error.transport`). A readiness check is not a call, so this may exceed `calls`.
    pub transport_errors: u64,
    /// Calls given up after the timeout (`http.timeout`).
    pub timeouts: u64,
    /// Calls that raised `http.slow`.
    pub slow: u64,
    /// Calls refused by the circuit breaker without reaching the inner service.
    pub refused: u64,
    /// Calls whose response future was dropped before the call ended (a caller that gave
    /// up, an outer timeout): they raise no signal and give the breaker no verdict (a
    /// half-open probe's slot is given back), and are counted here so that no call goes
    /// unaccounted for.
    pub abandoned: u64,
    /// Signals the sink refused to raise (for example past its handler depth); the calls
    /// themselves were unaffected.
    pub raise_failures: u64,
}

impl SignalingLayer {
    /// A layer raising its signals on `sink`.
    ///
    /// # Errors
    ///
    /// [`SignalingConfigError`] for invalid options.
    pub fn new(sink: &SignalSink, options: SignalingOptions) -> Result<Self, SignalingConfigError> {
        Self::build(sink.clone(), options, None)
    }

    /// A layer raising its signals on the breaker's sink, and asking the breaker before each
    /// call: while it is open (or half-open with every probe slot taken) calls fail at once
    /// with [`SignalingError::CircuitOpen`](super::SignalingError::CircuitOpen) and never
    /// reach the inner service.
    ///
    /// The breaker counts failures from the signals it listens to: build it with
    /// `failure_on(&options.failure_pattern())` (or any pattern over these signals) so the
    /// layer's signals can open it. A response none of whose signals count as a failure is
    /// reported to the breaker as a success (a half-open probe's success closes it).
    ///
    /// Let either the layer or a coordinator's admission hook consult a given breaker, not
    /// both: in half-open, an operation admitted as a probe by
    /// [`CircuitBreaker::admission`] holds the probe slot, so its own HTTP call through this
    /// layer would be refused. To stop a coordinator *and* its calls, give the coordinator
    /// `cancel_on("circuit.open")` (or `defer_on`) and leave the probing to the layer.
    ///
    /// # Errors
    ///
    /// [`SignalingConfigError`] for invalid options.
    pub fn with_breaker(
        breaker: &CircuitBreaker,
        options: SignalingOptions,
    ) -> Result<Self, SignalingConfigError> {
        Self::build(breaker.sink().clone(), options, Some(breaker.clone()))
    }

    fn build(
        sink: SignalSink,
        options: SignalingOptions,
        breaker: Option<CircuitBreaker>,
    ) -> Result<Self, SignalingConfigError> {
        options.validate()?;
        let name = |suffix: &str| {
            Name::new(&format!("{}.{suffix}", options.prefix)).map_err(SignalingConfigError::Prefix)
        };
        let names = Names {
            error_prefix: format!("{}.error.", options.prefix),
            transport: name("error.transport")?,
            timeout: name("timeout")?,
            slow: name("slow")?,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                sink,
                options,
                names,
                breaker,
                counters: Counters::default(),
            }),
        })
    }

    /// The counters, one snapshot (each counter read once; calls in flight may be counted in
    /// `calls` and not yet in their outcome).
    #[must_use]
    pub fn stats(&self) -> SignalingStats {
        let c = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SignalingStats {
            calls: read(&c.calls),
            responses: read(&c.responses),
            error_responses: read(&c.error_responses),
            transport_errors: read(&c.transport_errors),
            timeouts: read(&c.timeouts),
            slow: read(&c.slow),
            refused: read(&c.refused),
            abandoned: read(&c.abandoned),
            raise_failures: read(&c.raise_failures),
        }
    }

    /// The sink the signals go to.
    #[must_use]
    pub fn sink(&self) -> &SignalSink {
        &self.shared.sink
    }

    /// The breaker that may refuse calls, if any.
    #[must_use]
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.shared.breaker.as_ref()
    }
}

impl<S> Layer<S> for SignalingLayer {
    type Service = Signaling<S>;

    fn layer(&self, inner: S) -> Signaling<S> {
        Signaling::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for SignalingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalingLayer")
            .field("options", &self.shared.options)
            .field(
                "breaker",
                &self.shared.breaker.as_ref().map(CircuitBreaker::state),
            )
            .field("stats", &self.stats())
            .finish()
    }
}
