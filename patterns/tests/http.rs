//! The signaling HTTP layer, against a programmable inner service on the paused clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ephemeral::{
    EphemeralOptions, EphemeralWorkCoordinator, HeaderValue, OperationContext, OperationId,
    SignalSink, with_operation,
};
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use ephemeral_patterns::http::{
    SignalingConfigError, SignalingError, SignalingLayer, SignalingOptions,
};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};

/// A transport failure of the fake client, to check it comes back with its own type.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("connection refused by {0}")]
struct Refused(String);

/// A fake downstream, driven by the path: `/status/<code>`, `/sleep/<ms>` (then 200),
/// `/sleep/<ms>/status/<code>`, `/retry-after/<value>` (a `Retry-After` header), `/refuse`.
/// Counts the calls that reach it.
#[derive(Clone, Default)]
struct Downstream {
    calls: Arc<AtomicUsize>,
}

impl Downstream {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        self,
    ) -> impl Service<
        Request<()>,
        Response = Response<()>,
        Error = Refused,
        Future = impl Future<Output = Result<Response<()>, Refused>> + Send,
    > + Clone
    + Send {
        let calls = self.calls.clone();
        tower::service_fn(move |request: Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = request.uri().path().to_owned();
            let host = request.uri().host().unwrap_or_default().to_owned();
            async move {
                let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
                let mut status = 200;
                let mut retry_after = None;
                let mut rest = parts.as_slice();
                while let [what, value, tail @ ..] = rest {
                    match *what {
                        "sleep" => {
                            let ms = value.parse().unwrap();
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        "status" => status = value.parse().unwrap(),
                        "retry-after" => retry_after = Some(value.to_string()),
                        _ => {}
                    }
                    rest = tail;
                }
                if rest == ["refuse"] {
                    return Err(Refused(host));
                }
                let mut response = Response::builder().status(status);
                if let Some(after) = retry_after {
                    response = response.header(http::header::RETRY_AFTER, after);
                }
                Ok(response.body(()).unwrap())
            }
        })
    }
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

fn header(signal: &ephemeral::Signal, name: &str) -> Option<HeaderValue> {
    signal.header(name).cloned()
}

#[tokio::test(start_paused = true)]
async fn an_error_status_raises_its_signal_keyed_by_host_and_returns_the_response() {
    let sink = SignalSink::default();
    let layer = SignalingLayer::new(&sink, SignalingOptions::default()).unwrap();
    let downstream = Downstream::default();
    let client = layer.layer(downstream.clone().service());

    let ok = client
        .clone()
        .oneshot(get("http://api.test/status/204"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert!(sink.is_empty(), "a success raises nothing");

    let response = client
        .oneshot(
            Request::post("http://api.test:8080/status/503")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let signal = sink.latest("http.*").unwrap();
    assert_eq!(signal.name().as_str(), "http.error.503");
    assert_eq!(signal.key(), Some("api.test"));
    assert_eq!(signal.operation(), None, "no coordinator, no operation");
    assert_eq!(header(&signal, "status"), Some(HeaderValue::Int(503)));
    assert_eq!(header(&signal, "method"), Some(HeaderValue::from("POST")));
    assert_eq!(header(&signal, "elapsed_ms"), Some(HeaderValue::Int(0)));
    let stats = layer.stats();
    assert_eq!(
        (stats.calls, stats.responses, stats.error_responses),
        (2, 2, 1)
    );
}

/// An error response's `Retry-After` travels on its signal as `retry-after`, as text, so a
/// limiter listening to the sink can pause for it; a response without one carries none.
#[tokio::test(start_paused = true)]
async fn an_error_responses_retry_after_travels_on_its_signal() {
    let sink = SignalSink::default();
    let client = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(Downstream::default().service());
    client
        .clone()
        .oneshot(get("http://api.test/status/429/retry-after/120"))
        .await
        .unwrap();
    let signal = sink.latest("http.error.429").unwrap();
    assert_eq!(
        header(&signal, "retry-after"),
        Some(HeaderValue::from("120"))
    );
    client
        .clone()
        .oneshot(get("http://api.test/status/503"))
        .await
        .unwrap();
    let signal = sink.latest("http.error.503").unwrap();
    assert_eq!(header(&signal, "retry-after"), None);
    // A success raises nothing, whatever its headers.
    client
        .oneshot(get("http://api.test/status/200/retry-after/5"))
        .await
        .unwrap();
    assert_eq!(sink.count("http.*"), 2);
}

/// The two patterns together: a 429 with `Retry-After: 5` through the layer pauses an
/// adaptive limiter listening to `http.*` for 5 s (it used to carry no `retry-after`, and the
/// limiter never heard it).
#[cfg(feature = "adaptive_rate")]
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_an_adaptive_limiter() {
    use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
    let sink = SignalSink::default();
    let limiter =
        AdaptiveRate::new(&sink, AdaptiveRateOptions::default().listen_on("http.*")).unwrap();
    let client = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(Downstream::default().service());
    let response = client
        .oneshot(get("http://api.test/status/429/retry-after/5"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limiter.throttles(), 1);
    assert_eq!(limiter.paused_for(), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn the_error_classifier_decides_which_statuses_signal() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default().error_when(|s| s.is_server_error());
    let client = SignalingLayer::new(&sink, options)
        .unwrap()
        .layer(Downstream::default().service());
    client
        .clone()
        .oneshot(get("http://a/status/404"))
        .await
        .unwrap();
    assert!(!sink.has_signal("http.*"));
    client.oneshot(get("http://a/status/500")).await.unwrap();
    assert_eq!(sink.count("http.error.500"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_transport_error_is_signalled_and_returned_as_the_inner_error() {
    let sink = SignalSink::default();
    let client = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(Downstream::default().service());
    let error = client
        .oneshot(get("http://db.test/refuse"))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "connection refused by db.test");
    assert_eq!(error.into_inner(), Some(Refused("db.test".into())));
    let signal = sink.latest("http.*").unwrap();
    assert_eq!(signal.name().as_str(), "http.error.transport");
    assert_eq!(signal.key(), Some("db.test"));
    assert_eq!(header(&signal, "status"), None);
}

#[tokio::test(start_paused = true)]
async fn no_response_within_the_timeout_fails_and_raises_http_timeout() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default()
        .timeout(Duration::from_secs(1))
        .slow_after(Duration::from_millis(200));
    let layer = SignalingLayer::new(&sink, options).unwrap();
    let client = layer.layer(Downstream::default().service());
    let started = tokio::time::Instant::now();
    let error = client
        .oneshot(get("http://slow.test/sleep/5000"))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(error.is_timeout());
    assert!(matches!(error, SignalingError::Timeout(d) if d == Duration::from_secs(1)));
    assert_eq!(
        error.to_string(),
        "no http response within 1s: the server is slow or unreachable; retry later or raise the timeout"
    );
    let signal = sink.latest("http.timeout").unwrap();
    assert_eq!(signal.key(), Some("slow.test"));
    assert_eq!(header(&signal, "elapsed_ms"), Some(HeaderValue::Int(1000)));
    assert!(!sink.has_signal("http.slow"), "a timeout is not also slow");
    assert_eq!(layer.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_response_ready_at_the_deadline_is_not_a_timeout() {
    let sink = SignalSink::default();
    let client = SignalingLayer::new(
        &sink,
        SignalingOptions::default().timeout(Duration::from_secs(1)),
    )
    .unwrap()
    .layer(Downstream::default().service());
    let response = client.oneshot(get("http://a/sleep/1000")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(sink.is_empty());
}

#[tokio::test(start_paused = true)]
async fn calls_at_or_past_the_slow_threshold_raise_http_slow() {
    let sink = SignalSink::default();
    let layer = SignalingLayer::new(
        &sink,
        SignalingOptions::default().slow_after(Duration::from_millis(300)),
    )
    .unwrap();
    let client = layer.layer(Downstream::default().service());
    client
        .clone()
        .oneshot(get("http://a/sleep/299"))
        .await
        .unwrap();
    assert!(sink.is_empty(), "just under the threshold");
    client
        .clone()
        .oneshot(get("http://a/sleep/300"))
        .await
        .unwrap();
    let slow = sink.latest("http.slow").unwrap();
    assert_eq!(header(&slow, "elapsed_ms"), Some(HeaderValue::Int(300)));
    assert_eq!(header(&slow, "status"), Some(HeaderValue::Int(200)));
    // Slow and failing: both facts are signalled.
    client
        .oneshot(get("http://a/sleep/450/status/502"))
        .await
        .unwrap();
    assert_eq!(sink.count("http.slow"), 2);
    assert_eq!(sink.count("http.error.502"), 1);
    assert_eq!(layer.stats().slow, 2);
}

#[tokio::test(start_paused = true)]
async fn signals_carry_the_coordinator_operation_that_made_the_call() {
    let sink = SignalSink::default();
    let layer = SignalingLayer::new(&sink, SignalingOptions::default()).unwrap();
    let client = layer.layer(Downstream::default().service());
    let coordinator = EphemeralWorkCoordinator::new(
        move |code: u16, _ctx: OperationContext| {
            let client = client.clone();
            async move {
                let uri = format!("http://orders.test/sleep/10/status/{code}");
                client.oneshot(get(&uri)).await.map(drop)
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone()),
    )
    .unwrap();
    let mut ids = Vec::new();
    for code in [500, 200, 404, 503] {
        ids.push((code, coordinator.enqueue(code).await.unwrap()));
    }
    coordinator.drain().await.unwrap();
    for (code, id) in ids {
        let signals = sink.signals_of(id);
        if code == 200 {
            assert!(signals.is_empty());
        } else {
            assert_eq!(signals.len(), 1, "{code}");
            assert_eq!(signals[0].name().as_str(), format!("http.error.{code}"));
            assert_eq!(signals[0].key(), Some("orders.test"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_made_outside_the_operation_but_awaited_inside_it_is_still_tagged() {
    let sink = SignalSink::default();
    let mut client = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(Downstream::default().service());
    client.ready().await.unwrap();
    let pending = client.call(get("http://a/status/500"));
    let id = OperationId::from_raw(4242);
    with_operation(id, pending).await.unwrap();
    assert_eq!(sink.latest("http.error.500").unwrap().operation(), Some(id));
}

fn breaker_for(sink: &SignalSink, options: &SignalingOptions) -> CircuitBreaker {
    CircuitBreaker::new(
        sink,
        CircuitBreakerOptions::default()
            .failure_on(&options.failure_pattern())
            .consecutive_failures(3)
            .open_for(Duration::from_secs(10)),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn http_failures_open_the_breaker_which_then_refuses_without_calling() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default().timeout(Duration::from_secs(2));
    let breaker = breaker_for(&sink, &options);
    let layer = SignalingLayer::with_breaker(&breaker, options).unwrap();
    let downstream = Downstream::default();
    let client = layer.layer(downstream.clone().service());

    // A 404 is not a server failure: it does not count, and it resets the run of failures.
    for uri in [
        "http://pay.test/status/500",
        "http://pay.test/status/404",
        "http://pay.test/refuse",
        "http://pay.test/sleep/9000",
    ] {
        let _ = client.clone().oneshot(get(uri)).await;
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    let _ = client
        .clone()
        .oneshot(get("http://pay.test/status/503"))
        .await;
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(sink.has_signal("circuit.open"));
    assert_eq!(downstream.calls(), 5);

    let error = client
        .clone()
        .oneshot(get("http://pay.test/status/200"))
        .await
        .unwrap_err();
    assert!(error.is_circuit_open());
    let SignalingError::CircuitOpen(open) = &error else {
        unreachable!()
    };
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    assert_eq!(
        downstream.calls(),
        5,
        "a refused call never reaches the network"
    );
    assert_eq!(layer.stats().refused, 1);

    // Half-open: one probe goes through; its answer closes the breaker.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let response = client
        .clone()
        .oneshot(get("http://pay.test/status/200"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(downstream.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_times_out_reopens_and_a_dropped_probe_frees_its_slot() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default().timeout(Duration::from_secs(1));
    let breaker = breaker_for(&sink, &options);
    let client = SignalingLayer::with_breaker(&breaker, options)
        .unwrap()
        .layer(Downstream::default().service());
    breaker.trip();
    tokio::time::sleep(Duration::from_secs(10)).await;

    // The caller gives up on the probe before it ends: the slot comes back.
    let mut probe_client = client.clone();
    probe_client.ready().await.unwrap();
    let probe = probe_client.call(get("http://a/sleep/500"));
    assert_eq!(breaker.probes_admitted(), 1);
    let refused = client.clone().oneshot(get("http://a/")).await.unwrap_err();
    assert!(refused.is_circuit_open());
    drop(probe);
    assert_eq!(breaker.probes_admitted(), 0);

    // A probe that times out is a failure: the breaker reopens.
    let error = client
        .clone()
        .oneshot(get("http://a/sleep/5000"))
        .await
        .unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.times_opened(), 2);
}

/// A call whose future is dropped before it ends (an outer timeout, a caller that gave up)
/// used to vanish from the stats: counted in `calls` and in no outcome. It is counted as
/// abandoned, once, and raises nothing; a call that ended (answered, timed out) is not.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_it_ends_is_counted_as_abandoned() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default().timeout(Duration::from_secs(1));
    let layer = SignalingLayer::new(&sink, options).unwrap();
    let mut client = layer.layer(Downstream::default().service());
    client.ready().await.unwrap();
    let mut call = Box::pin(client.call(get("http://a/sleep/500")));
    assert!(futures::poll!(call.as_mut()).is_pending());
    drop(call);
    // Never polled at all: abandoned too.
    client.ready().await.unwrap();
    drop(client.call(get("http://a/")));
    client.clone().oneshot(get("http://a/")).await.unwrap();
    let timed_out = client.clone().oneshot(get("http://a/sleep/5000")).await;
    assert!(timed_out.unwrap_err().is_timeout());
    let stats = layer.stats();
    assert_eq!(
        (
            stats.calls,
            stats.responses,
            stats.timeouts,
            stats.abandoned
        ),
        (4, 1, 1, 2)
    );
    // The timeout's signal, and nothing for the abandoned calls.
    assert_eq!(sink.count("*"), 1);
    assert!(sink.has_signal("http.timeout"));
}

#[tokio::test(start_paused = true)]
async fn a_probe_answered_with_a_client_error_still_closes() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default();
    let breaker = breaker_for(&sink, &options);
    let client = SignalingLayer::with_breaker(&breaker, options)
        .unwrap()
        .layer(Downstream::default().service());
    breaker.trip();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let response = client.oneshot(get("http://a/status/404")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(sink.count("http.error.404"), 1);
    assert_eq!(breaker.state(), CircuitState::Closed, "the server answered");
}

/// A failure signal the sink refuses (here: more headers than it allows) still reaches the
/// breaker as a failure: a half-open probe answered 503 reopens it, not closes it.
#[tokio::test(start_paused = true)]
async fn a_failure_signal_the_sink_refuses_still_counts_as_a_failure() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_headers(2)).unwrap();
    let options = SignalingOptions::default();
    let breaker = breaker_for(&sink, &options);
    let layer = SignalingLayer::with_breaker(&breaker, options).unwrap();
    let client = layer.layer(Downstream::default().service());
    breaker.trip();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let response = client.oneshot(get("http://a/status/503")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(layer.stats().raise_failures, 1, "the signal was refused");
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "a failed probe reopens"
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_options_are_typed_errors() {
    let sink = SignalSink::default();
    let zero = SignalingLayer::new(&sink, SignalingOptions::default().timeout(Duration::ZERO));
    assert_eq!(zero.unwrap_err(), SignalingConfigError::ZeroTimeout);
    let zero = SignalingLayer::new(
        &sink,
        SignalingOptions::default().slow_after(Duration::ZERO),
    );
    assert_eq!(zero.unwrap_err(), SignalingConfigError::ZeroSlow);
    // A slow threshold past the timeout could never fire (it used to be accepted); one equal
    // to it fires for a response ready at the deadline.
    let never = SignalingLayer::new(
        &sink,
        SignalingOptions::default()
            .timeout(Duration::from_secs(1))
            .slow_after(Duration::from_secs(2)),
    );
    let err = never.unwrap_err();
    assert_eq!(
        err,
        SignalingConfigError::SlowPastTimeout {
            slow: Duration::from_secs(2),
            timeout: Duration::from_secs(1)
        }
    );
    assert!(err.to_string().contains("below the timeout"), "{err}");
    let at_deadline = SignalingLayer::new(
        &sink,
        SignalingOptions::default()
            .timeout(Duration::from_secs(1))
            .slow_after(Duration::from_secs(1)),
    )
    .unwrap()
    .layer(Downstream::default().service());
    at_deadline
        .oneshot(get("http://a/sleep/1000"))
        .await
        .unwrap();
    assert_eq!(sink.count("http.slow"), 1);
    let bad = SignalingLayer::new(&sink, SignalingOptions::default().prefix("has space"));
    assert!(matches!(bad, Err(SignalingConfigError::Prefix(_))));
    // An empty prefix would name the signals `.error.503`, `.timeout`, ...
    for empty in ["", " "] {
        let refused = SignalingLayer::new(&sink, SignalingOptions::default().prefix(empty));
        assert_eq!(
            refused.unwrap_err(),
            SignalingConfigError::EmptyPrefix,
            "{empty:?}"
        );
    }
    // The dot after the prefix is added: one given with it would leave an empty segment
    // (`http..error.503`), and so would a leading one.
    for dotted in ["http.", ".http", "."] {
        let refused = SignalingLayer::new(&sink, SignalingOptions::default().prefix(dotted));
        let err = refused.unwrap_err();
        assert!(err.to_string().contains("dot"), "{dotted:?}: {err}");
    }
    let custom = SignalingLayer::new(&sink, SignalingOptions::default().prefix("upstream.http"))
        .unwrap()
        .layer(Downstream::default().service());
    custom.oneshot(get("http://a/status/500")).await.unwrap();
    assert_eq!(sink.count("upstream.http.error.500"), 1);
}

#[tokio::test(start_paused = true)]
async fn readiness_and_errors_of_an_infallible_inner_service_pass_through() {
    let sink = SignalSink::default();
    let mut client = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
    let response = client.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// An inner service whose readiness check fails, as a client with a closed pool does.
#[derive(Clone)]
struct NeverReady;

impl Service<Request<()>> for NeverReady {
    type Response = Response<()>;
    type Error = Refused;
    type Future = std::future::Ready<Result<Response<()>, Refused>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Refused>> {
        std::task::Poll::Ready(Err(Refused("the pool is closed".into())))
    }

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_is_a_transport_error_signalled_counted_and_seen_by_the_breaker() {
    let sink = SignalSink::default();
    let options = SignalingOptions::default();
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .failure_on(&options.failure_pattern())
            .consecutive_failures(1),
    )
    .unwrap();
    let layer = SignalingLayer::with_breaker(&breaker, options).unwrap();
    let error = layer
        .layer(NeverReady)
        .oneshot(get("http://db.test/x"))
        .await
        .unwrap_err();
    assert_eq!(
        error.into_inner(),
        Some(Refused("the pool is closed".into()))
    );
    let signal = sink.latest("http.*").unwrap();
    assert_eq!(signal.name().as_str(), "http.error.transport");
    // No request yet: no host, no method.
    assert_eq!(signal.key(), None);
    assert_eq!(header(&signal, "method"), None);
    let stats = layer.stats();
    assert_eq!((stats.calls, stats.transport_errors), (0, 1));
    assert_eq!(breaker.state(), CircuitState::Open);
}

/// Polls `future` once on this thread, with no runtime and no executor: enough for futures
/// that are ready at once.
fn poll_once<F: Future>(future: F) -> std::task::Poll<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::pin!(future).poll(&mut context)
}

/// The timeout needs tokio's timer: outside any runtime a call fails with a typed error
/// instead of panicking, and the downstream is not called.
#[test]
fn a_call_with_a_timeout_outside_a_runtime_is_a_typed_error() {
    let sink = SignalSink::default();
    let layer = SignalingLayer::new(
        &sink,
        SignalingOptions::default().timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let downstream = Downstream::default();
    let client = layer.layer(downstream.clone().service());
    let std::task::Poll::Ready(result) = poll_once(client.oneshot(get("http://a/status/200")))
    else {
        panic!("a refused call is ready at once");
    };
    let error = result.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("inside a tokio runtime with the time driver")
    );
    assert!(matches!(error, SignalingError::NoRuntime));
    assert_eq!(downstream.calls(), 0);
    assert_eq!(layer.stats().calls, 0);
    assert!(!sink.has_signal("http.*"));

    // Without a timeout, no runtime is needed.
    let untimed = SignalingLayer::new(&sink, SignalingOptions::default())
        .unwrap()
        .layer(downstream.clone().service());
    let std::task::Poll::Ready(response) = poll_once(untimed.oneshot(get("http://a/status/200")))
    else {
        panic!("the downstream answers at once");
    };
    assert_eq!(response.unwrap().status(), StatusCode::OK);
}
