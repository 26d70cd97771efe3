//! The watermark hold.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::{Hold, Name, NameError, RaiseError, SignalSink};

/// Holds `backpressure.<name>` on a sink while a reported pending count is above a high
/// watermark, and releases it once the count falls below a low watermark.
///
/// The throttled state (from a report above `high` until one below `low`) is the reporter's
/// own: [`is_held`](Self::is_held) reads it and [`throttle`](Self::throttle) defers upstream
/// items on it, whether or not the sink took the hold. A sink may refuse the hold (its
/// `max_holds` reached): the refusal is kept in [`last_sink_error`](Self::last_sink_error),
/// [`is_signal_held`](Self::is_signal_held) reads false, and every later report while
/// throttled asks the sink again.
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
    /// The throttled state, for [`Backpressure::throttle`]'s deferrals to wait on; written
    /// under `state`'s lock, so it follows `State::held` exactly.
    pub(super) throttled: tokio::sync::watch::Sender<bool>,
    sink: SignalSink,
    name: Name,
    high: usize,
    low: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Throttled: from a report above `high` until one below `low`.
    held: bool,
    /// The sink's hold; `None` while not throttled, and while throttled if the sink refused
    /// it (asked again on the next report).
    hold: Option<Hold>,
    /// A reporter is asking the sink for the hold, outside the lock; the others leave it to
    /// it, so the condition is never held twice.
    acquiring: bool,
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
    /// The name was empty: the hold would be `backpressure.`, which says nothing about what
    /// is under pressure.
    #[error(
        "the backpressure name is empty: name what is under pressure, such as `db` for `backpressure.db`"
    )]
    EmptyName,
    /// The name starts or ends with a dot (`db.`, `.db`): the hold would hold an empty
    /// segment (`backpressure.db.`, `backpressure..db`). The dot after `backpressure` is
    /// added; inner dots are fine (`db.orders`).
    #[error(
        "the backpressure name `{0}` starts or ends with a dot, which would leave an empty segment (`backpressure..db`): give the segments alone, such as `db` or `db.orders`"
    )]
    NameDot(String),
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
    /// [`BackpressureError`] when the name is empty, starts or ends with a dot, or is invalid,
    /// `low` is 0 (the hold could never be released), or `low > high`.
    pub fn new(
        sink: &SignalSink,
        name: &str,
        high: usize,
        low: usize,
    ) -> Result<Self, BackpressureError> {
        if low == 0 || low > high {
            return Err(BackpressureError::Watermarks { high, low });
        }
        if name.is_empty() {
            return Err(BackpressureError::EmptyName);
        }
        if name.starts_with('.') || name.ends_with('.') {
            return Err(BackpressureError::NameDot(name.to_owned()));
        }
        let name = Name::new(&format!("backpressure.{name}")).map_err(BackpressureError::Name)?;
        Ok(Self {
            inner: Arc::new(Inner {
                wake: tokio::sync::Notify::new(),
                throttled: tokio::sync::watch::Sender::new(false),
                sink: sink.clone(),
                name,
                high,
                low,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Reports the current pending count; throttles or releases as the watermarks say, and
    /// takes or releases the hold to match (asking the sink again for a hold it refused).
    /// Returns whether it is throttled afterwards.
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
            state.times_held += 1;
            self.inner.throttled.send_replace(true);
        } else if state.held && pending < self.inner.low {
            state.held = false;
            self.inner.throttled.send_replace(false);
            let hold = state.hold.take();
            // Released outside the lock: the sink runs watchers and listeners synchronously,
            // and none of them may find this lock taken.
            drop(state);
            drop(hold);
            return false;
        }
        if !state.held || state.hold.is_some() || state.acquiring {
            return state.held;
        }
        // Throttled without the hold: just crossed `high`, or the sink refused it before.
        // It is taken outside the lock, for the same reason as above.
        state.acquiring = true;
        drop(state);
        let taken = self.inner.sink.hold(self.inner.name.as_str());
        let mut state = self.lock();
        state.acquiring = false;
        let stale = match taken {
            Ok(hold) if state.held && state.hold.is_none() => {
                state.hold = Some(hold);
                None
            }
            // Released while it was being taken (another reporter read a low count).
            Ok(hold) => Some(hold),
            Err(e) => {
                state.last_sink_error = Some(e);
                None
            }
        };
        let held = state.held;
        drop(state);
        drop(stale);
        held
    }

    /// Whether it is throttled: true from a report above `high` until one below `low`. This
    /// is the state [`throttle`](Self::throttle) defers on; the sink's `backpressure.<name>`
    /// is held over the same span, unless the sink refused it (see
    /// [`is_signal_held`](Self::is_signal_held)).
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.lock().held
    }

    /// Whether the sink holds `backpressure.<name>` for this reporter now. False while
    /// throttled only if the sink refused the hold ([`last_sink_error`](Self::last_sink_error)
    /// says why); the next report asks for it again.
    #[must_use]
    pub fn is_signal_held(&self) -> bool {
        self.lock().hold.is_some()
    }

    /// How many times it has been throttled (counted whether or not the sink took the hold).
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

    /// The last error the sink returned when taking the hold (for example `TooManyHolds`);
    /// kept after a later attempt succeeds.
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
            .field("signal_held", &state.hold.is_some())
            .field("last_pending", &state.last_pending)
            .finish_non_exhaustive()
    }
}
