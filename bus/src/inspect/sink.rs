//! Sampling a signal sink into a [`SinkState`].

use ephemeral::SignalSink;
use tokio::time::Instant;

use super::coordinator::rate;
use super::format::{SignalEntry, SinkState, State, clip};
use super::publisher::{PublishOptions, Sampler, millis};

/// Keys and payloads are cut to this many bytes in a frame.
const MAX_TEXT: usize = 128;

/// Samples one sink; remembers the previous `raised` count for the rate.
pub(crate) struct SinkSampler {
    sink: SignalSink,
    previous: (Instant, u64),
}

impl SinkSampler {
    pub(crate) fn new(sink: SignalSink) -> Self {
        let raised = sink.stats().raised;
        Self {
            sink,
            previous: (Instant::now(), raised),
        }
    }
}

impl Sampler for SinkSampler {
    fn rebase(&mut self) {
        self.previous = (Instant::now(), self.sink.stats().raised);
    }

    fn sample(&mut self, options: &PublishOptions) -> State {
        let now = Instant::now();
        let stats = self.sink.stats();
        let mut live = self.sink.sense("*");
        let (then, before) = std::mem::replace(&mut self.previous, (now, stats.raised));
        let window = now.saturating_duration_since(then);
        let max_age = self.sink.max_age();
        // Holds first (oldest first: the longest-standing conditions), then raised signals,
        // newest first. `sense` returns them by sequence.
        live.sort_by(|a, b| {
            b.is_held().cmp(&a.is_held()).then_with(|| {
                if a.is_held() {
                    a.sequence().cmp(&b.sequence())
                } else {
                    b.sequence().cmp(&a.sequence())
                }
            })
        });
        let omitted = live.len().saturating_sub(options.max_signals) as u64;
        let signals = live
            .iter()
            .take(options.max_signals)
            .map(|s| SignalEntry {
                name: s.name().as_str().to_owned(),
                key: s.key().map(|k| clip(k, MAX_TEXT)),
                operation: s.operation().map(|id| id.as_u64()),
                held: s.is_held(),
                age_ms: millis(now.saturating_duration_since(s.timestamp())),
                ttl_ms: (!s.is_held()).then(|| millis(s.remaining(now, max_age))),
                sequence: s.sequence(),
                payload: s.payload_str().map(|p| clip(p, MAX_TEXT)),
            })
            .collect();
        State::Sink(SinkState {
            sink_id: self.sink.id(),
            sequence: self.sink.sequence(),
            capacity: self.sink.capacity() as u64,
            max_age_ms: millis(max_age),
            live: stats.live as u64,
            held: stats.held as u64,
            raised: stats.raised,
            raised_per_s: rate(before, stats.raised, window),
            window_ms: millis(window),
            signals,
            signals_omitted: omitted,
        })
    }
}
