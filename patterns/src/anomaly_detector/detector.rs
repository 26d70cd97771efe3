//! The detector: a bounded arrival history, a hold and a clearing timer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use ephemeral::{Hold, Listener, Name, NameError, Pattern, RaiseError, SignalSink};
use tokio::runtime::Handle;
use tokio::time::Instant;

/// Why an [`AnomalyDetector`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnomalyError {
    /// The window was zero.
    #[error("the anomaly window is 0: use a non-zero window")]
    ZeroWindow,
    /// The threshold was zero, which would make every instant an anomaly.
    #[error(
        "the anomaly threshold is 0: use at least 1 (that many signals within the window are an anomaly)"
    )]
    ZeroThreshold,
    /// The pattern can match no signal name (`""`, `" , "`, `"a b"`: see
    /// [`Pattern::is_empty`]), so no anomaly would ever be detected.
    #[error(
        "pattern `{pattern}` matches no signal name, so no anomaly would ever be detected: give a pattern such as `error.*`"
    )]
    EmptyPattern {
        /// The pattern given.
        pattern: String,
    },
    /// The prefix was empty: the names would start with a dot (`.detected`).
    #[error("the anomaly prefix is empty: give one, such as `anomaly`")]
    EmptyPrefix,
    /// The prefix starts or ends with a dot (`anomaly.`, `.anomaly`): the names would hold
    /// an empty segment (`anomaly..detected`). The dot after the prefix is added.
    #[error(
        "the anomaly prefix `{0}` starts or ends with a dot, which would leave an empty segment (`anomaly..detected`): give the segments alone, such as `anomaly` or `db.anomaly`"
    )]
    PrefixDot(String),
    /// The prefix does not make valid names.
    #[error("the anomaly prefix does not make valid signal names: {0}")]
    Prefix(#[source] NameError),
    /// Built outside a tokio runtime (the clearing timer needs one).
    #[error("an anomaly detector needs a tokio runtime: create it inside one")]
    NoRuntime,
}

/// Raises `<prefix>.detected` and holds `<prefix>.active` while at least `threshold`
/// signals matching a pattern arrived within `window` (the threshold is inclusive, as in the
/// original: a threshold of 5 detects the fifth signal); raises `<prefix>.cleared` when the
/// count falls below it. A window too long for the clock to reach its end (such as
/// `Duration::MAX`) never clears: once detected, the anomaly stays active while the detector
/// lives.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::anomaly_detector::AnomalyDetector;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let detector = AnomalyDetector::new(&sink, "error.*", 3, Duration::from_secs(10), "anomaly")?;
/// sink.raise("error.db")?;
/// sink.raise("error.db")?;
/// assert!(!detector.is_active());
/// sink.raise("error.db")?; // the third within 10 s
/// assert!(detector.is_active());
/// assert!(sink.has_signal("anomaly.detected") && sink.has_signal("anomaly.active"));
///
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// # for _ in 0..3 { tokio::task::yield_now().await; }
/// assert!(!detector.is_active());
/// assert!(sink.has_signal("anomaly.cleared"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "the detector stops listening when its last handle is dropped"]
pub struct AnomalyDetector {
    inner: Arc<Inner>,
}

struct Inner {
    sink: SignalSink,
    threshold: usize,
    window: Duration,
    detected: Name,
    cleared: Name,
    active: Name,
    runtime: Handle,
    state: Mutex<State>,
    listener: Mutex<Option<Listener>>,
}

#[derive(Default)]
struct State {
    /// The last `threshold` arrivals.
    arrivals: VecDeque<Instant>,
    active: bool,
    hold: Option<Hold>,
    /// While active, when the anomaly clears (`None`: never, the window is past the clock).
    clear_at: Option<Instant>,
    /// Whether the one clearing timer task is running. Arrivals only move `clear_at`; the
    /// timer follows it, so a storm of arrivals costs no task each.
    timer: bool,
    detections: u64,
    last_sink_error: Option<RaiseError>,
}

impl AnomalyDetector {
    /// A detector over signals matching `pattern` on `sink`, with names under `prefix`.
    ///
    /// # Errors
    ///
    /// [`AnomalyError`] for a zero window or threshold, a pattern that can match no signal
    /// name ([`AnomalyError::EmptyPattern`]), a prefix that is empty, starts or ends with a
    /// dot or does not make valid names, or outside a tokio runtime.
    pub fn new(
        sink: &SignalSink,
        pattern: &str,
        threshold: usize,
        window: Duration,
        prefix: &str,
    ) -> Result<Self, AnomalyError> {
        if window.is_zero() {
            return Err(AnomalyError::ZeroWindow);
        }
        if threshold == 0 {
            return Err(AnomalyError::ZeroThreshold);
        }
        // A detector that can hear nothing is a mistake (a typo, an unset variable), not a
        // quiet detector: refused, as a watcher's pattern is.
        if Pattern::new(pattern).is_empty() {
            return Err(AnomalyError::EmptyPattern {
                pattern: pattern.to_owned(),
            });
        }
        if prefix.is_empty() {
            return Err(AnomalyError::EmptyPrefix);
        }
        if prefix.starts_with('.') || prefix.ends_with('.') {
            return Err(AnomalyError::PrefixDot(prefix.to_owned()));
        }
        let name =
            |suffix: &str| Name::new(&format!("{prefix}.{suffix}")).map_err(AnomalyError::Prefix);
        let runtime = Handle::try_current().map_err(|_| AnomalyError::NoRuntime)?;
        let inner = Arc::new(Inner {
            sink: sink.clone(),
            threshold,
            window,
            detected: name("detected")?,
            cleared: name("cleared")?,
            active: name("active")?,
            runtime,
            state: Mutex::new(State::default()),
            listener: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        let listener = sink.on_signal(pattern, move |signal| {
            if let Some(inner) = weak.upgrade() {
                let name = signal.name();
                // Our own signals never feed the count, even under a broad pattern.
                if *name != inner.detected && *name != inner.cleared && *name != inner.active {
                    inner.arrive();
                }
            }
        });
        *lock(&inner.listener) = Some(listener);
        Ok(Self { inner })
    }

    /// Whether an anomaly is in progress.
    #[must_use]
    pub fn is_active(&self) -> bool {
        lock(&self.inner.state).active
    }

    /// How many anomalies were detected so far.
    #[must_use]
    pub fn detections(&self) -> u64 {
        lock(&self.inner.state).detections
    }

    /// The last error the sink returned for one of the detector's own signals or its hold.
    #[must_use]
    pub fn last_sink_error(&self) -> Option<RaiseError> {
        lock(&self.inner.state).last_sink_error.clone()
    }
}

impl Inner {
    fn arrive(self: &Arc<Self>) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.arrivals.push_back(now);
        while state.arrivals.len() > self.threshold {
            state.arrivals.pop_front();
        }
        let clear_at = match self.clear_at(&state) {
            Clearing::Below => return,
            Clearing::At(at) if at <= now => return,
            Clearing::At(at) => Some(at),
            Clearing::Never => None,
        };
        // Every arrival at or above the threshold pushes the clearing instant later; the
        // timer, if one runs, picks the new instant up when it wakes.
        let newly = !state.active;
        if newly {
            state.active = true;
            state.detections += 1;
        }
        state.clear_at = clear_at;
        // A window past the clock never clears: the hold stays, no timer is needed.
        let start_timer = clear_at.is_some() && !state.timer;
        state.timer |= start_timer;
        drop(state);
        if newly {
            let hold = self.sink.hold_with(self.active.clone());
            let raised = self.sink.raise_with(self.detected.clone());
            let mut state = lock(&self.state);
            match hold {
                Ok(hold) if state.active => state.hold = Some(hold),
                Ok(_) => {}
                Err(e) => state.last_sink_error = Some(e),
            }
            if let Err(e) = raised {
                state.last_sink_error = Some(e);
            }
        }
        if start_timer {
            self.start_timer();
        }
    }

    /// The one clearing timer: sleeps until `clear_at`, follows it when arrivals moved it
    /// later, clears when it is due, and ends there (or when the detector is dropped).
    fn start_timer(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        self.runtime.spawn(async move {
            loop {
                // No strong handle is kept while asleep, so dropping the detector ends it.
                let at = {
                    let Some(inner) = weak.upgrade() else { return };
                    let mut state = lock(&inner.state);
                    match state.clear_at {
                        Some(at) if state.active && at > Instant::now() => at,
                        Some(_) if state.active => {
                            inner.clear(state);
                            return;
                        }
                        _ => {
                            state.timer = false;
                            return;
                        }
                    }
                };
                tokio::time::sleep_until(at).await;
            }
        });
    }

    /// When the count within the window falls below the threshold, if it is at or above it
    /// now: the instant the oldest of the last `threshold` arrivals leaves the window, or
    /// never if that instant is past what the clock can hold (a window of `Duration::MAX`).
    fn clear_at(&self, state: &State) -> Clearing {
        if state.arrivals.len() < self.threshold {
            return Clearing::Below;
        }
        match state.arrivals.front() {
            Some(oldest) => oldest
                .checked_add(self.window)
                .map_or(Clearing::Never, Clearing::At),
            None => Clearing::Below,
        }
    }

    /// Ends the anomaly in progress (called by the timer, which ends with it).
    fn clear(&self, mut state: MutexGuard<'_, State>) {
        state.active = false;
        state.clear_at = None;
        state.timer = false;
        let hold = state.hold.take();
        drop(state);
        drop(hold);
        if let Err(e) = self.sink.raise_with(self.cleared.clone()) {
            lock(&self.state).last_sink_error = Some(e);
        }
    }
}

/// When an anomaly in progress clears.
enum Clearing {
    /// Fewer than `threshold` arrivals are counted: no anomaly.
    Below,
    /// When the oldest counted arrival leaves the window.
    At(Instant),
    /// The window ends past what the clock can hold: the anomaly never clears.
    Never,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoned only if a panic hit mid-update; every update is a single consistent step.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for AnomalyDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("AnomalyDetector")
            .field("threshold", &self.inner.threshold)
            .field("window", &self.inner.window)
            .field("active", &state.active)
            .field("detections", &state.detections)
            .finish_non_exhaustive()
    }
}
