//! Telemetry: OpenTelemetry metrics for a coordinator and its sink.
//!
//! Runs 50 orders (one in ten fails and raises `error.payment`), then collects the metrics
//! once through the OpenTelemetry SDK and prints every data point. In an application, swap
//! the in-memory exporter for an OTLP or Prometheus exporter; nothing else changes. Each
//! operation also has a `tracing` span (from the coordinator), which a
//! `tracing-opentelemetry` layer exports as OpenTelemetry spans. Finishes in well under a
//! second.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use ephemeral_patterns::telemetry::{
    CoordinatorMetrics, OperationRecorder, SinkMetrics, SinkMetricsOptions,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("orders-service");

    let sink = SignalSink::default();
    let _sink_metrics =
        SinkMetrics::new(&sink, &meter, SinkMetricsOptions::default().prefix_depth(2));
    let recorder = OperationRecorder::new(&meter, "orders");
    let orders = EphemeralWorkCoordinator::new(
        |order: u32, ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(order % 5) * 2)).await;
            if order % 10 == 7 {
                ctx.signal("error.payment.declined")
                    .map_err(|e| e.to_string())?;
                return Err(format!("order {order} declined"));
            }
            ctx.signal("order.charged").map_err(|e| e.to_string())?;
            Ok(())
        },
        EphemeralOptions::default()
            .id("orders")
            .max_concurrency(4)
            .signals(sink.clone())
            .on_finalized(recorder.callback()),
    )?;
    let _metrics = CoordinatorMetrics::new(&orders, &meter);

    for order in 0..50 {
        orders.enqueue(order).await?;
    }
    orders.drain().await?;

    provider.force_flush()?;
    // Each counter's total over its data points, for the check below.
    let mut totals = std::collections::BTreeMap::<String, u64>::new();
    for resource in exporter.get_finished_metrics()? {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                print_metric(metric.name(), metric.data());
                if let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() {
                    *totals.entry(metric.name().to_owned()).or_default() +=
                        sum.data_points().map(|p| p.value()).sum::<u64>();
                }
            }
        }
    }
    provider.shutdown()?;
    // What this example shows, checked (CI runs it with its output discarded): the exported
    // metrics tell the run's story: 50 orders enqueued, 45 completed and 5 failed (orders
    // 7, 17, ..., 47), and 50 signals raised, one per order.
    let total = |name: &str| totals.get(name).copied().unwrap_or(0);
    let expected = [
        ("ephemeral.coordinator.operations.enqueued", 50),
        ("ephemeral.coordinator.operations.completed", 45),
        ("ephemeral.coordinator.operations.failed", 5),
        ("ephemeral.sink.signals.raised", 50),
    ];
    if expected.iter().any(|(name, n)| total(name) != *n) {
        return Err(format!(
            "expected the metrics {expected:?}; exported {:?}",
            expected.map(|(name, _)| (name, total(name)))
        )
        .into());
    }
    Ok(())
}

fn attributes<'a>(it: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    it.map(|kv| format!("{}={}", kv.key, kv.value))
        .collect::<Vec<_>>()
        .join(",")
}

fn print_metric(name: &str, data: &AggregatedMetrics) {
    match data {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            for p in sum.data_points() {
                println!("{name}{{{}}} = {}", attributes(p.attributes()), p.value());
            }
        }
        AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
            for p in gauge.data_points() {
                println!("{name}{{{}}} = {}", attributes(p.attributes()), p.value());
            }
        }
        AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
            for p in histogram.data_points() {
                println!(
                    "{name}{{{}}} count {} mean {:.4} s",
                    attributes(p.attributes()),
                    p.count(),
                    p.sum() / p.count().max(1) as f64
                );
            }
        }
        other => println!("{name}: {other:?}"),
    }
}
