//! OpenTelemetry metrics for coordinators and signal sinks.
//!
//! # When to use it
//!
//! When the process already exports OpenTelemetry metrics and you want coordinators and
//! sinks on the same dashboards.
//!
//! Coordinators: [`CoordinatorMetrics`] reports the counters (enqueued, completed, failed,
//! cancelled) and gauges (running, pending, the concurrency limit) from the coordinator's
//! stats; [`OperationRecorder`], hooked into `on_finalized`, records the duration and
//! queue-wait histograms. Spans: every operation already runs in a `tracing` span named
//! `operation` (fields `coordinator`, `id`, `key`, and `outcome` once it ends), created by
//! the coordinator itself; a `tracing-opentelemetry` layer exports them as OpenTelemetry
//! spans, so this crate adds no span code of its own.
//!
//! Sinks: how many signals are raised (by name prefix, so `error.db.timeout` and
//! `error.http.502` both count under `error`), how many are live, held, expired or evicted,
//! and how many subscribers lag. Hand [`SinkMetrics::new`] any
//! [`Meter`](opentelemetry::metrics::Meter); the crate never installs a global provider.
//!
//! Sink metric names (all prefixed `ephemeral.sink.`): `signals.raised` (counter, attributes
//! `prefix` and `held`), `signals.live`, `holds.live`, `subscriptions.live` (gauges),
//! `signals.expired`, `signals.evicted`, `subscriptions.dropped` (observable counters, which
//! never go down; `subscriptions.dropped` is the sink's own total,
//! [`SinkStats::subscriber_dropped`](ephemeral::SinkStats::subscriber_dropped), which keeps
//! the drops of subscriptions that have closed).
//!
//! The observable instruments read the sink on whatever thread the meter's reader collects
//! on. Under tokio's paused clock (tests), a reader thread outside the runtime sees real time,
//! so signals that expired on the paused clock show as expired once any query on the runtime
//! has purged them; with a running clock the two agree.
//!
//! Cardinality is bounded: at most `max_prefixes` distinct prefixes (default 64) get a
//! `prefix` value of their own; the rest are counted under `prefix = "other"`, the label a
//! prefix that is literally `other` also gets (without taking one of the places).

mod coordinator;
mod sink;

pub use coordinator::{CoordinatorMetrics, OperationRecorder};
pub use sink::{SinkMetrics, SinkMetricsOptions};
