//! Metrics for a [`SignalSink`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ephemeral::{Listener, SignalSink, SinkStats};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, ObservableCounter, ObservableGauge};

/// How [`SinkMetrics`] labels what it counts.
#[derive(Debug, Clone)]
#[must_use]
pub struct SinkMetricsOptions {
    pattern: String,
    prefix_depth: usize,
    max_prefixes: usize,
    sink_label: Option<String>,
}

impl Default for SinkMetricsOptions {
    fn default() -> Self {
        Self {
            pattern: "*".to_owned(),
            prefix_depth: 1,
            max_prefixes: 64,
            sink_label: None,
        }
    }
}

impl SinkMetricsOptions {
    /// Counts only raised signals matching `pattern` (default `*`, all of them).
    ///
    /// A pattern that can match no name (`""`, `" , "`: see
    /// [`Pattern::is_empty`](ephemeral::Pattern::is_empty)) counts no raised signal, while
    /// the gauges and the other counters report as usual. It is not refused, because
    /// [`SinkMetrics::new`] does not fail (metrics are never a reason for an application not
    /// to start); check the pattern with `Pattern::is_empty` where it comes from
    /// configuration.
    pub fn pattern(mut self, pattern: &str) -> Self {
        self.pattern = pattern.to_owned();
        self
    }

    /// How many leading dot segments make the `prefix` attribute (default 1:
    /// `error.db.timeout` → `error`; 2 → `error.db`). 0 is read as 1. A `:` payload is never
    /// part of the prefix.
    pub fn prefix_depth(mut self, depth: usize) -> Self {
        self.prefix_depth = depth.max(1);
        self
    }

    /// At most this many distinct prefixes get a `prefix` label of their own (default 64);
    /// later ones count under `other`, so a flood of distinct names cannot blow up the
    /// metric's cardinality. A prefix that is literally `other` shares that label and takes
    /// none of the `n` places.
    pub fn max_prefixes(mut self, n: usize) -> Self {
        self.max_prefixes = n;
        self
    }

    /// Adds a `sink` attribute with this value to every measurement, to tell several sinks
    /// apart on one meter.
    pub fn sink_label(mut self, label: &str) -> Self {
        self.sink_label = Some(label.to_owned());
        self
    }
}

/// OpenTelemetry metrics for one [`SignalSink`], reported while this value lives.
///
/// Raised signals are counted by a sink listener (synchronously, on the raising thread);
/// the gauges and observable counters read [`SignalSink::stats`] when the meter's reader
/// collects. Dropping `SinkMetrics` detaches the listener and makes the observable
/// instruments report nothing further (OpenTelemetry keeps their callbacks registered with
/// the provider, but they no longer hold the sink).
///
/// # Examples
///
/// ```
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::telemetry::{SinkMetrics, SinkMetricsOptions};
/// use opentelemetry::metrics::MeterProvider as _;
///
/// let meter = opentelemetry::global::meter_provider().meter("my-app");
/// let sink = SignalSink::default();
/// let _metrics = SinkMetrics::new(&sink, &meter, SinkMetricsOptions::default().prefix_depth(2));
/// sink.raise("error.db.timeout")?; // counted as ephemeral.sink.signals.raised{prefix="error.db"}
/// # Ok::<(), ephemeral::RaiseError>(())
/// ```
#[must_use = "the sink stops being measured when this is dropped"]
pub struct SinkMetrics {
    _listener: Listener,
    source: Arc<Mutex<Option<SignalSink>>>,
    _gauges: Vec<ObservableGauge<u64>>,
    _counters: Vec<ObservableCounter<u64>>,
}

/// The label of the prefixes past `max_prefixes`.
const OTHER: &str = "other";

struct Labels {
    depth: usize,
    max: usize,
    base: Vec<KeyValue>,
    /// (prefix, held) → attributes, for the prefixes with a label of their own and for
    /// `other`: at most `max + 1` prefixes, so a flood of names cannot grow it.
    known: HashMap<(String, bool), Arc<[KeyValue]>>,
    /// Prefixes given a label of their own (`other` never takes one: its label is the
    /// overflow's).
    prefixes: usize,
}

impl Labels {
    fn attributes(&mut self, name: &str, held: bool) -> Arc<[KeyValue]> {
        let prefix = prefix_of(name, self.depth);
        if let Some(found) = self.known.get(&(prefix.to_owned(), held)) {
            return found.clone();
        }
        let seen = self.known.contains_key(&(prefix.to_owned(), !held));
        let label = if prefix == OTHER || seen {
            prefix
        } else if self.prefixes < self.max {
            self.prefixes += 1;
            prefix
        } else {
            // Past the bound: counted under `other`, whose attributes are cached like any
            // label's (the prefix itself is not remembered).
            if let Some(found) = self.known.get(&(OTHER.to_owned(), held)) {
                return found.clone();
            }
            OTHER
        };
        let mut attributes = self.base.clone();
        attributes.push(KeyValue::new("prefix", label.to_owned()));
        attributes.push(KeyValue::new("held", held));
        let attributes: Arc<[KeyValue]> = attributes.into();
        self.known
            .insert((label.to_owned(), held), attributes.clone());
        attributes
    }
}

/// The first `depth` dot segments of `name`, without a `:` payload.
fn prefix_of(name: &str, depth: usize) -> &str {
    let name = name.split_once(':').map_or(name, |(head, _)| head);
    match name.match_indices('.').nth(depth.saturating_sub(1)) {
        Some((at, _)) => &name[..at],
        None => name,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a metrics callback panicked; the data is a cache and a handle, both
    // consistent after every step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SinkMetrics {
    /// Starts reporting `sink` on `meter`.
    pub fn new(sink: &SignalSink, meter: &Meter, options: SinkMetricsOptions) -> Self {
        let base: Vec<KeyValue> = options
            .sink_label
            .iter()
            .map(|label| KeyValue::new("sink", label.clone()))
            .collect();
        let raised: Counter<u64> = meter
            .u64_counter("ephemeral.sink.signals.raised")
            .with_description("Signals raised on the sink (held conditions with held=true)")
            .with_unit("{signal}")
            .build();
        let labels = Mutex::new(Labels {
            depth: options.prefix_depth,
            max: options.max_prefixes,
            base: base.clone(),
            known: HashMap::new(),
            prefixes: 0,
        });
        let listener = sink.on_signal(&options.pattern, move |signal| {
            let attributes = lock(&labels).attributes(signal.name().as_str(), signal.is_held());
            raised.add(1, &attributes);
        });

        let source = Arc::new(Mutex::new(Some(sink.clone())));
        let base: Arc<[KeyValue]> = base.into();
        let read = |field: fn(&SinkStats) -> u64| {
            let source = source.clone();
            let base = base.clone();
            move |observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
                // Clone the handle out so that stats() runs without our lock held.
                let sink = lock(&source).clone();
                if let Some(sink) = sink {
                    observer.observe(field(&sink.stats()), &base);
                }
            }
        };
        let gauge = |name: &'static str, description: &'static str, field| {
            meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_callback(read(field))
                .build()
        };
        let counter = |name: &'static str, description: &'static str, field| {
            meter
                .u64_observable_counter(name)
                .with_description(description)
                .with_callback(read(field))
                .build()
        };
        let gauges = vec![
            gauge(
                "ephemeral.sink.signals.live",
                "Raised signals live in the window",
                |s: &SinkStats| s.live as u64,
            ),
            gauge(
                "ephemeral.sink.holds.live",
                "Held conditions live",
                |s: &SinkStats| s.held as u64,
            ),
            gauge(
                "ephemeral.sink.subscriptions.live",
                "Live subscriptions",
                |s: &SinkStats| s.subscriptions as u64,
            ),
        ];
        let counters = vec![
            counter(
                "ephemeral.sink.signals.expired",
                "Signals that reached their max age or own expiry",
                |s: &SinkStats| s.expired,
            ),
            counter(
                "ephemeral.sink.signals.evicted",
                "Signals evicted because the window was at capacity",
                |s: &SinkStats| s.evicted,
            ),
            counter(
                "ephemeral.sink.subscriptions.dropped",
                "Signals dropped for lagging subscribers (each reported to them as Lagged)",
                |s: &SinkStats| s.subscriber_dropped,
            ),
        ];
        Self {
            _listener: listener,
            source,
            _gauges: gauges,
            _counters: counters,
        }
    }
}

impl Drop for SinkMetrics {
    fn drop(&mut self) {
        lock(&self.source).take();
    }
}

impl fmt::Debug for SinkMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkMetrics")
            .field("attached", &lock(&self.source).is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_of;

    #[test]
    fn prefixes_cut_at_segments_and_drop_payloads() {
        assert_eq!(prefix_of("error.db.timeout", 1), "error");
        assert_eq!(prefix_of("error.db.timeout", 2), "error.db");
        assert_eq!(prefix_of("error.db.timeout", 5), "error.db.timeout");
        assert_eq!(prefix_of("rate.limit.set:20", 2), "rate.limit");
        assert_eq!(prefix_of("rate-limit:5s", 1), "rate-limit");
        assert_eq!(prefix_of("x", 1), "x");
    }
}
