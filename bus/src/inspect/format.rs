//! The published state, version 1: what a coordinator or a sink tells its watchers.
//!
//! Every frame is one JSON object (UTF-8, no trailing newline). The field list below is the
//! contract; the module docs of [`inspect`](crate::inspect) describe the exchange around it.

use serde::{Deserialize, Serialize};

/// The format version this crate writes, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// One published state: who sent it, when, and what it holds.
///
/// Readers ignore fields they do not know, so fields may be added within a version; a field
/// removed or changed in meaning bumps [`FORMAT_VERSION`], and a reader refuses a version it
/// does not know ([`FormatError::UnknownVersion`]).
///
/// # Examples
///
/// ```
/// use ephemeral_bus::inspect::{FormatError, State, StateFrame};
///
/// let bytes = br#"{"version":1,"sent_at_ms":0,"interval_ms":250,"sequence":3,
///     "publisher":{"id":"00000000000000ff","name":"payments",
///                  "process":{"pid":42,"program":"shop","origin":"0000000000000001"}},
///     "state":{"kind":"stopped"}}"#;
/// let frame = StateFrame::decode(bytes)?;
/// assert_eq!((frame.publisher.name.as_str(), &frame.state), ("payments", &State::Stopped));
/// assert_eq!(StateFrame::decode(&frame.encode())?, frame);
///
/// let newer = br#"{"version":2,"whatever":"changed"}"#;
/// assert!(matches!(
///     StateFrame::decode(newer),
///     Err(FormatError::UnknownVersion { found: 2, supported: 1 })
/// ));
/// # Ok::<(), FormatError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StateFrame {
    /// The format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// Who published it.
    pub publisher: PublisherInfo,
    /// Wall-clock time of the sample, milliseconds since the Unix epoch (for display only:
    /// ages in the frame are relative to the sample, so clocks need not agree).
    pub sent_at_ms: u64,
    /// The publisher's interval: it sends at most one frame per interval.
    pub interval_ms: u64,
    /// Frames this publisher sent before this one (a gap tells a reader it missed some).
    pub sequence: u64,
    /// The state itself.
    pub state: State,
}

/// Who published a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublisherInfo {
    /// Unique per publisher (a random 64-bit number, 16 hex digits): tells apart two
    /// publishers with the same name, in one process or in two.
    pub id: String,
    /// The name given to `publish_state` (`payments`).
    pub name: String,
    /// The publishing process.
    pub process: ProcessInfo,
}

/// The process a frame came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its operating-system process id.
    pub pid: u32,
    /// Its program name (the file name of its executable).
    pub program: String,
    /// Its bus origin ([`process_origin`](crate::process_origin)), 16 hex digits.
    pub origin: String,
}

/// What a frame holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// A coordinator's state.
    Coordinator(CoordinatorState),
    /// A signal sink's live signals and holds.
    Sink(SinkState),
    /// The publisher stopped (its guard was dropped): forget it now.
    Stopped,
    /// A kind of state this reader does not know (a newer writer's addition).
    #[serde(other)]
    Unknown,
}

/// A coordinator's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CoordinatorState {
    /// Which coordinator type: `work`, `keyed`, `result` or `priority`.
    #[serde(rename = "type")]
    pub coordinator_type: String,
    /// The coordinator id (the one `coordinator.drain.id` addresses).
    pub id: String,
    /// Its counters, one consistent snapshot.
    pub counts: Counts,
    /// The concurrency limit now.
    pub max_concurrency: u64,
    /// Rates over the window since the previous sample.
    pub rates: Rates,
    /// Run time of the finished operations still in the window; `None` when none ran.
    pub latency: Option<Latency>,
    /// The live signals matching the coordinator's defer pattern, as declared to the
    /// publisher: while one is live, pending items wait. Empty when none is, or when no
    /// pattern was declared.
    pub deferred_by: Vec<String>,
    /// Whether it is completed and every accepted item has ended (its last frame).
    pub done: bool,
    /// A bounded sample of operations: running first, then pending (oldest first), then the
    /// finished ones still tracked (most recent first).
    pub operations: Vec<OperationEntry>,
    /// Tracked operations left out of `operations` by its bound.
    pub operations_omitted: u64,
    /// The most recent failures still tracked (most recent first), with their error text.
    pub recent_failures: Vec<OperationEntry>,
}

/// A coordinator's counters (see `CoordinatorStats`): they add up,
/// `accepted == pending + running + completed + failed + cancelled`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counts {
    /// Items accepted since creation.
    pub accepted: u64,
    /// Accepted, not started (deferred included).
    pub pending: u64,
    /// Running now.
    pub running: u64,
    /// Ended completed.
    pub completed: u64,
    /// Ended failed (errors and panics).
    pub failed: u64,
    /// Ended cancelled.
    pub cancelled: u64,
    /// Of the failures, panics.
    pub panicked: u64,
    /// Finished operations evicted from the window.
    pub evicted: u64,
    /// Operations in the window now.
    pub tracked: u64,
    /// The highest `running` seen.
    pub peak_running: u64,
}

/// Per-second rates over `window_ms`: the time since the publisher's previous frame while
/// it is watched without a break, or, for the first frame after a quiet spell, one interval
/// that the publisher measures before answering (so rates are always recent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rates {
    /// The window the rates are measured over.
    pub window_ms: u64,
    /// Items accepted per second.
    pub accepted_per_s: f64,
    /// Operations completed per second.
    pub completed_per_s: f64,
    /// Operations failed per second.
    pub failed_per_s: f64,
    /// Operations cancelled per second.
    pub cancelled_per_s: f64,
}

/// Run-time percentiles (nearest rank) of finished operations, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Latency {
    /// How many run times they are computed from.
    pub samples: u64,
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The longest.
    pub max_us: u64,
}

/// One operation in a coordinator's sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OperationEntry {
    /// The raw operation id (`op-<id>` in the coordinator's own rendering).
    pub id: u64,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub state: String,
    /// The key (keyed coordinators) or lane (priority), rendered; at most 128 bytes.
    pub key: Option<String>,
    /// Milliseconds in its current state: since it was accepted (pending), started
    /// (running) or finished (the others).
    pub age_ms: u64,
    /// Its run time in milliseconds, once started.
    pub run_ms: Option<u64>,
    /// The error text (failed: the body's error or the panic message; cancelled: the
    /// reason); at most 512 bytes.
    pub error: Option<String>,
    /// Whether a failure was a panic.
    #[serde(default)]
    pub panicked: bool,
}

/// A signal sink's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SinkState {
    /// The sink id (unique within its process).
    pub sink_id: u64,
    /// Its latest sequence number.
    pub sequence: u64,
    /// Its capacity (live raised signals at most).
    pub capacity: u64,
    /// Its max age in milliseconds.
    pub max_age_ms: u64,
    /// Raised signals live now.
    pub live: u64,
    /// Held conditions live now.
    pub held: u64,
    /// Signals raised since creation.
    pub raised: u64,
    /// Signals raised per second over `window_ms`.
    pub raised_per_s: f64,
    /// The window `raised_per_s` is measured over.
    pub window_ms: u64,
    /// A bounded sample of live signals: holds first, then the newest raised ones.
    pub signals: Vec<SignalEntry>,
    /// Live signals left out of `signals` by its bound.
    pub signals_omitted: u64,
}

/// One live signal in a sink's sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignalEntry {
    /// Its name.
    pub name: String,
    /// Its key, if any.
    pub key: Option<String>,
    /// The raw id of the operation that raised it, if any.
    pub operation: Option<u64>,
    /// Whether it is a held condition (live until released).
    pub held: bool,
    /// Milliseconds since it was raised or taken.
    pub age_ms: u64,
    /// Milliseconds of life left; `None` for a hold.
    pub ttl_ms: Option<u64>,
    /// Its sequence number in the sink.
    pub sequence: u64,
    /// Its payload as text when it is UTF-8, at most 128 bytes.
    pub payload: Option<String>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not a JSON object of the expected shape.
    #[error("not a state frame: {0}; was it written by an ephemeral publisher?")]
    Json(#[from] serde_json::Error),
    /// No `version` field.
    #[error("the state frame has no `version` field: it was not written by an ephemeral publisher")]
    MissingVersion,
    /// A version this reader does not know.
    #[error(
        "state frame version {found} is not supported (this reader knows version {supported}): \
         use an `ephemeral` of the publisher's release"
    )]
    UnknownVersion {
        /// The version in the frame.
        found: u64,
        /// The version this reader knows.
        supported: u32,
    },
}

impl StateFrame {
    /// Encodes the frame as JSON.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data (no maps with non-string keys, no failing `Serialize`)
        // cannot fail; an empty frame would be refused by every reader, never misread.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a frame, checking its version first.
    ///
    /// # Errors
    ///
    /// [`FormatError::UnknownVersion`] for another version (whatever the rest holds),
    /// [`FormatError::MissingVersion`] without one, [`FormatError::Json`] for anything else
    /// that is not a frame.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        #[derive(Deserialize)]
        struct Probe {
            version: Option<u64>,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        match probe.version {
            None => Err(FormatError::MissingVersion),
            Some(v) if v == u64::from(FORMAT_VERSION) => Ok(serde_json::from_slice(bytes)?),
            Some(found) => Err(FormatError::UnknownVersion {
                found,
                supported: FORMAT_VERSION,
            }),
        }
    }

    /// The coordinator state, if this frame holds one.
    #[must_use]
    pub fn coordinator(&self) -> Option<&CoordinatorState> {
        match &self.state {
            State::Coordinator(c) => Some(c),
            _ => None,
        }
    }

    /// The sink state, if this frame holds one.
    #[must_use]
    pub fn sink(&self) -> Option<&SinkState> {
        match &self.state {
            State::Sink(s) => Some(s),
            _ => None,
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
