//! Telemetry for coordinators: stats as counters and gauges, duration and queue-wait
//! histograms, read back through the SDK's in-memory exporter.

use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
use ephemeral_patterns::telemetry::{CoordinatorMetrics, OperationRecorder};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

#[derive(Debug, Default, PartialEq)]
struct Point {
    value: u64,
    count: u64,
    sum: f64,
}

fn collect(
    exporter: &InMemoryMetricExporter,
    provider: &SdkMeterProvider,
) -> Vec<(String, Vec<String>, Point)> {
    exporter.reset();
    provider.force_flush().unwrap();
    let mut out = Vec::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name().to_owned();
                let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    let mut v: Vec<String> =
                        it.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                    v.sort();
                    v
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                        for p in sum.data_points() {
                            out.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                Point {
                                    value: p.value(),
                                    ..Point::default()
                                },
                            ));
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(gauge)) => {
                        for p in gauge.data_points() {
                            out.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                Point {
                                    value: p.value(),
                                    ..Point::default()
                                },
                            ));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                        for p in histogram.data_points() {
                            out.push((
                                name.clone(),
                                attrs(&mut p.attributes()),
                                Point {
                                    count: p.count(),
                                    sum: p.sum(),
                                    ..Point::default()
                                },
                            ));
                        }
                    }
                    other => panic!("unexpected metric {name}: {other:?}"),
                }
            }
        }
    }
    out
}

fn find<'a>(points: &'a [(String, Vec<String>, Point)], name: &str, attrs: &[&str]) -> &'a Point {
    points
        .iter()
        .find(|(n, a, _)| n == name && a == attrs)
        .map(|(_, _, p)| p)
        .unwrap_or_else(|| panic!("no {name} {attrs:?} in {points:?}"))
}

#[tokio::test(start_paused = true)]
async fn counters_gauges_and_histograms_report_a_coordinator() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter("ephemeral-test");
    let sink = SignalSink::default();
    let recorder = OperationRecorder::new(&meter, "orders");
    let coordinator = EphemeralWorkCoordinator::new(
        |n: u32, _ctx| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if n == 3 {
                Err("bad order".to_owned())
            } else {
                Ok(())
            }
        },
        EphemeralOptions::default()
            .id("orders")
            .max_concurrency(2)
            .signals(sink.clone())
            .cancel_on("halt")
            .on_finalized(recorder.callback()),
    )
    .unwrap();
    let metrics = CoordinatorMetrics::new(&coordinator, &meter);
    for n in 0..4 {
        coordinator.enqueue(n).await.unwrap();
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let points = collect(&exporter, &provider);
    let c = ["coordinator=orders"];
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.running", &c).value,
        2
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.pending", &c).value,
        2
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.max_concurrency", &c).value,
        2
    );

    coordinator.drain().await.unwrap();
    let points = collect(&exporter, &provider);
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.enqueued", &c).value,
        4
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.completed", &c).value,
        3
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.failed", &c).value,
        1
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.cancelled", &c).value,
        0
    );
    assert_eq!(
        find(&points, "ephemeral.coordinator.operations.running", &c).value,
        0
    );

    let ok = ["coordinator=orders", "outcome=completed"];
    let failed = ["coordinator=orders", "outcome=failed"];
    let duration = find(&points, "ephemeral.coordinator.operation.duration", &ok);
    assert_eq!((duration.count, duration.sum), (3, 6.0));
    let duration = find(&points, "ephemeral.coordinator.operation.duration", &failed);
    assert_eq!((duration.count, duration.sum), (1, 2.0));
    // Two started at once, two waited 2 s for a slot.
    let wait_ok = find(&points, "ephemeral.coordinator.operation.queue_wait", &ok);
    let wait_failed = find(
        &points,
        "ephemeral.coordinator.operation.queue_wait",
        &failed,
    );
    assert_eq!(wait_ok.count + wait_failed.count, 4);
    assert_eq!(wait_ok.sum + wait_failed.sum, 4.0);

    drop(metrics);
    let points = collect(&exporter, &provider);
    assert!(
        !points
            .iter()
            .any(|(n, _, _)| n == "ephemeral.coordinator.operations.running"),
        "a dropped CoordinatorMetrics observes nothing"
    );
}
