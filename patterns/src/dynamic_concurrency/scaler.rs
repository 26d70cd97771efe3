//! The scaling task.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::Pattern;
use tokio::task::JoinHandle;

use crate::CoordinatorHandle;

/// How one scaling step moves the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Double up, halve down.
    Multiply,
    /// Add or subtract this many (at least 1).
    Add(usize),
}

/// Settings of a [`DynamicConcurrency`].
///
/// Defaults: `load.high` scales up, `load.low` scales down, doubling/halving, 5 s cooldown.
#[derive(Debug, Clone)]
#[must_use]
pub struct DynamicConcurrencyOptions {
    min: usize,
    max: usize,
    up_on: String,
    down_on: String,
    step: Step,
    cooldown: Duration,
}

impl DynamicConcurrencyOptions {
    /// Scales within `min..=max`.
    pub fn new(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            up_on: "load.high".to_owned(),
            down_on: "load.low".to_owned(),
            step: Step::Multiply,
            cooldown: Duration::from_secs(5),
        }
    }

    /// The patterns that scale up and down (defaults `load.high`, `load.low`). A pattern
    /// that can match no signal name (`""`, `" , "`, `"a b"`: see [`Pattern::is_empty`]) is
    /// refused ([`DynamicConcurrencyError::EmptyPattern`]), and so is the same pattern for
    /// both ([`DynamicConcurrencyError::SamePattern`]): while both match, the scaler holds
    /// still, so it would never move. Patterns that merely overlap are not refused, but a
    /// signal both match holds the limit still too: with `load.*` to scale up and
    /// `load.low` down, a live `load.low` never scales down.
    pub fn signals(mut self, up_on: &str, down_on: &str) -> Self {
        self.up_on = up_on.to_owned();
        self.down_on = down_on.to_owned();
        self
    }

    /// How a step moves the limit (default [`Step::Multiply`]).
    pub fn step(mut self, step: Step) -> Self {
        self.step = step;
        self
    }

    /// How long to wait after a change before the next (default 5 s).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }
}

/// Why a [`DynamicConcurrency`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DynamicConcurrencyError {
    /// The bounds were 0 or in the wrong order.
    #[error("concurrency bounds {min}..={max}: use 1 <= min <= max")]
    Bounds {
        /// The minimum.
        min: usize,
        /// The maximum.
        max: usize,
    },
    /// A step of `Add(0)` would never move.
    #[error("a step of Add(0) never changes anything: use at least 1")]
    ZeroStep,
    /// The scale-up or scale-down pattern can match no signal name, so the scaler could
    /// never move that way.
    #[error(
        "the scale-{direction} pattern `{pattern}` matches no signal name, so the limit would never move {direction}: give a pattern such as `load.high` / `load.low` (the defaults)"
    )]
    EmptyPattern {
        /// `up` or `down`.
        direction: &'static str,
        /// The pattern given.
        pattern: String,
    },
    /// The same pattern scales up and down: whenever it matches, both do, and the scaler
    /// holds still, so it would never move.
    #[error(
        "`{0}` is both the scale-up and the scale-down pattern, so the limit would never move: give two patterns, such as `load.high` and `load.low`"
    )]
    SamePattern(String),
    /// Started outside a tokio runtime.
    #[error("dynamic concurrency runs as a tokio task: start it inside a runtime")]
    NoRuntime,
}

/// Moves a coordinator's concurrency limit on load signals; stops when dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, SignalSink};
/// use ephemeral_patterns::dynamic_concurrency::{DynamicConcurrency, DynamicConcurrencyOptions};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let coordinator = EphemeralWorkCoordinator::new(
///     |_: u32, _ctx| async { Ok::<_, std::io::Error>(()) },
///     EphemeralOptions::default().max_concurrency(2).signals(sink.clone()),
/// )?;
/// let scaler = DynamicConcurrency::start(
///     &coordinator,
///     DynamicConcurrencyOptions::new(1, 16).cooldown(Duration::from_secs(1)),
/// )?;
/// let _load = sink.hold("load.high")?;
/// tokio::time::sleep(Duration::from_secs(10)).await;
/// assert_eq!(coordinator.max_concurrency(), 16); // 2 → 4 → 8 → 16, then it stops
/// # drop(scaler);
/// # Ok(())
/// # }
/// ```
#[must_use = "the scaler stops as soon as it is dropped"]
pub struct DynamicConcurrency {
    task: JoinHandle<()>,
    changes: Arc<AtomicU64>,
}

impl DynamicConcurrency {
    /// Starts scaling `coordinator`, reading the signals on its sink.
    ///
    /// # Errors
    ///
    /// [`DynamicConcurrencyError`] for bad bounds or step, a pattern that can match no signal
    /// name or the same pattern both ways, or outside a tokio runtime.
    pub fn start<C: CoordinatorHandle>(
        coordinator: &C,
        options: DynamicConcurrencyOptions,
    ) -> Result<Self, DynamicConcurrencyError> {
        if options.min == 0 || options.min > options.max {
            return Err(DynamicConcurrencyError::Bounds {
                min: options.min,
                max: options.max,
            });
        }
        if options.step == Step::Add(0) {
            return Err(DynamicConcurrencyError::ZeroStep);
        }
        for (direction, pattern) in [("up", &options.up_on), ("down", &options.down_on)] {
            if Pattern::new(pattern).is_empty() {
                return Err(DynamicConcurrencyError::EmptyPattern {
                    direction,
                    pattern: pattern.clone(),
                });
            }
        }
        if options.up_on == options.down_on {
            return Err(DynamicConcurrencyError::SamePattern(options.up_on));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| DynamicConcurrencyError::NoRuntime)?;
        let changes = Arc::new(AtomicU64::new(0));
        let task = runtime.spawn(scale(coordinator.clone(), options, changes.clone()));
        Ok(Self { task, changes })
    }

    /// How many times the limit was changed.
    #[must_use]
    pub fn changes(&self) -> u64 {
        // Relaxed: a plain counter.
        self.changes.load(Ordering::Relaxed)
    }

    /// Whether it still scales: false once stopped, or once the coordinator is done (its
    /// task then ends at once and lets go of the coordinator).
    #[must_use]
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops scaling (the limit stays where it is).
    pub fn stop(self) {
        drop(self);
    }
}

async fn scale<C: CoordinatorHandle>(
    coordinator: C,
    options: DynamicConcurrencyOptions,
    changes: Arc<AtomicU64>,
) {
    let sink = coordinator.sink().clone();
    // Created before the first check, so that a change between the check and the wait is
    // not missed.
    let mut watch = sink.watch(&format!("{},{}", options.up_on, options.down_on));
    // Ends the scaling as soon as the coordinator is done, not at the next signal change
    // (which may never come, while the task holds a handle of the coordinator).
    let done = coordinator.done();
    tokio::pin!(done);
    loop {
        if coordinator.is_done() {
            return;
        }
        let up = sink.has_signal(&options.up_on);
        let down = sink.has_signal(&options.down_on);
        let current = coordinator.max_concurrency();
        let target = match (up, down) {
            // Up never lowers and down never raises, even from outside the bounds.
            (true, false) => match options.step {
                Step::Multiply => current.saturating_mul(2),
                Step::Add(n) => current.saturating_add(n),
            }
            .min(options.max)
            .max(current),
            (false, true) => match options.step {
                Step::Multiply => current / 2,
                Step::Add(n) => current.saturating_sub(n),
            }
            .max(options.min)
            .min(current),
            // Neither, or both at once (contradictory): hold still.
            _ => current,
        };
        if target != current && coordinator.set_max_concurrency(target).is_ok() {
            // Relaxed: a plain counter.
            changes.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = &mut done => return,
                () = tokio::time::sleep(options.cooldown) => {}
            }
            continue;
        }
        tokio::select! {
            () = &mut done => return,
            () = watch.changed() => {}
        }
    }
}

impl Drop for DynamicConcurrency {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for DynamicConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicConcurrency")
            .field("changes", &self.changes())
            .field("running", &self.is_running())
            .finish()
    }
}
