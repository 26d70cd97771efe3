//! The breaker: a state machine fed by failure signals, driving holds and transition signals.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ephemeral::{
    Hold, Listener, Name, OperationId, Pattern, RaiseError, Signal, SignalBuilder, SignalSink,
};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::options::{BreakerConfigError, CircuitBreakerOptions, Trip};

/// Where a [`CircuitBreaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Traffic flows; failures are counted.
    Closed,
    /// Traffic is refused until the open period ends; `circuit.open` is held on the sink.
    Open,
    /// A bounded number of probes may run; a success closes, a failure reopens.
    HalfOpen,
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        })
    }
}

/// What [`CircuitBreaker::try_probe`] decided for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeDecision {
    /// Closed, or a half-open probe slot was taken: run the item.
    Admit,
    /// Open: refuse the item.
    Refuse,
    /// Half-open with every probe slot taken: wait for the next state change.
    Wait,
}

/// A circuit breaker driven by failure signals on a [`SignalSink`].
///
/// Closed, it counts signals matching the failure pattern (`failure` by default). After N of
/// them within a window, or N in a row, it opens: it holds `circuit.open` on the sink (so any
/// coordinator with `cancel_on("circuit.open")` or `defer_on("circuit.open")` reacts at once)
/// for the open period, which can grow by a backoff factor on each reopening. Then it goes
/// half-open (raising `circuit.half_open`) and admits a bounded number of probes; enough
/// successes close it (raising `circuit.closed`), a failure reopens it.
///
/// The signals: `circuit.open` is a hold (a condition, live for the whole open period,
/// exempt from the sink's age and capacity eviction) with an integer header `open_for_ms`,
/// the length of this open period in milliseconds; `circuit.half_open` and `circuit.closed`
/// are ordinary raised signals (events that expire with the sink's window).
///
/// Failures are seen synchronously through a sink listener: when the N-th failure's `raise`
/// returns, `circuit.open` is already held. The open-period timer runs on the tokio runtime
/// the breaker was built in.
///
/// # When to use it
///
/// In front of a flaky dependency, so that its failures stop sending it more work for a while
/// instead of piling up timeouts. When you only want to slow down rather than stop, use
/// adaptive rate limiting; to stop while a *known* condition holds, a plain `defer_on` is
/// enough.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let breaker = CircuitBreaker::new(
///     &sink,
///     CircuitBreakerOptions::default()
///         .failures_within(3, Duration::from_secs(10))
///         .open_for(Duration::from_secs(5)),
/// )?;
/// for _ in 0..3 {
///     sink.raise("failure")?;
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(sink.has_signal("circuit.open"));
///
/// tokio::time::sleep(Duration::from_secs(5)).await;
/// assert_eq!(breaker.state(), CircuitState::HalfOpen);
/// breaker.record_success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "the breaker stops listening for failures when its last handle is dropped"]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Names {
    open: Name,
    half_open: Name,
    closed: Name,
}

struct Inner {
    sink: SignalSink,
    options: CircuitBreakerOptions,
    names: Names,
    /// The failure pattern compiled once, for [`CircuitBreaker::counts_as_failure`].
    failure_matcher: Pattern,
    core: Mutex<Core>,
    state: watch::Sender<CircuitState>,
    runtime: Handle,
    /// Detached when the last handle goes: the callbacks only hold a `Weak`.
    listeners: Mutex<Vec<Listener>>,
}

struct Core {
    phase: CircuitState,
    /// Failure instants within the window, at most `failures` of them.
    failures: VecDeque<Instant>,
    consecutive: usize,
    open_period: Duration,
    open_until: Option<Instant>,
    hold: Option<Hold>,
    probes_admitted: usize,
    probe_successes: usize,
    /// Operations admitted as probes in this half-open phase (at most `probes`).
    probe_ids: Vec<OperationId>,
    /// Bumped on every transition, so that a late timer or a late hold is recognised as stale.
    generation: u64,
    opened: u64,
    last_sink_error: Option<RaiseError>,
    /// The task that ends the current open period: aborted by any other way out of it
    /// (`reset`, a catch-up) and when the breaker is dropped, so a breaker leaves no sleeping
    /// task behind (each used to sleep out its whole open period). A `trip` that restarts
    /// the period keeps it: it sleeps again until the new end when it fires.
    timer: Option<AbortHandle>,
}

/// What a transition asks of the sink and the runtime, done after the lock is released so
/// that listeners of the breaker's own signals may call back into it.
enum Effect {
    Opened {
        generation: u64,
        until: Option<Instant>,
        period: Duration,
    },
    HalfOpened(Option<Hold>),
    Closed(Option<Hold>),
}

impl CircuitBreaker {
    /// Builds a breaker that listens to `sink`.
    ///
    /// # Errors
    ///
    /// A [`BreakerConfigError`] for invalid options or when called outside a tokio runtime.
    pub fn new(
        sink: &SignalSink,
        options: CircuitBreakerOptions,
    ) -> Result<Self, BreakerConfigError> {
        options.validate()?;
        let runtime = Handle::try_current().map_err(|_| BreakerConfigError::NoRuntime)?;
        let name = |suffix: &str| {
            Name::new(&format!("{}.{suffix}", options.prefix)).map_err(BreakerConfigError::Prefix)
        };
        let names = Names {
            open: name("open")?,
            half_open: name("half_open")?,
            closed: name("closed")?,
        };
        let (state, _) = watch::channel(CircuitState::Closed);
        let inner = Arc::new(Inner {
            sink: sink.clone(),
            names,
            failure_matcher: Pattern::new(&options.failure_pattern),
            core: Mutex::new(Core {
                phase: CircuitState::Closed,
                failures: VecDeque::new(),
                consecutive: 0,
                open_period: options.open_for,
                open_until: None,
                hold: None,
                probes_admitted: 0,
                probe_successes: 0,
                probe_ids: Vec::new(),
                generation: 0,
                opened: 0,
                last_sink_error: None,
                timer: None,
            }),
            options,
            state,
            runtime,
            listeners: Mutex::new(Vec::new()),
        });
        let mut listeners = Vec::with_capacity(2);
        let weak = Arc::downgrade(&inner);
        listeners.push(
            sink.on_signal(&inner.options.failure_pattern, move |signal| {
                if let Some(inner) = weak.upgrade()
                    && !inner.is_own(signal)
                {
                    inner.failure();
                }
            }),
        );
        if let Some(pattern) = inner.options.success_pattern.clone() {
            let weak = Arc::downgrade(&inner);
            listeners.push(sink.on_signal(&pattern, move |signal| {
                if let Some(inner) = weak.upgrade()
                    && !inner.is_own(signal)
                {
                    inner.success();
                }
            }));
        }
        *lock(&inner.listeners) = listeners;
        Ok(Self { inner })
    }

    /// The current state. Reading it changes nothing.
    ///
    /// The open period ends at its deadline: from that instant on this reports `HalfOpen`,
    /// even if the timer task that releases `circuit.open` and raises `circuit.half_open`
    /// has not been polled yet (it runs at that same instant of tokio's clock).
    #[must_use]
    pub fn state(&self) -> CircuitState {
        lock(&self.inner.core).effective(Instant::now())
    }

    /// A receiver that sees every state change, for waiting on one.
    ///
    /// It is also marked changed, with the same state, when a half-open probe slot is given
    /// back ([`release_probe`](Self::release_probe), a cancelled probe, a dropped probe
    /// permit), so that items waiting for a slot wake: compare the state you read with the
    /// one you had, rather than taking each `changed()` for a transition.
    #[must_use]
    pub fn watch_state(&self) -> watch::Receiver<CircuitState> {
        self.inner.state.subscribe()
    }

    /// While open, how long until the breaker stops refusing and goes half-open; `None`
    /// when not open (or when the open period does not fit tokio's clock and only
    /// [`reset`](Self::reset) ends it).
    #[must_use]
    pub fn time_until_close(&self) -> Option<Duration> {
        let core = lock(&self.inner.core);
        let now = Instant::now();
        match core.effective(now) {
            CircuitState::Open => core
                .open_until
                .map(|until| until.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// How many times the breaker has opened since it was built.
    #[must_use]
    pub fn times_opened(&self) -> u64 {
        lock(&self.inner.core).opened
    }

    /// The open period the next opening would use (grows by the backoff factor).
    #[must_use]
    pub fn open_period(&self) -> Duration {
        lock(&self.inner.core).open_period
    }

    /// The last error the sink returned for one of the breaker's own signals (for example
    /// `TooManyHolds` when `circuit.open` could not be held); the state machine carries on
    /// regardless.
    #[must_use]
    pub fn last_sink_error(&self) -> Option<RaiseError> {
        lock(&self.inner.core).last_sink_error.clone()
    }

    /// Counts one failure, exactly as a matching failure signal would.
    pub fn record_failure(&self) {
        self.inner.failure();
    }

    /// Counts one success: in half-open it may close the breaker; closed, it resets the
    /// consecutive-failure count.
    pub fn record_success(&self) {
        self.inner.success();
    }

    /// Opens the breaker now, whatever its state (with the current open period).
    ///
    /// On a breaker already open it restarts the open period from now (the current period:
    /// no backoff growth) and nothing else: it is not another opening
    /// ([`times_opened`](Self::times_opened) stays), the `open` hold stays as it is (its
    /// watchers and subscribers hear nothing new), and the breaker half-opens when the
    /// restarted period ends.
    pub fn trip(&self) {
        let effect = {
            let mut core = lock(&self.inner.core);
            let period = core.open_period;
            if core.phase == CircuitState::Open {
                core.open_until = Instant::now().checked_add(period);
                // The running timer stays: it finds the period moved on when it fires and
                // sleeps again until the new end (see `half_open`).
                None
            } else {
                Some(self.inner.open(&mut core, period))
            }
        };
        self.inner.apply(effect);
    }

    /// Closes the breaker now, whatever its state, and resets the open period.
    pub fn reset(&self) {
        let effect = {
            let mut core = lock(&self.inner.core);
            if core.phase == CircuitState::Closed {
                None
            } else {
                Some(self.inner.close(&mut core))
            }
        };
        self.inner.apply(effect);
    }

    /// Asks whether one item may run now: closed admits, open refuses, half-open admits until
    /// the probe slots are taken and then says wait. An admitted half-open probe keeps its
    /// slot until the breaker changes state or [`release_probe`](Self::release_probe) gives
    /// it back.
    pub fn try_probe(&self) -> ProbeDecision {
        self.take_probe(None)
    }

    pub(crate) fn take_probe(&self, id: Option<OperationId>) -> ProbeDecision {
        self.take(id).0
    }

    /// `take_probe` for a [`BreakerPermit`](super::BreakerPermit): the decision, the phase it
    /// was taken in and that phase's generation, all read under one lock.
    pub(crate) fn take_permit(&self) -> (ProbeDecision, CircuitState, u64) {
        self.take(None)
    }

    fn take(&self, id: Option<OperationId>) -> (ProbeDecision, CircuitState, u64) {
        self.inner.catch_up();
        let mut core = lock(&self.inner.core);
        let decision = match core.phase {
            CircuitState::Closed => ProbeDecision::Admit,
            CircuitState::Open => ProbeDecision::Refuse,
            // An item admitted as a probe and then put aside by a later hook comes back to
            // be checked again: it still holds its slot (otherwise it would wait for a slot
            // it holds itself, and the breaker would stay half-open for good).
            CircuitState::HalfOpen if id.is_some_and(|id| core.probe_ids.contains(&id)) => {
                ProbeDecision::Admit
            }
            CircuitState::HalfOpen if core.probes_admitted < self.inner.options.probes => {
                core.probes_admitted += 1;
                core.probe_ids.extend(id);
                ProbeDecision::Admit
            }
            CircuitState::HalfOpen => ProbeDecision::Wait,
        };
        (decision, core.phase, core.generation)
    }

    /// Applies a permit's verdict (`None`: none, give a probe slot back) if the breaker is
    /// still in the phase the permit was granted in (checked under the lock that applies it).
    pub(crate) fn settle_permit(&self, generation: u64, verdict: Option<bool>) {
        match verdict {
            Some(true) => self.inner.success_in(Some(generation)),
            Some(false) => self.inner.failure_in(Some(generation)),
            None => self.release_probe_in(Some(generation)),
        }
    }

    /// Whether a signal named `name` counts as a failure for this breaker: it matches the
    /// failure pattern and is not one of the breaker's own signals.
    #[must_use]
    pub fn counts_as_failure(&self, name: &str) -> bool {
        self.inner.failure_matcher.matches(name)
            && name != self.inner.names.open.as_str()
            && name != self.inner.names.half_open.as_str()
            && name != self.inner.names.closed.as_str()
    }

    /// Whether `id` was admitted as a probe in this half-open phase; forgets it.
    pub(crate) fn forget_probe(&self, id: OperationId) -> bool {
        let mut core = lock(&self.inner.core);
        match core.probe_ids.iter().position(|p| *p == id) {
            Some(at) => {
                core.probe_ids.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// Gives back a half-open probe slot taken by an item that ended without a verdict (for
    /// example, cancelled). Does nothing outside half-open.
    pub fn release_probe(&self) {
        self.release_probe_in(None);
    }

    fn release_probe_in(&self, generation: Option<u64>) {
        let mut core = lock(&self.inner.core);
        if generation.is_none_or(|g| g == core.generation)
            && core.phase == CircuitState::HalfOpen
            && core.probes_admitted > 0
        {
            core.probes_admitted -= 1;
            // A waiting item may now take the slot: wake waiters without a state change.
            drop(core);
            self.inner.state.send_modify(|_| {});
        }
    }

    /// How many half-open probe slots are taken.
    #[must_use]
    pub fn probes_admitted(&self) -> usize {
        lock(&self.inner.core).probes_admitted
    }

    /// The sink the breaker listens to and signals on.
    #[must_use]
    pub fn sink(&self) -> &SignalSink {
        &self.inner.sink
    }
}

impl Inner {
    fn is_own(&self, signal: &Signal) -> bool {
        let name = signal.name();
        *name == self.names.open || *name == self.names.half_open || *name == self.names.closed
    }

    /// Applies a due open-to-half-open transition before an action, so that an action at
    /// the deadline sees what `state()` reports even if the timer task has not run yet.
    fn catch_up(self: &Arc<Self>) {
        let due = {
            let core = lock(&self.core);
            (core.phase == CircuitState::Open
                && core.open_until.is_some_and(|until| until <= Instant::now()))
            .then_some(core.generation)
        };
        if let Some(generation) = due {
            self.half_open(generation);
        }
    }

    fn failure(self: &Arc<Self>) {
        self.failure_in(None);
    }

    /// A failure; with `Some(generation)`, only if the breaker is still in that phase.
    fn failure_in(self: &Arc<Self>, generation: Option<u64>) {
        self.catch_up();
        let effect = {
            let mut core = lock(&self.core);
            if generation.is_some_and(|g| g != core.generation) {
                return;
            }
            match core.phase {
                CircuitState::Closed => {
                    let now = Instant::now();
                    let trip = match self.options.trip {
                        Trip::Consecutive(n) => {
                            core.consecutive += 1;
                            core.consecutive >= n
                        }
                        Trip::Within { failures, window } => {
                            core.failures.push_back(now);
                            while core.failures.len() > failures {
                                core.failures.pop_front();
                            }
                            if let Some(start) = now.checked_sub(window) {
                                while core.failures.front().is_some_and(|t| *t <= start) {
                                    core.failures.pop_front();
                                }
                            }
                            core.failures.len() >= failures
                        }
                    };
                    if trip {
                        let period = core.open_period;
                        Some(self.open(&mut core, period))
                    } else {
                        None
                    }
                }
                // Already refusing: more failures change nothing.
                CircuitState::Open => None,
                CircuitState::HalfOpen => {
                    // Saturating: a large factor (any finite one is valid) reaches
                    // `max_open` rather than overflowing a `Duration`.
                    let grown = Duration::try_from_secs_f64(
                        core.open_period.as_secs_f64() * self.options.backoff,
                    )
                    .unwrap_or(Duration::MAX);
                    let period = grown.min(self.options.cap());
                    Some(self.open(&mut core, period))
                }
            }
        };
        self.apply(effect);
    }

    fn success(self: &Arc<Self>) {
        self.success_in(None);
    }

    /// A success; with `Some(generation)`, only if the breaker is still in that phase.
    fn success_in(self: &Arc<Self>, generation: Option<u64>) {
        self.catch_up();
        let effect = {
            let mut core = lock(&self.core);
            if generation.is_some_and(|g| g != core.generation) {
                return;
            }
            match core.phase {
                CircuitState::Closed => {
                    core.consecutive = 0;
                    None
                }
                CircuitState::Open => None,
                CircuitState::HalfOpen => {
                    core.probe_successes += 1;
                    (core.probe_successes >= self.options.successes_to_close)
                        .then(|| self.close(&mut core))
                }
            }
        };
        self.apply(effect);
    }

    fn open(&self, core: &mut Core, period: Duration) -> Effect {
        core.stop_timer();
        core.generation += 1;
        core.phase = CircuitState::Open;
        core.open_period = period;
        core.open_until = Instant::now().checked_add(period);
        core.failures.clear();
        core.consecutive = 0;
        core.probes_admitted = 0;
        core.probe_successes = 0;
        core.probe_ids.clear();
        core.opened += 1;
        Effect::Opened {
            generation: core.generation,
            until: core.open_until,
            period,
        }
    }

    fn close(&self, core: &mut Core) -> Effect {
        core.stop_timer();
        core.generation += 1;
        core.phase = CircuitState::Closed;
        core.open_period = self.options.open_for;
        core.open_until = None;
        core.failures.clear();
        core.consecutive = 0;
        core.probes_admitted = 0;
        core.probe_successes = 0;
        core.probe_ids.clear();
        Effect::Closed(core.hold.take())
    }

    fn half_open(self: &Arc<Self>, generation: u64) {
        let effect = {
            let mut core = lock(&self.core);
            if core.generation != generation || core.phase != CircuitState::Open {
                return;
            }
            // `trip` on the open breaker restarted its period: not due yet, wait again.
            if let Some(until) = core.open_until
                && until > Instant::now()
            {
                drop(core);
                self.arm_timer(generation, until);
                return;
            }
            core.stop_timer();
            core.generation += 1;
            core.phase = CircuitState::HalfOpen;
            core.open_until = None;
            Effect::HalfOpened(core.hold.take())
        };
        self.apply(Some(effect));
    }

    fn apply(self: &Arc<Self>, effect: Option<Effect>) {
        let Some(effect) = effect else { return };
        match effect {
            Effect::Opened {
                generation,
                until,
                period,
            } => {
                self.state.send_replace(CircuitState::Open);
                let held = self
                    .sink
                    .hold_with(SignalBuilder::new(self.names.open.clone()).header(
                        "open_for_ms",
                        i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
                    ));
                let mut core = lock(&self.core);
                match held {
                    // A stale hold (the breaker moved on meanwhile) is dropped, releasing it.
                    Ok(hold) if core.generation == generation => core.hold = Some(hold),
                    Ok(_) => {}
                    Err(e) => core.last_sink_error = Some(e),
                }
                drop(core);
                if let Some(until) = until {
                    self.arm_timer(generation, until);
                }
            }
            Effect::HalfOpened(hold) => {
                drop(hold);
                self.state.send_replace(CircuitState::HalfOpen);
                self.raise(&self.names.half_open);
            }
            Effect::Closed(hold) => {
                drop(hold);
                self.state.send_replace(CircuitState::Closed);
                self.raise(&self.names.closed);
            }
        }
    }

    /// Starts the task that half-opens the breaker at `until`, replacing the current one,
    /// unless the breaker moved on from `generation` meanwhile.
    fn arm_timer(self: &Arc<Self>, generation: u64, until: Instant) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let timer = self
            .runtime
            .spawn(async move {
                tokio::time::sleep_until(until).await;
                if let Some(inner) = weak.upgrade() {
                    inner.half_open(generation);
                }
            })
            .abort_handle();
        let mut core = lock(&self.core);
        if core.generation == generation {
            core.stop_timer();
            core.timer = Some(timer);
        } else {
            // The breaker moved on while the timer was being spawned.
            timer.abort();
        }
    }

    fn raise(&self, name: &Name) {
        if let Err(e) = self.sink.raise_with(name.clone()) {
            lock(&self.core).last_sink_error = Some(e);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.core
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop_timer();
    }
}

impl Core {
    /// Aborts the open period's timer, if any: the period ends some other way.
    fn stop_timer(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }

    fn effective(&self, now: Instant) -> CircuitState {
        match (self.phase, self.open_until) {
            (CircuitState::Open, Some(until)) if until <= now => CircuitState::HalfOpen,
            (phase, _) => phase,
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the breaker's state
/// is updated in single steps, so it is still consistent and we carry on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = lock(&self.inner.core);
        f.debug_struct("CircuitBreaker")
            .field("state", &core.phase)
            .field("open_period", &core.open_period)
            .field("probes_admitted", &core.probes_admitted)
            .field("times_opened", &core.opened)
            .finish_non_exhaustive()
    }
}
