//! `EphemeralOptions`: the validated configuration of every coordinator.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{Pattern, SignalSink};

use super::snapshot::OperationSnapshot;

/// What happens to an item whose deferrals add up to
/// [`max_defer`](EphemeralOptions::max_defer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeferPolicy {
    /// Start it anyway (the default): defer rules and admission hooks' `Defer` no longer
    /// hold it back (a hook may still cancel it). Items held for less keep waiting.
    #[default]
    Run,
    /// End it `Cancelled(DeferTimeout)`.
    Cancel,
}

/// Which of the three drain signals a coordinator obeys (all three by default).
///
/// * `coordinator.drain.all` drains every coordinator on the sink;
/// * `coordinator.drain.id`, keyed by a coordinator id, drains that coordinator;
/// * `coordinator.drain.pattern`, keyed by a pattern over coordinator ids, drains the
///   coordinators whose id matches.
///
/// Only signals raised after the coordinator was created count.
///
/// A drain signal acts as [`complete`](crate::EphemeralWorkCoordinator::complete) does, but
/// asynchronously: the coordinator's steering task obeys it as soon as it runs, at the next
/// await point after the raise, not inside `raise`. An item enqueued by the same task
/// before that await (a `try_enqueue` right after the raise, say) is still accepted, and
/// runs: nothing is lost. To act on the drain, await
/// [`done`](crate::EphemeralWorkCoordinator::done) or `drain()`; to refuse items at once,
/// call `complete()`.
///
/// # Examples
///
/// ```
/// use ephemeral::{DrainSignals, EphemeralOptions};
///
/// // Drained only when addressed by its own id, not by a fleet-wide drain.
/// let options = EphemeralOptions::default()
///     .id("billing")
///     .drain_signals(DrainSignals::OFF.id(true));
/// assert!(options.validate().is_ok());
/// assert_eq!(DrainSignals::default(), DrainSignals::ON);
/// assert_eq!(DrainSignals::from(false), DrainSignals::OFF);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DrainSignals {
    all: bool,
    id: bool,
    pattern: bool,
}

impl DrainSignals {
    /// All three drain signals are obeyed (the default).
    pub const ON: Self = Self {
        all: true,
        id: true,
        pattern: true,
    };

    /// No drain signal is obeyed.
    pub const OFF: Self = Self {
        all: false,
        id: false,
        pattern: false,
    };

    /// Whether `coordinator.drain.all` is obeyed.
    #[must_use]
    pub const fn all(self, on: bool) -> Self {
        Self { all: on, ..self }
    }

    /// Whether `coordinator.drain.id` (key = this coordinator's id) is obeyed.
    #[must_use]
    pub const fn id(self, on: bool) -> Self {
        Self { id: on, ..self }
    }

    /// Whether `coordinator.drain.pattern` (key = a pattern over coordinator ids) is obeyed.
    #[must_use]
    pub const fn pattern(self, on: bool) -> Self {
        Self {
            pattern: on,
            ..self
        }
    }

    /// Whether `coordinator.drain.all` is obeyed.
    #[must_use]
    pub const fn obeys_all(&self) -> bool {
        self.all
    }

    /// Whether `coordinator.drain.id` is obeyed.
    #[must_use]
    pub const fn obeys_id(&self) -> bool {
        self.id
    }

    /// Whether `coordinator.drain.pattern` is obeyed.
    #[must_use]
    pub const fn obeys_pattern(&self) -> bool {
        self.pattern
    }

    /// Whether none is obeyed.
    #[must_use]
    pub const fn is_off(&self) -> bool {
        !self.all && !self.id && !self.pattern
    }
}

impl Default for DrainSignals {
    fn default() -> Self {
        Self::ON
    }
}

impl From<bool> for DrainSignals {
    /// `true`: all three ([`ON`](Self::ON)); `false`: none ([`OFF`](Self::OFF)).
    fn from(on: bool) -> Self {
        if on { Self::ON } else { Self::OFF }
    }
}

/// A callback run for every finished operation (outside every lock).
pub type FinalizedCallback = Arc<dyn Fn(&OperationSnapshot) + Send + Sync>;

/// A callback run for every operation that leaves the window (outside every lock).
pub type EvictedCallback = Arc<dyn Fn(&OperationSnapshot) + Send + Sync>;

/// A bad option value. The message names the option and the accepted range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// A value that must be at least 1 was 0.
    #[error("coordinator option `{0}` must be at least 1")]
    Zero(&'static str),
    /// A duration that must be positive was zero.
    #[error("coordinator option `{0}` must be a positive duration")]
    ZeroDuration(&'static str),
    /// A text option (`name`, `id`) that was empty or only whitespace: a span, a metric
    /// or a `coordinator.drain.id` signal could not tell it from nothing.
    #[error(
        "coordinator option `{0}` is empty or only whitespace: give it visible text (or leave `id` unset for a generated one)"
    )]
    Blank(&'static str),
    /// A count beyond what the coordinator can hold.
    #[error(
        "coordinator option `{option}` is {value}, beyond the largest allowed, {max}: give a smaller value"
    )]
    TooLarge {
        /// The option.
        option: &'static str,
        /// The value given.
        value: usize,
        /// The largest value allowed.
        max: usize,
    },
}

/// The largest `max_pending`: the room for pending items is counted in a semaphore, which
/// holds at most this many permits (`usize::MAX >> 3` on 64-bit targets).
pub const MAX_PENDING: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// The configuration of a coordinator: limits, the window, the sink and the signal rules.
///
/// Built with chained setters; [`validate`](Self::validate) (called by every constructor)
/// turns bad values into an [`OptionsError`].
///
/// | option | default |
/// |---|---|
/// | `max_concurrency` | available parallelism |
/// | `max_pending` | 1024 (at most [`MAX_PENDING`]) |
/// | `max_tracked` | 200 finished operations |
/// | `max_lifetime` | 5 min, measured from finish |
/// | `per_key_concurrency` | 1 |
/// | `fairness_threshold` | 64 pending items on one key |
/// | `echo` | on, 1 min, 256 echoes |
/// | `abort_grace` | 5 s |
/// | drain signals | on |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::EphemeralOptions;
///
/// let options = EphemeralOptions::default()
///     .max_concurrency(8)
///     .max_tracked(1000)
///     .cancel_on("circuit.open")
///     .defer_on("backpressure.*")
///     .resume_on("backpressure.cleared")
///     .abort_grace(Duration::from_secs(2));
/// assert!(options.validate().is_ok());
/// assert!(EphemeralOptions::default().max_concurrency(0).validate().is_err());
/// ```
#[derive(Clone)]
#[must_use]
pub struct EphemeralOptions {
    pub(crate) max_concurrency: usize,
    pub(crate) max_pending: usize,
    pub(crate) max_tracked: usize,
    pub(crate) max_lifetime: Duration,
    pub(crate) per_key_concurrency: usize,
    pub(crate) fairness_threshold: usize,
    pub(crate) sink: Option<SignalSink>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) cancel_running_on: Option<Pattern>,
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
    pub(crate) clear_on: Option<Pattern>,
    pub(crate) drain_signals: DrainSignals,
    pub(crate) max_defer: Option<Duration>,
    pub(crate) defer_policy: DeferPolicy,
    pub(crate) id: Option<Arc<str>>,
    pub(crate) name: Arc<str>,
    pub(crate) echo: bool,
    pub(crate) echo_retention: Duration,
    pub(crate) echo_capacity: usize,
    pub(crate) abort_grace: Duration,
    pub(crate) on_finalized: Option<FinalizedCallback>,
    pub(crate) on_evicted: Option<EvictedCallback>,
    pub(crate) sample: Option<(Duration, FinalizedCallback)>,
    pub(crate) tracking: bool,
}

impl Default for EphemeralOptions {
    fn default() -> Self {
        Self {
            max_concurrency: std::thread::available_parallelism().map_or(4, |n| n.get()),
            max_pending: 1024,
            max_tracked: 200,
            max_lifetime: Duration::from_secs(300),
            per_key_concurrency: 1,
            fairness_threshold: 64,
            sink: None,
            cancel_on: None,
            cancel_running_on: None,
            defer_on: None,
            resume_on: None,
            clear_on: None,
            drain_signals: DrainSignals::ON,
            max_defer: None,
            defer_policy: DeferPolicy::Run,
            id: None,
            name: Arc::from("coordinator"),
            echo: true,
            echo_retention: Duration::from_secs(60),
            echo_capacity: 256,
            abort_grace: Duration::from_secs(5),
            on_finalized: None,
            on_evicted: None,
            sample: None,
            tracking: true,
        }
    }
}

impl EphemeralOptions {
    /// How many bodies run at once (≥ 1). Changeable later with `set_max_concurrency`.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// How many accepted items may wait to start (≥ 1); `enqueue` waits for room beyond it.
    ///
    /// Items a defer rule holds and items an [`Admission`](super::Admission) hook's
    /// [`Defer`](super::Decision::Defer) puts aside wait to start too, and count. With
    /// admission hooks, an item keeps its room until they decide, so the ones put aside
    /// never let more in.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// How many *finished* operations the window keeps (≥ 1), pins included.
    pub fn max_tracked(mut self, n: usize) -> Self {
        self.max_tracked = n;
        self
    }

    /// How long a finished operation stays in the window, measured from its finish.
    ///
    /// Exact for every view: a snapshot, a lookup or a count never shows an operation past
    /// its lifetime. With [`on_evicted`](Self::on_evicted) set, an operation is evicted (its
    /// echo left, the callback called) when its lifetime runs out, also while nothing
    /// touches the coordinator and after it is done or cancelled, as long as a handle lives
    /// (operations due back to back are swept at most a hundred times a second). Without it, the eviction happens when the
    /// coordinator is next touched (an enqueue, a finish, a view, its stats): an idle
    /// coordinator keeps at most `max_tracked` operations past their lifetime until then,
    /// which no view shows.
    pub fn max_lifetime(mut self, age: Duration) -> Self {
        self.max_lifetime = age;
        self
    }

    /// Keyed coordinators: how many items of one key run at once (≥ 1, default 1).
    pub fn per_key_concurrency(mut self, n: usize) -> Self {
        self.per_key_concurrency = n;
        self
    }

    /// Keyed coordinators: a key with more pending items than this is *hot*; keys at or
    /// under it (*cold*) start first (≥ 1).
    pub fn fairness_threshold(mut self, n: usize) -> Self {
        self.fairness_threshold = n;
        self
    }

    /// The sink this coordinator reads and its operations raise into (default: a private one).
    pub fn signals(mut self, sink: SignalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Items reaching admission while a signal matches `pattern` end `Cancelled`.
    pub fn cancel_on(mut self, pattern: &str) -> Self {
        self.cancel_on = Some(Pattern::new(pattern));
        self
    }

    /// Running bodies are cancelled (through their token) when a signal matching `pattern`
    /// is raised: those that started before the raise, once per matching signal. A body
    /// that starts after it is not cancelled by it, even before the coordinator looked at
    /// the signal (items reaching admission while a signal matches are `cancel_on`'s job).
    pub fn cancel_running_on(mut self, pattern: &str) -> Self {
        self.cancel_running_on = Some(Pattern::new(pattern));
        self
    }

    /// Items wait (without holding a slot) while a signal matches `pattern`.
    pub fn defer_on(mut self, pattern: &str) -> Self {
        self.defer_on = Some(Pattern::new(pattern));
        self
    }

    /// A signal matching `pattern` raised after the latest defer match ends the deferral.
    /// It ends this [`defer_on`](Self::defer_on)'s deferral only: without one it does
    /// nothing (a priority lane's deferral ends by that lane's own
    /// [`Lane::resume_on`](crate::Lane::resume_on)).
    pub fn resume_on(mut self, pattern: &str) -> Self {
        self.resume_on = Some(Pattern::new(pattern));
        self
    }

    /// The pattern given to [`defer_on`](Self::defer_on), if any.
    #[must_use]
    pub fn defer_on_setting(&self) -> Option<&str> {
        self.defer_on.as_ref().map(Pattern::as_str)
    }

    /// The pattern given to [`resume_on`](Self::resume_on), if any.
    #[must_use]
    pub fn resume_on_setting(&self) -> Option<&str> {
        self.resume_on.as_ref().map(Pattern::as_str)
    }

    /// Each new signal matching `pattern` clears the sink once. The `sink.cleared` a clear
    /// raises never clears again, even when `pattern` matches it (`*`, `sink.*`).
    pub fn clear_on(mut self, pattern: &str) -> Self {
        self.clear_on = Some(Pattern::new(pattern));
        self
    }

    /// Which of `coordinator.drain.all`, `.id` and `.pattern` drain this coordinator: a
    /// [`DrainSignals`] to choose one by one, or `true` / `false` for all or none (default
    /// all).
    pub fn drain_signals(mut self, which: impl Into<DrainSignals>) -> Self {
        self.drain_signals = which.into();
        self
    }

    /// How long an item may be held back in total before `policy` applies: the time it
    /// spends held by `defer_on`, by its lane's defer rule or by an admission hook's
    /// [`Defer`](super::Decision::Defer), summed over every deferral (a new deferral does
    /// not restart the clock), counted per item from when that item was first held back.
    /// Waiting for a free slot or while paused does not count.
    ///
    /// "Held back" is dated by the signals, not by when the coordinator next looks (which,
    /// under a clock that jumps, such as tokio's `advance`, can be much later): an item
    /// accepted while `defer_on` (or its lane's `defer_on`) holds is held from its
    /// acceptance, and items already waiting when a defer signal is raised are held from
    /// that raise. A deferral that comes back because a newer resume signal expired or was
    /// retracted counts from when the coordinator sees it (never earlier than it could have
    /// begun).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral::{
    ///     CancelReason, DeferPolicy, EphemeralOptions, EphemeralWorkCoordinator,
    ///     OperationContext, OperationState, SignalSink,
    /// };
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sink = SignalSink::default();
    /// let coordinator = EphemeralWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default()
    ///         .signals(sink.clone())
    ///         .defer_on("maintenance")
    ///         .max_defer(Duration::from_secs(60), DeferPolicy::Cancel),
    /// )?;
    /// let _window = sink.hold("maintenance")?;
    /// let early = coordinator.enqueue(1).await?;
    /// tokio::time::sleep(Duration::from_secs(30)).await;
    /// let late = coordinator.enqueue(2).await?;
    /// tokio::time::sleep(Duration::from_secs(31)).await;
    /// // Each item has its own minute.
    /// let state = |id| coordinator.operation(id).unwrap().state;
    /// assert_eq!(state(early), OperationState::Cancelled(CancelReason::DeferTimeout));
    /// assert_eq!(state(late), OperationState::Deferred);
    /// # Ok(())
    /// # }
    /// ```
    pub fn max_defer(mut self, max: Duration, policy: DeferPolicy) -> Self {
        self.max_defer = Some(max);
        self.defer_policy = policy;
        self
    }

    /// The [`max_defer`](Self::max_defer) set, with its policy; `None` when an item may wait
    /// for its deferral however long (the default). For code that builds on a caller's
    /// options and must know what a deferral it asks for can turn into.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral::{DeferPolicy, EphemeralOptions};
    ///
    /// assert_eq!(EphemeralOptions::default().max_defer_setting(), None);
    /// let options = EphemeralOptions::default().max_defer(Duration::from_secs(60), DeferPolicy::Cancel);
    /// assert_eq!(
    ///     options.max_defer_setting(),
    ///     Some((Duration::from_secs(60), DeferPolicy::Cancel))
    /// );
    /// ```
    #[must_use]
    pub fn max_defer_setting(&self) -> Option<(Duration, DeferPolicy)> {
        self.max_defer.map(|max| (max, self.defer_policy))
    }

    /// The `max_pending` these options set (1024 by default), for code that builds a
    /// coordinator from caller's options and must know how many items can wait in it (a
    /// watermark above it could never be passed).
    ///
    /// ```
    /// use ephemeral::EphemeralOptions;
    ///
    /// assert_eq!(EphemeralOptions::default().max_pending_setting(), 1024);
    /// assert_eq!(EphemeralOptions::default().max_pending(8).max_pending_setting(), 8);
    /// ```
    #[must_use]
    pub fn max_pending_setting(&self) -> usize {
        self.max_pending
    }

    /// The coordinator id that `coordinator.drain.id` / `.pattern` signals address.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(Arc::from(id));
        self
    }

    /// A name for tracing spans and metrics (default `coordinator`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Echoes: whether evicted operations leave an [`Echo`](super::Echo) (id, key, terminal
    /// state, error, finish time and signals), for how long after the eviction, and how many
    /// echoes are kept (default on, 1 min, 256; the oldest goes first).
    pub fn echo(mut self, on: bool, retention: Duration, capacity: usize) -> Self {
        self.echo = on;
        self.echo_retention = retention;
        self.echo_capacity = capacity;
        self
    }

    /// How long a cancelled body that ignores its token may run before it is dropped and
    /// recorded as aborted (default 5 s).
    pub fn abort_grace(mut self, grace: Duration) -> Self {
        self.abort_grace = grace;
        self
    }

    /// Called with the snapshot of every operation when it finishes, outside every lock.
    pub fn on_finalized(mut self, f: impl Fn(&OperationSnapshot) + Send + Sync + 'static) -> Self {
        self.on_finalized = Some(Arc::new(f));
        self
    }

    /// Called with the snapshot of every operation when it leaves the window, outside every
    /// lock: evicted by count (`max_tracked`), by age (`max_lifetime`) or by an explicit
    /// `evict`. Exactly once per operation that leaves; never for a pending, running or
    /// pinned one (those are never evicted). The snapshot carries the live signals the
    /// operation raised, as its [`Echo`](super::Echo) does. Operations still in the window
    /// when the last handle goes are not reported. With [`tracking`](Self::tracking) off an
    /// operation leaves the window as it finishes, so each is reported right after its
    /// `on_finalized`. An operation evicted by age is reported when its lifetime runs out,
    /// whether or not anything touches the coordinator (see
    /// [`max_lifetime`](Self::max_lifetime)).
    ///
    /// [`on_finalized`](Self::on_finalized) still fires once, at the finish. The two may run
    /// on different threads, so when an operation is evicted the moment it finishes (a full
    /// window on a multi-threaded runtime), `on_evicted` can run before its `on_finalized`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let archived = Arc::new(Mutex::new(Vec::new()));
    /// let archive = archived.clone();
    /// let coordinator = EphemeralWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default()
    ///         .max_concurrency(1)
    ///         .max_tracked(2)
    ///         .on_evicted(move |op| archive.lock().unwrap().push(op.id)),
    /// )?;
    /// let ids = coordinator.enqueue_many(0..5).await?;
    /// coordinator.drain().await?;
    /// // The window keeps the last two; the first three were archived as they left.
    /// assert_eq!(*archived.lock().unwrap(), ids[..3]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_evicted(mut self, f: impl Fn(&OperationSnapshot) + Send + Sync + 'static) -> Self {
        self.on_evicted = Some(Arc::new(f));
        self
    }

    /// Called with a finished operation at most once per `every`, outside every lock: a
    /// cheap way to log or trace a busy coordinator. A throttle with both edges: the first
    /// operation to finish after a quiet interval is delivered at once (leading edge); if
    /// more finish within the interval, the latest of them is delivered when it ends
    /// (trailing edge, from a timer task), which starts the next interval. So a burst is
    /// reported by its first and its last operation, and the state at the end of a busy
    /// spell is never left out. The leading call runs after
    /// [`on_finalized`](Self::on_finalized) when both are set.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sampled = Arc::new(Mutex::new(Vec::new()));
    /// let log = sampled.clone();
    /// let coordinator = EphemeralWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default()
    ///         .max_concurrency(1)
    ///         .sample(Duration::from_secs(1), move |op| log.lock().unwrap().push(op.id)),
    /// )?;
    /// let ids = coordinator.enqueue_many(0..100).await?;
    /// coordinator.drain().await?;
    /// tokio::time::sleep(Duration::from_secs(2)).await;
    /// // All 100 finished in one tick: the first was sampled at once, the last one second
    /// // later.
    /// assert_eq!(*sampled.lock().unwrap(), [ids[0], ids[99]]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample(
        mut self,
        every: Duration,
        f: impl Fn(&OperationSnapshot) + Send + Sync + 'static,
    ) -> Self {
        self.sample = Some((every, Arc::new(f)));
        self
    }

    /// Whether finished operations are kept in the window at all (default on). With tracking
    /// off only the counters of [`CoordinatorStats`](super::CoordinatorStats) are kept, and
    /// what is pending or running; an operation pinned (`pin`, an explicit request) stays
    /// until unpinned, as with tracking on. Finished operations leave no
    /// [`Echo`](super::Echo) either (an echo is the trace of a tracked operation leaving the
    /// window): `echoes()` stays empty, while `on_finalized` and `on_evicted` still fire.
    pub fn tracking(mut self, on: bool) -> Self {
        self.tracking = on;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// An [`OptionsError`] naming the first bad option.
    pub fn validate(&self) -> Result<(), OptionsError> {
        for (name, value) in [
            ("max_concurrency", self.max_concurrency),
            ("max_pending", self.max_pending),
            ("max_tracked", self.max_tracked),
            ("per_key_concurrency", self.per_key_concurrency),
            ("fairness_threshold", self.fairness_threshold),
            ("echo capacity", self.echo_capacity),
        ] {
            if value == 0 {
                return Err(OptionsError::Zero(name));
            }
        }
        if self.max_pending > MAX_PENDING {
            return Err(OptionsError::TooLarge {
                option: "max_pending",
                value: self.max_pending,
                max: MAX_PENDING,
            });
        }
        if self.max_lifetime.is_zero() {
            return Err(OptionsError::ZeroDuration("max_lifetime"));
        }
        if self.echo_retention.is_zero() {
            return Err(OptionsError::ZeroDuration("echo retention"));
        }
        if self.max_defer.is_some_and(|d| d.is_zero()) {
            return Err(OptionsError::ZeroDuration("max_defer"));
        }
        if self.name.trim().is_empty() {
            return Err(OptionsError::Blank("name"));
        }
        if self.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(OptionsError::Blank("id"));
        }
        Ok(())
    }
}

impl fmt::Debug for EphemeralOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralOptions")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_pending", &self.max_pending)
            .field("max_tracked", &self.max_tracked)
            .field("max_lifetime", &self.max_lifetime)
            .field("per_key_concurrency", &self.per_key_concurrency)
            .field("fairness_threshold", &self.fairness_threshold)
            .field("cancel_on", &self.cancel_on)
            .field("cancel_running_on", &self.cancel_running_on)
            .field("defer_on", &self.defer_on)
            .field("resume_on", &self.resume_on)
            .field("clear_on", &self.clear_on)
            .field("drain_signals", &self.drain_signals)
            .field("max_defer", &self.max_defer)
            .field("defer_policy", &self.defer_policy)
            .field("abort_grace", &self.abort_grace)
            .field("tracking", &self.tracking)
            .finish_non_exhaustive()
    }
}
