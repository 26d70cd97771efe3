//! Live state of coordinators and sinks, published for `ephemeral top` and other tools.
//!
//! # Overview
//!
//! [`PublishState::publish_state`] makes a coordinator (any of the four types) or a
//! [`SignalSink`](ephemeral::SignalSink) answer watchers with its state: counters, rates,
//! run-time percentiles, a bounded sample of its operations with recent failures and their
//! error text, the signals that defer it, or, for a sink, its live signals and holds.
//! [`StateWatcher`] is the other side; the `ephemeral top`, `ops` and `signals` commands are
//! built on it.
//!
//! ```text
//! watcher ──poll──► _inspect.poll ──► every publisher
//! watcher ◄──────── _inspect.state ◄── one frame per publisher (at most one per interval)
//! ```
//!
//! # Cost
//!
//! Publishers only answer polls: with nobody watching, a publisher is a parked task and one
//! idle subscription, with no timer and no sampling. While watched, it samples and sends at
//! most one frame per [interval](PublishOptions::interval) (250 ms by default) however many
//! watchers poll, and a watcher that goes away simply stops polling. The first poll after a
//! quiet spell is answered one interval later, so that the frame's rates cover that
//! interval rather than the whole spell. A sample copies the
//! coordinator's tracked operations (its window, `max_tracked` finished ones plus the
//! pending and running) or the sink's live signals, once per interval. `compare`'s
//! `top_publish_overhead` measures the throughput of a coordinator publishing to a watched
//! bus against the same coordinator not publishing.
//!
//! # The format (version 1)
//!
//! Each frame is one JSON object, [`StateFrame`]; its Rust types in [`format`](mod@format) are the
//! schema, field by field. In short:
//!
//! ```json
//! {"version":1,
//!  "publisher":{"id":"5f0c…","name":"payments",
//!               "process":{"pid":4242,"program":"demo","origin":"9a1e…"}},
//!  "sent_at_ms":1796400000000,"interval_ms":250,"sequence":17,
//!  "state":{"kind":"coordinator","type":"keyed","id":"coordinator-2",
//!           "counts":{"accepted":310,"pending":41,"running":8,"completed":250,
//!                     "failed":9,"cancelled":2,"panicked":0,"evicted":61,
//!                     "tracked":249,"peak_running":8},
//!           "max_concurrency":8,
//!           "rates":{"window_ms":250,"accepted_per_s":60.0,"completed_per_s":48.0,
//!                    "failed_per_s":4.0,"cancelled_per_s":0.0},
//!           "latency":{"samples":200,"p50_us":61000,"p99_us":420000,"max_us":515000},
//!           "deferred_by":["circuit.open"],"done":false,
//!           "operations":[{"id":812,"state":"running","key":"cust-07","age_ms":412,
//!                          "run_ms":412,"error":null,"panicked":false}],
//!           "operations_omitted":240,
//!           "recent_failures":[{"id":790,"state":"failed","key":"cust-03","age_ms":1200,
//!                               "run_ms":530,"error":"provider unavailable",
//!                               "panicked":false}]}}
//! ```
//!
//! `state.kind` is `coordinator`, `sink` ([`SinkState`]: live signals and holds) or
//! `stopped` (the publisher was dropped: forget it). Rules for readers and writers:
//!
//! * A reader checks `version` first and refuses any other ([`FormatError::UnknownVersion`]).
//! * Within a version, fields are only added: a reader ignores fields it does not know, and
//!   an unknown `state.kind` reads as [`State::Unknown`].
//! * Times inside a frame are ages and durations relative to the sample (`age_ms`,
//!   `ttl_ms`), never instants, so the reader's clock does not matter; `sent_at_ms` is
//!   wall-clock time, for display.
//! * Samples are bounded ([`PublishOptions`]): `operations_omitted` and `signals_omitted`
//!   say how much was left out; keys are cut to 128 bytes and error texts to 512. A frame
//!   larger than the transport carries ([`StateTransport::max_frame`]) has its longest
//!   sample halved until it fits, the cut counted the same way.
//! * A publisher sends at most one frame per `interval_ms`; a watcher that sees nothing from
//!   a publisher for a few intervals may consider it gone.
//!
//! # Transports
//!
//! The exchange uses two exact topics, [`POLL_TOPIC`] and [`STATE_TOPIC`], behind
//! [`StateTransport`], implemented here for [`Bus`](crate::Bus). Another transport (NATS
//! subjects) implements that trait; the format and the publisher stay as they are.

mod coordinator;
mod error;
pub mod format;
mod publish;
mod publisher;
mod sink;
mod transport;
mod watcher;

pub use error::InspectError;
pub use format::{
    CoordinatorState, Counts, FORMAT_VERSION, FormatError, Latency, OperationEntry, ProcessInfo,
    PublisherInfo, Rates, SignalEntry, SinkState, State, StateFrame,
};
pub use publish::PublishState;
pub use publisher::{PublishOptions, StatePublisher};
pub use transport::{POLL_TOPIC, STATE_TOPIC, StateTransport, TOPIC_PREFIX};
pub use watcher::StateWatcher;

#[cfg(test)]
mod tests;
