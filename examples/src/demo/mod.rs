//! The order pipeline behind the demo.
//!
//! ```text
//! orders ──► intake (FIFO, 1 worker, defer_on "backpressure.*")
//!               │ validates, then forwards each order, waiting for room
//!               ▼
//!            payments (keyed by customer, 8 workers, defer_on "circuit.open",
//!                      admission hooks: the circuit breaker's probes, the backlog monitor)
//!               │ charges the flaky provider, retrying with exponential backoff;
//!               │ each failed call raises error.downstream.* (the breaker counts them)
//!               ▼
//!            notifications (FIFO, 2 workers, cancel_on "circuit.open": shed while in trouble)
//! ```
//!
//! A [`Backpressure`] hold follows the payments backlog (reported by the intake after each
//! hand-over, and by the patterns' monitor, woken by the payments' admission hook on every
//! start): above 40 waiting payments it holds `backpressure.payments`, which defers the intake
//! until the backlog falls under 10. In the middle of the run the provider has an incident:
//! most calls fail, the breaker opens (`circuit.open`), payments are parked by their
//! `defer_on`, the backlog grows, the intake is deferred; then the breaker goes half-open, its
//! admission hook lets two probes through, their success closes it, and everything drains.

mod downstream;
mod feed;
mod publish;
mod summary;
mod view;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ephemeral::{
    EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator, OperationContext,
    Signal, SignalSink, SinkOptions,
};
use ephemeral_atoms::retry::{Backoff, Jitter, Retry, RetryError};
use ephemeral_patterns::backpressure::Backpressure;
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, timeout};
use tokio_util::sync::CancellationToken;

use downstream::{Attempt, CallError, Downstream};
use feed::{Feed, FeedLine};
pub(crate) use summary::Summary;
use summary::{Latencies, Row};
pub(crate) use view::Output;
use view::{Frame, Lane, View};

/// Attempts per payment, the first included.
const MAX_ATTEMPTS: u32 = 4;
/// Waiting payments above which the intake is deferred, and below which it resumes.
const BACKLOG_HIGH: usize = 40;
const BACKLOG_LOW: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Orders to generate.
    pub(crate) items: u64,
    /// Share of calls that fail outside the incident.
    pub(crate) failure_rate: f64,
    /// Seed of every random choice.
    pub(crate) seed: u64,
    /// Distinct customers.
    pub(crate) customers: u32,
    /// Orders arriving per second.
    pub(crate) rate: u32,
    /// Payment workers.
    pub(crate) concurrency: usize,
    /// After this long, whatever is left is cancelled and the summary says so.
    pub(crate) budget: Duration,
    /// A bus to publish the coordinators' and the sink's live state on (`ephemeral top`).
    pub(crate) bus: Option<String>,
}

/// The error of a run that could not be set up.
pub(crate) type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// A customer: the key of the payments coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Customer(u32);

impl fmt::Display for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cust-{:02}", self.0)
    }
}

/// One order.
#[derive(Debug, Clone)]
struct Order {
    id: u64,
    customer: Customer,
    /// 1, 2, 3… per customer: payments of one customer must start in this order.
    seq: u32,
}

/// Per-customer bookkeeping that checks the keyed coordinator's promise.
#[derive(Debug, Default)]
struct CustomerLog {
    last_seq: u32,
    in_flight: u32,
}

/// What the payment bodies share.
#[derive(Debug)]
struct Payments {
    downstream: Downstream,
    breaker: CircuitBreaker,
    retry: Retry<CallError>,
    /// Confirmations to send, by order id.
    notifications: EphemeralWorkCoordinator<u64>,
    customers: Mutex<HashMap<Customer, CustomerLog>>,
    violations: AtomicU64,
    seed: u64,
}

impl Payments {
    /// Notes that `order` started; counts it as a violation if an earlier payment of the
    /// same customer is still running or a later one already started.
    fn started(&self, order: &Order) {
        let mut customers = self
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let log = customers.entry(order.customer).or_default();
        if log.in_flight > 0 || order.seq <= log.last_seq {
            // Relaxed: a plain counter, read after every body has ended.
            self.violations.fetch_add(1, Ordering::Relaxed);
        }
        log.in_flight += 1;
        log.last_seq = order.seq;
    }

    fn ended(&self, customer: Customer) {
        let mut customers = self
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(log) = customers.get_mut(&customer) {
            log.in_flight = log.in_flight.saturating_sub(1);
        }
    }

    /// Charges one order, retrying with backoff; the body of the payments coordinator.
    async fn pay(&self, order: Order, ctx: OperationContext) -> Result<(), String> {
        self.started(&order);
        let outcome = {
            // Ends the payment's in-flight mark even if the body is dropped mid-call.
            let _in_flight = InFlight {
                payments: self,
                customer: order.customer,
            };
            self.charge(&order, &ctx).await
        };
        match outcome {
            // The breaker hears of successes and probe outcomes from `on_finalized`
            // (`CircuitBreaker::observe`), and of failed calls from their signals.
            Ok(()) => self
                .notifications
                .enqueue(order.id)
                .await
                .map(drop)
                .map_err(|e| format!("paid, but the notification was not queued: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn charge(
        &self,
        order: &Order,
        ctx: &OperationContext,
    ) -> Result<(), RetryError<CallError>> {
        // The order's own generator: its attempts draw the same numbers in every run with
        // this seed, whatever the scheduling.
        let mut rng = SmallRng::seed_from_u64(self.seed ^ order.id.wrapping_mul(0x9E37_79B9));
        let attempts: Vec<Attempt> = (0..MAX_ATTEMPTS).map(|_| Attempt::draw(&mut rng)).collect();
        let attempts = &attempts;
        let customer = order.customer.to_string();
        let customer = customer.as_str();
        self.retry
            .run_with_cancel(ctx.token(), |n| async move {
                if n > 1 && self.breaker.state() == CircuitState::Open {
                    return Err(CallError::CircuitOpen);
                }
                let index = usize::try_from(n.saturating_sub(1)).unwrap_or(0);
                let attempt = attempts[index.min(attempts.len() - 1)];
                let result = self.downstream.charge(attempt).await;
                if let Err(e) = result
                    && let Some(name) = e.signal()
                {
                    // The breaker listens for error.downstream.*; the signal carries the
                    // operation id (through the context) and the customer.
                    let raised = Signal::build(name)
                        .map_err(|e| e.to_string())
                        .and_then(|b| ctx.signal_with(b.key(customer)).map_err(|e| e.to_string()));
                    if let Err(reason) = raised {
                        eprintln!("could not raise {name}: {reason}");
                    }
                }
                result
            })
            .await
    }
}

/// Marks one payment of a customer as running until dropped.
struct InFlight<'a> {
    payments: &'a Payments,
    customer: Customer,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.payments.ended(self.customer);
    }
}

/// Runs the pipeline and returns its summary.
pub(crate) async fn run(config: &Config, output: Output) -> Result<Summary, DemoError> {
    let start = Instant::now();
    let items = config.items;
    let intake_time = Duration::from_secs_f64(items as f64 / f64::from(config.rate.max(1)));
    // The incident: from a quarter to 45 % of the way through the arrivals.
    let incident = intake_time.mul_f64(0.25)..intake_time.mul_f64(0.45);

    let sink = SignalSink::new(
        SinkOptions::default()
            .capacity(4096)
            .max_age(Duration::from_secs(10)),
    )?;
    let feed = Feed::attach(&sink, start);
    // Calm traffic fails a few times a second; the incident fails dozens of times a second.
    let breaker = CircuitBreaker::new(
        &sink,
        CircuitBreakerOptions::default()
            .failure_on("error.downstream.*")
            .failures_within(15, Duration::from_secs(1))
            .open_for(Duration::from_millis(500))
            .backoff(2.0, Duration::from_secs(2))
            .probes(2, 2),
    )?;
    let pressure = Backpressure::new(&sink, "payments", BACKLOG_HIGH, BACKLOG_LOW)?;
    let room = usize::try_from(items)
        .unwrap_or(usize::MAX)
        .saturating_add(1);

    let notify_latency = Latencies::default();
    let notifications = {
        let latency = notify_latency.clone();
        EphemeralWorkCoordinator::new(
            |_order: u64, _ctx: OperationContext| async move {
                sleep(Duration::from_millis(15)).await; // the mail provider
                Ok::<_, Infallible>(())
            },
            EphemeralOptions::default()
                .name("notifications")
                .max_concurrency(2)
                .max_pending(room)
                .signals(sink.clone())
                .cancel_on("circuit.open")
                .on_finalized(move |s| latency.record(s)),
        )?
    };

    let pay_latency = Latencies::default();
    let retry = Retry::new(
        Backoff::exponential(Duration::from_millis(40))
            .max_delay(Duration::from_millis(400))
            .jitter(Jitter::Equal)
            .seed(config.seed),
    )
    .max_attempts(MAX_ATTEMPTS)
    .expect("MAX_ATTEMPTS is at least 1")
    .when(|e: &CallError| e.is_retryable())
    .signals(sink.clone())
    .name("payments");
    let shared = Arc::new(Payments {
        downstream: Downstream::new(start, incident, config.failure_rate),
        breaker: breaker.clone(),
        retry,
        notifications: notifications.clone(),
        customers: Mutex::new(HashMap::new()),
        violations: AtomicU64::new(0),
        seed: config.seed,
    });
    let payments = {
        let latency = pay_latency.clone();
        let observer = breaker.observer();
        let shared = shared.clone();
        EphemeralKeyedWorkCoordinator::with_admission(
            move |order: Order, ctx: OperationContext| {
                let shared = shared.clone();
                async move { shared.pay(order, ctx).await }
            },
            EphemeralOptions::default()
                .name("payments")
                .max_concurrency(config.concurrency)
                .max_pending(64)
                .signals(sink.clone())
                // While the breaker holds circuit.open, nothing starts; items wait holding
                // no slot (a payment should wait for the provider, not be dropped).
                .defer_on("circuit.open")
                .on_finalized(move |s| {
                    latency.record(s);
                    observer(s);
                }),
            // After the built-in defer rule: the breaker's half-open probes, then the
            // backlog monitor's wake-up on every start.
            vec![breaker.admission(), pressure.admission()],
        )?
    };

    // Keeps the backpressure hold in step with the payments backlog: re-read on every payment
    // start (the admission hook above wakes it), so the hold is released even while the
    // intake is deferred and reports nothing. Stops with the payments coordinator.
    let _monitor = pressure.monitor(&payments)?;

    let intake_latency = Latencies::default();
    let intake = {
        let latency = intake_latency.clone();
        let payments = payments.clone();
        let pressure = pressure.clone();
        EphemeralWorkCoordinator::new(
            move |order: Order, _ctx: OperationContext| {
                let payments = payments.clone();
                let pressure = pressure.clone();
                async move {
                    sleep(Duration::from_millis(2)).await; // validation, fraud check
                    payments
                        .enqueue(order.customer, order)
                        .await
                        .map_err(|e| format!("payments refused the order: {e}"))?;
                    // The backlog just grew: take the hold now if it crossed the high
                    // watermark, before the intake starts its next order.
                    pressure.report(&payments);
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default()
                .name("intake")
                // One worker: the intake must hand a customer's orders to payments in the
                // order they were placed (two workers could race to enqueue them).
                .max_concurrency(1)
                .max_pending(room)
                .signals(sink.clone())
                .defer_on("backpressure.*")
                .on_finalized(move |s| latency.record(s)),
        )?
    };

    // Live state for `ephemeral top`, while the run lasts.
    let _published = match &config.bus {
        Some(bus) => Some(publish::publish(bus, &sink, &intake, &payments, &notifications).await?),
        None => None,
    };

    // The orders, generated up front from the seed.
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let customers = config.customers.max(1);
    let mut seqs = vec![0u32; customers as usize];
    let orders: Vec<Order> = (0..items)
        .map(|id| {
            let c = rng.random_range(0..customers);
            seqs[c as usize] += 1;
            Order {
                id,
                customer: Customer(c),
                seq: seqs[c as usize],
            }
        })
        .collect();

    // The view: a frame every 100 ms (only what is shown is sampled; the pipeline itself
    // reacts to signals and wake-ups, never to this loop).
    let stop = CancellationToken::new();
    let watcher = {
        let stop = stop.clone();
        let (intake, payments, notifications) =
            (intake.clone(), payments.clone(), notifications.clone());
        let (breaker, pressure, feed, downstream) = (
            breaker.clone(),
            pressure.clone(),
            feed.clone(),
            shared.clone(),
        );
        tokio::spawn(async move {
            let mut view = View::new(output);
            let mut tick = interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut held = false;
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    () = stop.cancelled() => true,
                };
                let now_held = pressure.is_held();
                if held && !now_held {
                    feed.note(FeedLine {
                        at: start.elapsed(),
                        name: "backpressure.payments released".to_owned(),
                        key: None,
                        notable: true,
                    });
                }
                held = now_held;
                let frame = Frame {
                    at: start.elapsed(),
                    lanes: vec![
                        Lane {
                            name: "intake",
                            stats: intake.stats(),
                            expected: items,
                        },
                        Lane {
                            name: "payments",
                            stats: payments.stats(),
                            expected: items,
                        },
                        Lane {
                            name: "notifications",
                            stats: notifications.stats(),
                            expected: payments.stats().completed,
                        },
                    ],
                    circuit: breaker.state().to_string(),
                    backpressure: now_held,
                    incident: downstream.downstream.in_incident(),
                    recent: feed.recent(),
                };
                let notable = feed.take_notable();
                let shown = if stopping {
                    view.finish(&frame, &notable)
                } else {
                    view.show(&frame, &notable)
                };
                // A closed stdout (say, `| head`) must not stop the pipeline.
                let _ = shown;
                if stopping {
                    break;
                }
            }
        })
    };

    let work = async {
        let mut arrivals = interval(Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1))));
        arrivals.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for order in orders {
            arrivals.tick().await;
            intake
                .enqueue(order)
                .await
                .map_err(|e| format!("intake refused an order: {e}"))?;
        }
        // Downstream first waits for upstream: each drain ends once everything it was given
        // has ended, and nothing more can arrive from the stage before.
        intake.drain().await?;
        payments.drain().await?;
        notifications.drain().await?;
        Ok::<_, DemoError>(())
    };
    let timed_out = match timeout(config.budget, work).await {
        Ok(result) => {
            result?;
            false
        }
        Err(_) => {
            // Out of time: cancel what is left (pending items end Cancelled(Shutdown),
            // running bodies see their tokens) and wait for that to settle.
            intake.cancel();
            payments.cancel();
            notifications.cancel();
            for left in [
                intake.drain_timeout(Duration::from_secs(1)).await,
                payments.drain_timeout(Duration::from_secs(1)).await,
                notifications.drain_timeout(Duration::from_secs(1)).await,
            ] {
                if let Err(unfinished) = left {
                    eprintln!(
                        "{} operations unfinished after the cancel",
                        unfinished.len()
                    );
                }
            }
            true
        }
    };
    stop.cancel();
    watcher.await?;

    let row = |name, stats, latency: &Latencies| Row {
        name,
        stats,
        p50: latency.quantile(0.50),
        p99: latency.quantile(0.99),
    };
    Ok(Summary {
        items,
        elapsed: start.elapsed(),
        rows: vec![
            row("intake", intake.stats(), &intake_latency),
            row("payments", payments.stats(), &pay_latency),
            row("notifications", notifications.stats(), &notify_latency),
        ],
        signals: feed.by_name(),
        breaker_opened: breaker.times_opened(),
        backpressure_held: pressure.times_held(),
        customers: shared
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len(),
        // Relaxed: every body has ended (drained) before this read.
        order_violations: usize::try_from(shared.violations.load(Ordering::Relaxed))
            .unwrap_or(usize::MAX),
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(items: u64, seed: u64) -> Config {
        Config {
            items,
            failure_rate: 0.05,
            seed,
            customers: 12,
            rate: 60,
            concurrency: 8,
            budget: Duration::from_secs(25),
            bus: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_summary_adds_up_and_the_incident_trips_the_breaker() {
        let summary = run(&config(300, 42), Output::Quiet).await.unwrap();
        assert_eq!(summary.problems(), Vec::<String>::new());
        assert!(!summary.timed_out);
        let payments = summary.row("payments").unwrap().stats;
        assert_eq!(payments.accepted, 300);
        assert!(payments.completed > 0);
        assert!(
            summary.breaker_opened >= 1,
            "the incident should open the breaker"
        );
        assert!(summary.signals.get("circuit.open").copied().unwrap_or(0) >= 1);
        assert!(summary.customers > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_run_finishes_and_adds_up() {
        let summary = run(&config(40, 7), Output::Quiet).await.unwrap();
        assert_eq!(summary.problems(), Vec::<String>::new());
        assert_eq!(summary.row("intake").unwrap().stats.accepted, 40);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_out_of_time_cancels_the_rest_and_still_adds_up() {
        let mut config = config(300, 42);
        config.budget = Duration::from_secs(3);
        let summary = run(&config, Output::Quiet).await.unwrap();
        assert!(summary.timed_out);
        let problems = summary.problems();
        // The producer was stopped, so the intake saw fewer orders than planned...
        assert!(problems.iter().any(|p| p.starts_with("intake accepted")));
        // ...but every coordinator accounted for everything it accepted.
        assert!(
            !problems
                .iter()
                .any(|p| p.contains("do not add up") || p.contains("unfinished")),
            "{problems:?}"
        );
        let payments = summary.row("payments").unwrap().stats;
        assert!(payments.accepted > 0);
    }

    #[test]
    fn a_broken_count_is_reported() {
        let mut summary = Summary {
            items: 2,
            elapsed: Duration::ZERO,
            rows: Vec::new(),
            signals: Default::default(),
            breaker_opened: 0,
            backpressure_held: 0,
            customers: 0,
            order_violations: 1,
            timed_out: false,
        };
        let problems = summary.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("intake accepted 0 of 2"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("out of per-customer order"))
        );
        summary.order_violations = 0;
        assert!(
            !summary
                .problems()
                .iter()
                .any(|p| p.contains("per-customer"))
        );
    }
}
