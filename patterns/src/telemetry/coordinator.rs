//! Metrics for coordinators.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ephemeral::{CoordinatorStats, OperationSnapshot, OperationState};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter, ObservableGauge};

use crate::CoordinatorHandle;

type StatsSource = Arc<Mutex<Option<Box<dyn Fn() -> CoordinatorStats + Send + Sync>>>>;

/// OpenTelemetry counters and gauges for one coordinator, read from its
/// [`stats`](crate::CoordinatorHandle::stats) when the meter's reader collects.
///
/// Metric names (prefix `ephemeral.coordinator.`, attribute `coordinator` = its id):
/// `operations.enqueued`, `operations.completed`, `operations.failed`,
/// `operations.cancelled` (observable counters), `operations.running`,
/// `operations.pending`, `max_concurrency` (gauges). For the duration and queue-wait
/// histograms, see [`OperationRecorder`].
///
/// Holds a handle to the coordinator until dropped.
#[must_use = "the metrics stop being observed when this is dropped"]
pub struct CoordinatorMetrics {
    source: StatsSource,
    _counters: Vec<ObservableCounter<u64>>,
    _gauges: Vec<ObservableGauge<u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a stats callback panicked; the slot holds a handle, always valid.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CoordinatorMetrics {
    /// Starts reporting `coordinator` on `meter`.
    pub fn new<C: CoordinatorHandle>(coordinator: &C, meter: &Meter) -> Self {
        let handle = coordinator.clone();
        let source: StatsSource = Arc::new(Mutex::new(Some(Box::new(move || handle.stats()))));
        let attributes: Arc<[KeyValue]> =
            vec![KeyValue::new("coordinator", coordinator.id().to_owned())].into();
        let read = |field: fn(&CoordinatorStats) -> u64| {
            let source = source.clone();
            let attributes = attributes.clone();
            move |observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
                let stats = lock(&source).as_ref().map(|stats| stats());
                if let Some(stats) = stats {
                    observer.observe(field(&stats), &attributes);
                }
            }
        };
        let counter = |name: &'static str, description: &'static str, field| {
            meter
                .u64_observable_counter(name)
                .with_description(description)
                .with_callback(read(field))
                .build()
        };
        let gauge = |name: &'static str, description: &'static str, field| {
            meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_callback(read(field))
                .build()
        };
        let counters = vec![
            counter(
                "ephemeral.coordinator.operations.enqueued",
                "Items accepted",
                |s: &CoordinatorStats| s.accepted,
            ),
            counter(
                "ephemeral.coordinator.operations.completed",
                "Operations that completed",
                |s: &CoordinatorStats| s.completed,
            ),
            counter(
                "ephemeral.coordinator.operations.failed",
                "Operations that failed (errors and panics)",
                |s: &CoordinatorStats| s.failed,
            ),
            counter(
                "ephemeral.coordinator.operations.cancelled",
                "Operations that were cancelled",
                |s: &CoordinatorStats| s.cancelled,
            ),
        ];
        let gauges = vec![
            gauge(
                "ephemeral.coordinator.operations.running",
                "Operations running now",
                |s: &CoordinatorStats| s.running,
            ),
            gauge(
                "ephemeral.coordinator.operations.pending",
                "Items accepted and not started",
                |s: &CoordinatorStats| s.pending,
            ),
            gauge(
                "ephemeral.coordinator.max_concurrency",
                "The concurrency limit now",
                |s: &CoordinatorStats| s.max_concurrency,
            ),
        ];
        Self {
            source,
            _counters: counters,
            _gauges: gauges,
        }
    }
}

impl Drop for CoordinatorMetrics {
    fn drop(&mut self) {
        lock(&self.source).take();
    }
}

impl fmt::Debug for CoordinatorMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorMetrics")
            .field("attached", &lock(&self.source).is_some())
            .finish_non_exhaustive()
    }
}

/// Duration and queue-wait histograms, fed from a coordinator's `on_finalized` callback.
///
/// `ephemeral.coordinator.operation.duration` (seconds from start to finish) and
/// `ephemeral.coordinator.operation.queue_wait` (seconds from enqueue to start), with
/// attributes `coordinator` and `outcome` (`completed`, `failed`, `cancelled`). Operations
/// cancelled before they started record nothing: they have neither a duration nor a
/// finished queue wait (the `cancelled` counter of [`CoordinatorMetrics`] counts them).
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};
/// use ephemeral_patterns::telemetry::OperationRecorder;
/// use opentelemetry::metrics::MeterProvider as _;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let meter = opentelemetry::global::meter_provider().meter("my-app");
/// let recorder = OperationRecorder::new(&meter, "orders");
/// let coordinator = EphemeralWorkCoordinator::new(
///     |_: u32, _ctx| async { Ok::<_, std::io::Error>(()) },
///     EphemeralOptions::default().id("orders").on_finalized(recorder.callback()),
/// )?;
/// coordinator.enqueue(1).await?;
/// coordinator.drain().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OperationRecorder {
    duration: Histogram<f64>,
    queue_wait: Histogram<f64>,
    coordinator: Arc<str>,
}

impl OperationRecorder {
    /// Histograms on `meter` for the coordinator named `coordinator` (its id).
    pub fn new(meter: &Meter, coordinator: &str) -> Self {
        Self {
            duration: meter
                .f64_histogram("ephemeral.coordinator.operation.duration")
                .with_description("Seconds from an operation's start to its finish")
                .with_unit("s")
                .build(),
            queue_wait: meter
                .f64_histogram("ephemeral.coordinator.operation.queue_wait")
                .with_description("Seconds from an item's enqueue to its start")
                .with_unit("s")
                .build(),
            coordinator: coordinator.into(),
        }
    }

    /// Records one finished operation.
    pub fn record(&self, snapshot: &OperationSnapshot) {
        let outcome = match snapshot.state {
            OperationState::Completed => "completed",
            OperationState::Failed => "failed",
            OperationState::Cancelled(_) => "cancelled",
            _ => return,
        };
        let attributes = [
            KeyValue::new("coordinator", self.coordinator.to_string()),
            KeyValue::new("outcome", outcome),
        ];
        if let Some(started) = snapshot.started {
            let wait = started.saturating_duration_since(snapshot.enqueued);
            self.queue_wait.record(wait.as_secs_f64(), &attributes);
            if let Some(finished) = snapshot.finished {
                let took = finished.saturating_duration_since(started);
                self.duration.record(took.as_secs_f64(), &attributes);
            }
        }
    }

    /// A closure for `EphemeralOptions::on_finalized` that calls [`record`](Self::record).
    pub fn callback(&self) -> impl Fn(&OperationSnapshot) + Send + Sync + 'static {
        let recorder = self.clone();
        move |snapshot| recorder.record(snapshot)
    }
}

impl fmt::Debug for OperationRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationRecorder")
            .field("coordinator", &self.coordinator)
            .finish_non_exhaustive()
    }
}
