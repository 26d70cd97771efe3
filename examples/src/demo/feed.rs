//! Everything the sink sees, counted by name, plus the recent signals for the live feed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ephemeral::{Listener, Signal, SignalSink};
use tokio::time::Instant;

/// How many recent signals the live view keeps.
const RECENT: usize = 8;

/// One line of the feed.
#[derive(Debug, Clone)]
pub(crate) struct FeedLine {
    /// Time since the run started.
    pub(crate) at: Duration,
    /// The signal's name.
    pub(crate) name: String,
    /// The signal's key, if any.
    pub(crate) key: Option<String>,
    /// Whether a person watching plain logs wants to see it (state changes, not every error).
    pub(crate) notable: bool,
}

#[derive(Debug, Default)]
struct State {
    by_name: BTreeMap<String, u64>,
    recent: VecDeque<FeedLine>,
    /// Notable lines not printed yet (plain output).
    unprinted: Vec<FeedLine>,
}

/// Counts every signal raised into the sink through a synchronous listener, so the counts
/// are exact: a listener sees every raise, with no buffer that could lag.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    state: Arc<Mutex<State>>,
    _listener: Arc<Listener>,
}

impl Feed {
    /// Starts counting the signals of `sink`; `start` is the run's time origin.
    pub(crate) fn attach(sink: &SignalSink, start: Instant) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let seen = state.clone();
        let listener = sink.on_signal("*", move |signal: &Signal| {
            let name = signal.name().as_str().to_owned();
            let notable = is_notable(&name);
            let line = FeedLine {
                at: start.elapsed(),
                name: name.clone(),
                key: signal.key().map(str::to_owned),
                notable,
            };
            let mut state = lock(&seen);
            *state.by_name.entry(name).or_default() += 1;
            if state.recent.len() == RECENT {
                state.recent.pop_front();
            }
            state.recent.push_back(line.clone());
            if notable {
                state.unprinted.push(line);
            }
        });
        Self {
            state,
            _listener: Arc::new(listener),
        }
    }

    /// Adds a line that is not a signal (a condition released) to the feed; counts nothing.
    pub(crate) fn note(&self, line: FeedLine) {
        let mut state = lock(&self.state);
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(line.clone());
        if line.notable {
            state.unprinted.push(line);
        }
    }

    /// The counts by signal name so far.
    pub(crate) fn by_name(&self) -> BTreeMap<String, u64> {
        lock(&self.state).by_name.clone()
    }

    /// The most recent signals, oldest first.
    pub(crate) fn recent(&self) -> Vec<FeedLine> {
        lock(&self.state).recent.iter().cloned().collect()
    }

    /// The notable signals not handed out yet.
    pub(crate) fn take_notable(&self) -> Vec<FeedLine> {
        std::mem::take(&mut lock(&self.state).unprinted)
    }
}

/// State changes a log reader cares about; individual errors and retries are only counted.
fn is_notable(name: &str) -> bool {
    name.starts_with("circuit.") || name.starts_with("backpressure.") || name == "retry.exhausted"
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is only counters and lists updated in single steps: still usable after a
    // panic elsewhere.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
