//! Reactive fan-out: a two-stage pipeline where stage 2's backlog throttles stage 1, and
//! recovery restores it.
//!
//! Use it when a first stage turns each input into several pieces of slower work (a crawler
//! fetching pages and handing out links, an importer splitting files into rows) and the
//! second stage's backlog must stay bounded without dropping anything. Stage 1 runs
//! `first(input) -> Vec<output>` and enqueues every output into stage 2. A
//! [`Backpressure`] reporter throttles stage 1 from the moment more than `high` outputs wait
//! in stage 2 until fewer than `low` wait: stage 1's admission hook
//! ([`Backpressure::throttle`]) defers its next inputs (holding no slot) for that span, and
//! they start the moment it ends — no polling, no timer. Over the same span the reporter holds
//! `backpressure.<name>` on the sink, for whoever watches (a dashboard, another coordinator's
//! `defer_on`). The throttle does not depend on that signal: if the sink refuses the hold
//! (its `max_holds` reached), stage 1 is throttled all the same, the refusal is kept in
//! [`Backpressure::last_sink_error`], and the hold is asked for again on every report.
//!
//! Stage 2's backlog can overshoot `high` by at most what the stage-1 bodies already running
//! produce (each finishes handing its outputs over; a stage-1 body waits for room when stage 2's
//! own `max_pending` is full). An output stage 2 refuses (it was closed) fails the stage-1
//! operation with a message saying how many outputs were refused.
//!
//! That bound holds unless stage 1's options set a `max_defer` with `DeferPolicy::Run`: an
//! input held back by the throttle that long then starts anyway (core's rule for `Run`), and
//! the backlog grows past `high` up to stage 2's `max_pending` (with `high` 8, `low` 3 and a
//! stalled stage 2 of `max_pending` 40, it reached 38). Nothing is lost either way; use
//! `DeferPolicy::Cancel` (an input held that long ends `Cancelled(DeferTimeout)`) where the
//! bound matters.
//!
//! Cancelling a stage-1 operation (`cancel_operation`, a `cancel_running_on` signal, or
//! cancelling or dropping stage 1) is the one way outputs are left out. Its hand-over stops at
//! once, even while it waits for room in stage 2: the outputs not handed over yet are dropped
//! and added to [`ReactiveFanout::outputs_abandoned`], and the operation ends `Cancelled` (a
//! cancelled operation keeps no error message, hence the counter). Outputs already handed over
//! stay in stage 2. A `first` body that ignores its cancellation is dropped after stage 1's
//! `abort_grace`, as any body is, before it has any outputs to hand over.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ephemeral::{EphemeralOptions, OperationContext, SignalSink};
//! use ephemeral_patterns::reactive_fanout::{ReactiveFanout, ReactiveFanoutOptions};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SignalSink::default();
//! let pipeline = ReactiveFanout::new(
//!     &sink,
//!     |page: u32, _ctx: OperationContext| async move {
//!         Ok::<_, String>((0..5).map(|link| page * 100 + link).collect::<Vec<_>>())
//!     },
//!     |_link: u32, _ctx: OperationContext| async move {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         Ok::<_, String>(())
//!     },
//!     ReactiveFanoutOptions::new("links", 20, 5),
//! )?;
//! for page in 0..20 {
//!     pipeline.enqueue(page).await?;
//! }
//! pipeline.drain().await?;
//! assert_eq!(pipeline.second().stats().completed, 100);
//! assert!(pipeline.times_throttled() >= 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::{self, Either};

use ephemeral::{
    CoordinatorError, EnqueueError, EphemeralOptions, EphemeralWorkCoordinator, IntakeError,
    OperationContext, OperationId, SignalSink,
};

use crate::backpressure::{Backpressure, BackpressureError, BackpressureMonitor};

/// How a [`ReactiveFanout`] is set up.
#[derive(Debug, Clone)]
pub struct ReactiveFanoutOptions {
    name: String,
    high: usize,
    low: usize,
    first: EphemeralOptions,
    second: EphemeralOptions,
}

impl ReactiveFanoutOptions {
    /// Throttles stage 1 on `backpressure.<name>` while more than `high` outputs wait in
    /// stage 2, until fewer than `low` wait. Both stages start with default options; `high`
    /// must be below stage 2's `max_pending` (1024 by default), or stage 2 could never hold
    /// more than `high`.
    #[must_use]
    pub fn new(name: &str, high: usize, low: usize) -> Self {
        Self {
            name: name.to_owned(),
            high,
            low,
            first: EphemeralOptions::default(),
            second: EphemeralOptions::default(),
        }
    }

    /// Stage 1's options. Its sink is set by the pipeline (the sink given to
    /// [`ReactiveFanout::new`]); the throttle is an admission hook, so a `defer_on` of its
    /// own is kept.
    /// A `max_defer` here bounds how long the throttle holds an input; under
    /// `DeferPolicy::Run` the input then starts while stage 1 is throttled (see the [module
    /// docs](self) for what that does to the backlog).
    #[must_use]
    pub fn first(mut self, options: EphemeralOptions) -> Self {
        self.first = options;
        self
    }

    /// Stage 2's options. Its sink is set by the pipeline.
    #[must_use]
    pub fn second(mut self, options: EphemeralOptions) -> Self {
        self.second = options;
        self
    }
}

/// Why a [`ReactiveFanout`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactiveFanoutError {
    /// The name or the watermarks were rejected.
    #[error("reactive fan-out backpressure: {0}")]
    Backpressure(#[from] BackpressureError),
    /// A stage's coordinator could not be built.
    #[error("reactive fan-out stage: {0}")]
    Coordinator(#[from] CoordinatorError),
    /// The high watermark is not below stage 2's `max_pending`: at most `max_pending`
    /// outputs can wait in stage 2, so more than `high` never would, and stage 1 would never
    /// be throttled (its bodies would only wait for room, holding their slots).
    #[error(
        "high watermark {high} is not below stage 2's max_pending of {max_pending}, so stage 1 would never be throttled: lower the high watermark or raise stage 2's max_pending"
    )]
    HighWatermarkUnreachable {
        /// The high watermark.
        high: usize,
        /// Stage 2's `max_pending`.
        max_pending: usize,
    },
}

/// A two-stage pipeline whose second stage throttles the first; see the [module docs](self).
#[must_use = "dropping the last handle cancels both stages"]
pub struct ReactiveFanout<A: Send + 'static, B: Send + 'static> {
    first: EphemeralWorkCoordinator<A>,
    second: EphemeralWorkCoordinator<B>,
    pressure: Backpressure,
    monitor: Arc<BackpressureMonitor>,
    /// Outputs dropped by cancelled hand-overs; relaxed: a tally read as a snapshot.
    abandoned: Arc<AtomicU64>,
}

impl<A: Send + 'static, B: Send + 'static> Clone for ReactiveFanout<A, B> {
    fn clone(&self) -> Self {
        Self {
            first: self.first.clone(),
            second: self.second.clone(),
            pressure: self.pressure.clone(),
            monitor: self.monitor.clone(),
            abandoned: self.abandoned.clone(),
        }
    }
}

impl<A: Send + 'static, B: Send + 'static> fmt::Debug for ReactiveFanout<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReactiveFanout")
            .field("pressure", &self.pressure)
            .field("first_pending", &self.first.pending_count())
            .field("second_pending", &self.second.pending_count())
            .finish_non_exhaustive()
    }
}

impl<A: Send + 'static, B: Send + 'static> ReactiveFanout<A, B> {
    /// A pipeline on `sink`: stage 1 runs `first` on each input and hands every output to
    /// stage 2, which runs `second` on it.
    ///
    /// # Errors
    ///
    /// [`ReactiveFanoutError`] for a bad name or watermarks (`low` 0 or above `high`), a high
    /// watermark stage 2 can never pass (not below its `max_pending`,
    /// [`ReactiveFanoutError::HighWatermarkUnreachable`]), a bad stage option, or outside a
    /// tokio runtime.
    pub fn new<F1, Fut1, E1, F2, Fut2, E2>(
        sink: &SignalSink,
        first: F1,
        second: F2,
        options: ReactiveFanoutOptions,
    ) -> Result<Self, ReactiveFanoutError>
    where
        F1: Fn(A, OperationContext) -> Fut1 + Send + Sync + 'static,
        Fut1: Future<Output = Result<Vec<B>, E1>> + Send + 'static,
        E1: fmt::Display + Send + Sync + 'static,
        F2: Fn(B, OperationContext) -> Fut2 + Send + Sync + 'static,
        Fut2: Future<Output = Result<(), E2>> + Send + 'static,
        E2: fmt::Display + Send + Sync + 'static,
    {
        let pressure = Backpressure::new(sink, &options.name, options.high, options.low)?;
        let max_pending = options.second.max_pending_setting();
        if options.high >= max_pending {
            return Err(ReactiveFanoutError::HighWatermarkUnreachable {
                high: options.high,
                max_pending,
            });
        }
        let second_stage = EphemeralWorkCoordinator::with_admission(
            second,
            options.second.signals(sink.clone()),
            vec![pressure.admission()],
        )?;
        let monitor = Arc::new(pressure.monitor(&second_stage)?);
        let first = Arc::new(first);
        let abandoned = Arc::new(AtomicU64::new(0));
        let (downstream, reporter, dropped) =
            (second_stage.clone(), pressure.clone(), abandoned.clone());
        let first_stage = EphemeralWorkCoordinator::with_admission(
            move |input: A, ctx: OperationContext| {
                let (first, downstream, reporter, dropped) = (
                    first.clone(),
                    downstream.clone(),
                    reporter.clone(),
                    dropped.clone(),
                );
                // Taken before the body gets the context: the hand-over watches it.
                let cancelled = ctx.cancelled();
                async move {
                    let outputs = first(input, ctx).await.map_err(|e| e.to_string())?;
                    hand_over(outputs, &downstream, &reporter, cancelled, &dropped).await
                }
            },
            options.first.signals(sink.clone()),
            vec![pressure.throttle()],
        )?;
        Ok(Self {
            first: first_stage,
            second: second_stage,
            pressure,
            monitor,
            abandoned,
        })
    }

    /// Accepts an input into stage 1, waiting while its `max_pending` inputs wait.
    ///
    /// # Errors
    ///
    /// As [`EphemeralWorkCoordinator::enqueue`], with the input.
    pub async fn enqueue(&self, input: A) -> Result<OperationId, EnqueueError<A>> {
        self.first.enqueue(input).await
    }

    /// Accepts an input into stage 1 if there is room now.
    ///
    /// # Errors
    ///
    /// As [`EphemeralWorkCoordinator::try_enqueue`], with the input.
    pub fn try_enqueue(&self, input: A) -> Result<OperationId, EnqueueError<A>> {
        self.first.try_enqueue(input)
    }

    /// Stops intake, waits for stage 1 to hand over everything, then for stage 2 to finish.
    ///
    /// # Errors
    ///
    /// As [`EphemeralWorkCoordinator::drain`].
    pub async fn drain(&self) -> Result<(), IntakeError> {
        self.first.drain().await?;
        self.second.drain().await
    }

    /// Whether stage 1 is throttled now: its new inputs wait for stage 2's backlog to fall
    /// below the low watermark (`backpressure.<name>` is held too, unless the sink refused it).
    #[must_use]
    pub fn is_throttled(&self) -> bool {
        self.pressure.is_held()
    }

    /// How many times stage 1 has been throttled.
    #[must_use]
    pub fn times_throttled(&self) -> u64 {
        self.pressure.times_held()
    }

    /// How many stage-1 outputs were dropped because their operation was cancelled before
    /// handing them over (see the [module docs](self)); never more than the outputs of the
    /// cancelled operations.
    #[must_use]
    pub fn outputs_abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// The backpressure reporter between the stages.
    pub fn pressure(&self) -> &Backpressure {
        &self.pressure
    }

    /// Stage 1's coordinator.
    pub fn first(&self) -> &EphemeralWorkCoordinator<A> {
        &self.first
    }

    /// Stage 2's coordinator.
    pub fn second(&self) -> &EphemeralWorkCoordinator<B> {
        &self.second
    }
}

/// Enqueues a stage-1 operation's outputs into stage 2 in order, reporting the backlog after
/// each, until done or until the operation is cancelled.
async fn hand_over<B: Send + 'static>(
    outputs: Vec<B>,
    downstream: &EphemeralWorkCoordinator<B>,
    reporter: &Backpressure,
    cancelled: impl Future<Output = ()>,
    abandoned: &AtomicU64,
) -> Result<(), String> {
    let total = outputs.len();
    let mut cancelled = pin!(cancelled);
    let mut refused = 0usize;
    let mut reason = String::new();
    let mut outputs = outputs.into_iter();
    while let Some(output) = outputs.next() {
        let enqueue = pin!(downstream.enqueue(output));
        // `select` polls the cancellation first, so a cancelled operation hands over nothing
        // more, even when stage 2 has room.
        match future::select(cancelled.as_mut(), enqueue).await {
            Either::Left(((), _)) => {
                // This output (dropped with its enqueue) and the ones after it.
                let left = 1 + outputs.len();
                abandoned.fetch_add(left as u64, Ordering::Relaxed);
                // The coordinator ends a cancelled operation `Cancelled` and keeps no error:
                // the message is for the record only; the counter is what callers can read.
                return Err(format!(
                    "cancelled: {left} of {total} outputs not handed over to stage 2"
                ));
            }
            Either::Right((Ok(_), _)) => {
                reporter.report(downstream);
            }
            Either::Right((Err(e), _)) => {
                refused += 1;
                reason = e.to_string();
            }
        }
    }
    if refused > 0 {
        return Err(format!(
            "stage 2 refused {refused} of {total} outputs: {reason}"
        ));
    }
    Ok(())
}
