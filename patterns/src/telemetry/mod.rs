//! OpenTelemetry metrics for signal sinks.
//!
//! # When to use it
//!
//! When the process already exports OpenTelemetry metrics and you want the sink on the same
//! dashboards: how many signals are raised (by name prefix, so `error.db.timeout` and
//! `error.http.502` both count under `error`), how many are live, held, expired or evicted,
//! and how many subscribers lag. Hand [`SinkMetrics::new`] any
//! [`Meter`](opentelemetry::metrics::Meter); the crate never installs a global provider.
//!
//! Metric names (all prefixed `ephemeral.sink.`): `signals.raised` (counter, attributes
//! `prefix` and `held`), `signals.live`, `holds.live`, `subscriptions.live` (gauges),
//! `signals.expired`, `signals.evicted`, `subscriptions.dropped` (observable counters).
//!
//! The observable instruments read the sink on whatever thread the meter's reader collects
//! on. Under tokio's paused clock (tests), a reader thread outside the runtime sees real time,
//! so signals that expired on the paused clock show as expired once any query on the runtime
//! has purged them; with a running clock the two agree.
//!
//! Cardinality is bounded: at most `max_prefixes` distinct `prefix` values (default 64); the
//! rest are counted under `prefix = "other"`.

mod coordinator;
mod sink;

pub use coordinator::{CoordinatorMetrics, OperationRecorder};
pub use sink::{SinkMetrics, SinkMetricsOptions};
