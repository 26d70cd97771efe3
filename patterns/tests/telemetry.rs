//! Telemetry: sink metrics read back through the OpenTelemetry SDK's in-memory exporter.

use std::collections::BTreeMap;

use ephemeral::SignalSink;
use ephemeral_patterns::telemetry::{SinkMetrics, SinkMetricsOptions};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

struct Harness {
    exporter: InMemoryMetricExporter,
    provider: SdkMeterProvider,
}

impl Harness {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Self { exporter, provider }
    }

    fn meter(&self) -> opentelemetry::metrics::Meter {
        self.provider.meter("ephemeral-test")
    }

    /// Every u64 data point of the last collection: metric name → (sorted attributes → value).
    fn collect(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for resource in self.exporter.get_finished_metrics().unwrap() {
            for scope in resource.scope_metrics() {
                for metric in scope.metrics() {
                    let AggregatedMetrics::U64(data) = metric.data() else {
                        panic!("{} is not a u64 metric", metric.name());
                    };
                    let entry = out.entry(metric.name().to_owned()).or_default();
                    let mut put = |attrs: Vec<String>, value| {
                        let mut attrs = attrs;
                        attrs.sort();
                        entry.insert(attrs.join(","), value);
                    };
                    let show = |kv: &opentelemetry::KeyValue| format!("{}={}", kv.key, kv.value);
                    match data {
                        MetricData::Sum(sum) => {
                            for p in sum.data_points() {
                                put(p.attributes().map(show).collect(), p.value());
                            }
                        }
                        MetricData::Gauge(gauge) => {
                            for p in gauge.data_points() {
                                put(p.attributes().map(show).collect(), p.value());
                            }
                        }
                        other => panic!("unexpected aggregation {other:?}"),
                    }
                }
            }
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn raised_signals_are_counted_by_prefix() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let _metrics = SinkMetrics::new(&sink, &harness.meter(), SinkMetricsOptions::default());
    for name in [
        "error.db.timeout",
        "error.http",
        "error.db.timeout",
        "job.done",
        "rate-limit:5s",
    ] {
        sink.raise(name).unwrap();
    }
    let _hold = sink.hold("maintenance.db").unwrap();
    let metrics = harness.collect();
    let raised = &metrics["ephemeral.sink.signals.raised"];
    assert_eq!(raised["held=false,prefix=error"], 3);
    assert_eq!(raised["held=false,prefix=job"], 1);
    assert_eq!(raised["held=false,prefix=rate-limit"], 1);
    assert_eq!(raised["held=true,prefix=maintenance"], 1);
    assert_eq!(raised.len(), 4);
    assert_eq!(metrics["ephemeral.sink.signals.live"][""], 5);
    assert_eq!(metrics["ephemeral.sink.holds.live"][""], 1);
}

#[tokio::test(start_paused = true)]
async fn prefix_depth_pattern_and_sink_label_shape_the_attributes() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let _metrics = SinkMetrics::new(
        &sink,
        &harness.meter(),
        SinkMetricsOptions::default()
            .pattern("error.*")
            .prefix_depth(2)
            .sink_label("orders"),
    );
    for name in [
        "error.db.timeout",
        "error.db.refused",
        "error.http.502",
        "job.done",
    ] {
        sink.raise(name).unwrap();
    }
    let raised = &harness.collect()["ephemeral.sink.signals.raised"];
    assert_eq!(raised["held=false,prefix=error.db,sink=orders"], 2);
    assert_eq!(raised["held=false,prefix=error.http,sink=orders"], 1);
    assert_eq!(
        raised.len(),
        2,
        "job.done does not match the pattern: {raised:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn prefix_cardinality_is_bounded() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let _metrics = SinkMetrics::new(
        &sink,
        &harness.meter(),
        SinkMetricsOptions::default().max_prefixes(3),
    );
    for i in 0..10 {
        sink.raise(&format!("name{i}.x")).unwrap();
    }
    sink.raise("name0.y").unwrap();
    let raised = &harness.collect()["ephemeral.sink.signals.raised"];
    assert_eq!(raised["held=false,prefix=name0"], 2);
    assert_eq!(raised["held=false,prefix=name1"], 1);
    assert_eq!(raised["held=false,prefix=name2"], 1);
    assert_eq!(raised["held=false,prefix=other"], 7);
    assert_eq!(raised.len(), 4);
}

/// A prefix that is literally `other` shares the overflow's label and takes no place, however
/// often it is raised: later prefixes still get labels of their own.
#[tokio::test(start_paused = true)]
async fn a_prefix_named_other_takes_no_place_among_the_labelled_prefixes() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let _metrics = SinkMetrics::new(
        &sink,
        &harness.meter(),
        SinkMetricsOptions::default().max_prefixes(2),
    );
    for i in 0..5 {
        sink.raise(&format!("other.{i}")).unwrap();
    }
    for name in ["error.db", "job.done", "late.x"] {
        sink.raise(name).unwrap();
    }
    let raised = &harness.collect()["ephemeral.sink.signals.raised"];
    assert_eq!(raised["held=false,prefix=error"], 1);
    assert_eq!(raised["held=false,prefix=job"], 1);
    // Five `other.*` raises, and `late`, the third prefix past `max_prefixes(2)`.
    assert_eq!(raised["held=false,prefix=other"], 6);
    assert_eq!(raised.len(), 3, "{raised:?}");
}

#[tokio::test(start_paused = true)]
async fn expiry_eviction_and_subscriber_drops_are_reported() {
    let harness = Harness::new();
    let sink = SignalSink::new(
        ephemeral::SinkOptions::default()
            .capacity(4)
            .max_age(std::time::Duration::from_secs(10))
            .subscription_buffer(ephemeral::Buffer::bounded(2).unwrap()),
    )
    .unwrap();
    let _metrics = SinkMetrics::new(&sink, &harness.meter(), SinkMetricsOptions::default());
    let _subscription = sink.subscribe("*");
    for i in 0..6 {
        sink.raise(&format!("tick.{i}")).unwrap();
    }
    let metrics = harness.collect();
    assert_eq!(metrics["ephemeral.sink.signals.evicted"][""], 2);
    assert_eq!(metrics["ephemeral.sink.subscriptions.dropped"][""], 4);
    assert_eq!(metrics["ephemeral.sink.subscriptions.live"][""], 1);
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    // The periodic reader collects on its own thread, outside the runtime, where tokio's
    // paused clock is not visible; a query here purges the window on the paused clock.
    assert_eq!(sink.len(), 0);
    let metrics = harness.collect();
    assert_eq!(metrics["ephemeral.sink.signals.expired"][""], 4);
    assert_eq!(metrics["ephemeral.sink.signals.live"][""], 0);
}

/// `subscriptions.dropped` is a cumulative counter: a lagging subscription that closes keeps
/// its drops counted, and later drops add to them.
#[tokio::test(start_paused = true)]
async fn subscriber_drops_stay_counted_after_the_subscription_closes() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let _metrics = SinkMetrics::new(&sink, &harness.meter(), SinkMetricsOptions::default());
    let dropped = || harness.collect()["ephemeral.sink.subscriptions.dropped"][""];
    let lagging = sink.subscribe_with("x.*", ephemeral::Buffer::bounded(1).unwrap());
    for _ in 0..5 {
        sink.raise("x.y").unwrap();
    }
    assert_eq!(dropped(), 4);
    drop(lagging);
    assert_eq!(sink.stats().subscriptions, 0);
    assert_eq!(dropped(), 4);
    let _lagging = sink.subscribe_with("x.*", ephemeral::Buffer::bounded(1).unwrap());
    for _ in 0..3 {
        sink.raise("x.y").unwrap();
    }
    assert_eq!(dropped(), 6);
    // Opened, lagging and closed between two collections: still counted.
    let brief = sink.subscribe_with("z.*", ephemeral::Buffer::bounded(1).unwrap());
    for _ in 0..3 {
        sink.raise("z.y").unwrap();
    }
    drop(brief);
    assert_eq!(dropped(), 8);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_metrics_detaches_from_the_sink() {
    let harness = Harness::new();
    let sink = SignalSink::default();
    let listeners = sink.stats().listeners;
    let metrics = SinkMetrics::new(&sink, &harness.meter(), SinkMetricsOptions::default());
    assert_eq!(sink.stats().listeners, listeners + 1);
    sink.raise("a").unwrap();
    drop(metrics);
    assert_eq!(sink.stats().listeners, listeners);
    sink.raise("a").unwrap();
    let collected = harness.collect();
    assert_eq!(
        collected["ephemeral.sink.signals.raised"]["held=false,prefix=a"],
        1
    );
    assert!(
        !collected.contains_key("ephemeral.sink.signals.live"),
        "a detached gauge observes nothing: {collected:?}"
    );
}
