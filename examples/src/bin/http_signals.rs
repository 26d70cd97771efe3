//! The signaling HTTP layer: HTTP failures become signals, and the signals open a breaker.
//!
//! A small inventory server starts on 127.0.0.1 (a random port). An order coordinator checks
//! stock for each order with a real HTTP client (hyper-util's) wrapped in `SignalingLayer`.
//! Then the server falls over on purpose: it answers 503, hangs past the client's 300 ms
//! timeout, or takes 200 ms (slow). Each of those raises `http.error.503`, `http.timeout` or
//! `http.slow`, keyed by the host and tagged with the order's operation id. The circuit
//! breaker counts server errors and timeouts; after three it opens, and the layer refuses the
//! next calls at once without sending them. The server recovers, the breaker goes half-open,
//! one probe gets an answer and the breaker closes. Runs about a second and a half.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions};
use ephemeral_patterns::http::{SignalingError, SignalingLayer, SignalingOptions};
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tower::{ServiceBuilder, ServiceExt};

/// The inventory server's behaviour: healthy, or failing in every way a server can.
#[derive(Default)]
struct Inventory {
    down: AtomicBool,
    served: AtomicU64,
}

async fn inventory(
    _request: Request<Incoming>,
    state: Arc<Inventory>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = state.served.fetch_add(1, Ordering::Relaxed);
    let (delay, status) = if state.down.load(Ordering::Relaxed) {
        match n % 4 {
            0 | 2 => (Duration::ZERO, StatusCode::SERVICE_UNAVAILABLE),
            1 => (Duration::from_secs(2), StatusCode::OK), // hangs past the client's timeout
            _ => (Duration::from_millis(200), StatusCode::OK), // slow, but answers
        }
    } else {
        (Duration::from_millis(5), StatusCode::OK)
    };
    sleep(delay).await;
    let mut response = Response::new(Full::new(Bytes::from_static(b"in stock")));
    *response.status_mut() = status;
    Ok(response)
}

/// Serves `state` on 127.0.0.1 at a port the system picks; returns the port.
async fn start_server(state: Arc<Inventory>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| inventory(request, state.clone()));
                // A client that gave up (timed out) closes its connection: not worth a word.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(port)
}

/// Waits until every order enqueued so far has finished.
async fn settled<T: Send + 'static>(orders: &EphemeralWorkCoordinator<T>) {
    while orders.pending_count() + orders.active_count() > 0 {
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Arc::new(Inventory::default());
    let port = start_server(server.clone()).await?;
    let start = Instant::now();
    let ms = move || start.elapsed().as_millis();
    println!("inventory server on http://127.0.0.1:{port}\n");

    let sink = SignalSink::default();
    // Registered before the breaker's own listener, so each signal prints before the
    // transition it causes.
    let _http = sink.on_signal("http.*", move |s| {
        let op = s.operation().map(|id| id.to_string()).unwrap_or_default();
        let elapsed = s
            .header("elapsed_ms")
            .map(|v| v.to_string())
            .unwrap_or_default();
        println!(
            "{:>5} ms  {op:<6}   signal {:<15} key {} after {elapsed} ms",
            ms(),
            s.name(),
            s.key().unwrap_or("-"),
        );
    });
    let options = SignalingOptions::default()
        .timeout(Duration::from_millis(300))
        .slow_after(Duration::from_millis(150));
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            // http.error.5*, http.error.transport, http.timeout: the server's fault, not ours.
            .failure_on(&options.failure_pattern())
            .failures_within(3, Duration::from_secs(10))
            .open_for(Duration::from_secs(1)),
    )?;
    let layer = SignalingLayer::with_breaker(&breaker, options)?;
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());

    let _circuit = sink.on_signal("circuit.*", move |s| {
        println!("{:>5} ms  ======   breaker: {}", ms(), s.name());
    });

    let orders = EphemeralWorkCoordinator::new(
        move |order: u32, ctx: OperationContext| {
            let client = client.clone();
            async move {
                let uri = format!("http://127.0.0.1:{port}/stock/{order}");
                let outcome = client.oneshot(Request::get(uri).body(Empty::new())?).await;
                let line = match &outcome {
                    Ok(response) => format!("{}", response.status()),
                    Err(SignalingError::CircuitOpen(open)) => {
                        format!("refused without a request ({open})")
                    }
                    Err(e) => e.to_string(),
                };
                println!("{:>5} ms  {:<6}   order {order:>2}: {line}", ms(), ctx.id());
                match outcome {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("inventory answered {}", response.status()).into()),
                    Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                }
            }
        },
        EphemeralOptions::default()
            .max_concurrency(2)
            .signals(sink.clone()),
    )?;

    println!("-- the inventory server is healthy");
    for order in 1..=4 {
        orders.enqueue(order).await?;
    }
    settled(&orders).await;

    println!("\n-- the inventory server falls over (503s, hangs, slow answers)");
    server.down.store(true, Ordering::Relaxed);
    for order in 5..=14 {
        orders.enqueue(order).await?;
        sleep(Duration::from_millis(40)).await;
    }
    settled(&orders).await;

    println!("\n-- the server recovers; the breaker waits out its open period");
    server.down.store(false, Ordering::Relaxed);
    if let Some(wait) = breaker.time_until_close() {
        sleep(wait).await;
    }
    orders.enqueue(15).await?; // the half-open breaker's probe
    settled(&orders).await;
    for order in 16..=18 {
        orders.enqueue(order).await?;
    }
    orders.drain().await?;

    let stats = orders.stats();
    let http = layer.stats();
    let mut signals: BTreeMap<String, usize> = BTreeMap::new();
    for signal in sink.sense("http.*") {
        *signals.entry(signal.name().to_string()).or_default() += 1;
    }
    println!("\nsummary");
    println!(
        "  orders:  {} completed, {} failed ({} of them refused at once by the open breaker)",
        stats.completed, stats.failed, http.refused
    );
    println!(
        "  http:    {} calls, {} answered, {} timed out, {} refused by the open breaker (never sent)",
        http.calls, http.responses, http.timeouts, http.refused
    );
    let signals: Vec<String> = signals.iter().map(|(n, c)| format!("{n} x{c}")).collect();
    println!("  signals: {}", signals.join(", "));
    println!(
        "  breaker: opened {} time(s), now {}",
        breaker.times_opened(),
        breaker.state()
    );
    if let Some(timeout) = sink.latest("http.timeout")
        && let Some(id) = timeout.operation()
    {
        let names: Vec<String> = sink
            .signals_of(id)
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        println!(
            "  {id} (the order that hit the hang) raised: {}",
            names.join(", ")
        );
    }
    // What this example shows, checked (CI runs it with its output discarded): the failures
    // opened the breaker, the open breaker refused calls without sending them, and the
    // probe after the recovery closed it again.
    let shown = breaker.times_opened() >= 1
        && http.refused >= 1
        && breaker.state() == ephemeral_patterns::circuit_breaker::CircuitState::Closed;
    if !shown {
        return Err(format!(
            "the breaker did not open, refuse and close again: opened {} time(s), {} refused, now {}",
            breaker.times_opened(),
            http.refused,
            breaker.state()
        )
        .into());
    }
    Ok(())
}
