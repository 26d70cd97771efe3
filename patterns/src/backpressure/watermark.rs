//! The watermark hold.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::{Hold, Name, NameError, RaiseError, SignalSink};

/// Holds `backpressure.<name>` on a sink while a reported pending count is above a high
/// watermark, and releases it once the count falls below a low watermark.
///
/// Cheap to clone; every clone reports to the same hold. Dropping the last clone releases it.
///
/// # Examples
///
/// ```
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::backpressure::Backpressure;
///
/// let sink = SignalSink::default();
/// let pressure = Backpressure::new(&sink, "db", 100, 20)?;
/// pressure.update(150);
/// assert!(sink.has_signal("backpressure.db"));
/// pressure.update(50); // between the watermarks: still held
/// assert!(sink.has_signal("backpressure.db"));
/// pressure.update(10);
/// assert!(!sink.has_signal("backpressure.db"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use = "the backpressure hold is released when the last clone is dropped"]
pub struct Backpressure {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) wake: tokio::sync::Notify,
    sink: SignalSink,
    name: Name,
    high: usize,
    low: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    held: bool,
    hold: Option<Hold>,
    /// Bumped on every transition so that a hold acquired after the count already fell back
    /// (two reporters racing) is recognised as stale and dropped.
    generation: u64,
    last_pending: usize,
    times_held: u64,
    last_sink_error: Option<RaiseError>,
}

/// Why a [`Backpressure`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackpressureError {
    /// `backpressure.<name>` is not a valid signal name.
    #[error("backpressure name does not make a valid signal name: {0}")]
    Name(#[source] NameError),
    /// The watermarks were in the wrong order or the low one was zero.
    #[error(
        "watermarks low {low}, high {high}: the low watermark must be at least 1 and at most the high one"
    )]
    Watermarks {
        /// The high watermark.
        high: usize,
        /// The low watermark.
        low: usize,
    },
    /// A monitor was started outside a tokio runtime.
    #[error("a backpressure monitor runs as a tokio task: start it inside a runtime")]
    NoRuntime,
}

impl Backpressure {
    /// A reporter for `backpressure.<name>` on `sink`: held above `high`, released below
    /// `low`.
    ///
    /// # Errors
    ///
    /// [`BackpressureError`] when the name is invalid, `low` is 0 (the hold could never be
    /// released), or `low > high`.
    pub fn new(
        sink: &SignalSink,
        name: &str,
        high: usize,
        low: usize,
    ) -> Result<Self, BackpressureError> {
        if low == 0 || low > high {
            return Err(BackpressureError::Watermarks { high, low });
        }
        let name = Name::new(&format!("backpressure.{name}")).map_err(BackpressureError::Name)?;
        Ok(Self {
            inner: Arc::new(Inner {
                wake: tokio::sync::Notify::new(),
                sink: sink.clone(),
                name,
                high,
                low,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Reports the current pending count; takes or releases the hold as the watermarks say.
    /// Returns whether the condition is held afterwards.
    pub fn update(&self, pending: usize) -> bool {
        self.update_with(|| pending)
    }

    /// [`update`](Self::update) with the count read under this reporter's lock, so that two
    /// reporters racing (a monitor and an upstream) apply their readings in the order they
    /// took them: a stale low reading can never release a hold a newer high one took.
    pub(super) fn update_with(&self, read: impl FnOnce() -> usize) -> bool {
        let mut state = self.lock();
        let pending = read();
        state.last_pending = pending;
        if !state.held && pending > self.inner.high {
            state.held = true;
            state.generation += 1;
            state.times_held += 1;
            let generation = state.generation;
            // The sink runs watchers and listeners synchronously; none of them may find this
            // lock taken, so the hold is acquired outside it.
            drop(state);
            let held = self.inner.sink.hold(self.inner.name.as_str());
            let mut state = self.lock();
            match held {
                Ok(hold) if state.generation == generation => state.hold = Some(hold),
                Ok(_) => {}
                Err(e) => state.last_sink_error = Some(e),
            }
            state.held
        } else if state.held && pending < self.inner.low {
            state.held = false;
            state.generation += 1;
            let hold = state.hold.take();
            drop(state);
            drop(hold);
            false
        } else {
            state.held
        }
    }

    /// Whether the condition is held.
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.lock().held
    }

    /// How many times the condition has been taken.
    #[must_use]
    pub fn times_held(&self) -> u64 {
        self.lock().times_held
    }

    /// The last pending count reported.
    #[must_use]
    pub fn last_pending(&self) -> usize {
        self.lock().last_pending
    }

    /// The held signal's name, `backpressure.<name>`: the pattern for upstream `defer_on`.
    #[must_use]
    pub fn signal_name(&self) -> &Name {
        &self.inner.name
    }

    /// The high and low watermarks.
    #[must_use]
    pub fn watermarks(&self) -> (usize, usize) {
        (self.inner.high, self.inner.low)
    }

    /// The last error the sink returned when taking the hold (for example `TooManyHolds`).
    #[must_use]
    pub fn last_sink_error(&self) -> Option<RaiseError> {
        self.lock().last_sink_error.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a reporter panicked mid-update; the state is updated in
        // single steps, so it is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Backpressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Backpressure")
            .field("name", &self.inner.name)
            .field("high", &self.inner.high)
            .field("low", &self.inner.low)
            .field("held", &state.held)
            .field("last_pending", &state.last_pending)
            .finish_non_exhaustive()
    }
}
