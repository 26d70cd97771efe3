//! What a coordinator reports: operation states, snapshots, echoes and stats.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::operation_error::OperationError;
use crate::{Name, OperationId, Signal};

/// Why an operation ended cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum CancelReason {
    /// A live signal matched a cancel pattern (the signal's name).
    Signal(Name),
    /// The coordinator was cancelled or dropped.
    Shutdown,
    /// `cancel_operation` was called.
    Explicit,
    /// The body ignored its cancelled token for the whole grace period and was dropped.
    Aborted,
    /// An [`Admission`](super::Admission) hook refused it, with the hook's reason.
    Admission(Arc<str>),
    /// It stayed deferred longer than `max_defer` under [`DeferPolicy::Cancel`](super::DeferPolicy).
    DeferTimeout,
    /// Its caller dropped the `ResponseFuture` of a `tower` call (feature `tower`) before
    /// it finished (a `timeout` outside the layer, say): nobody could get its result.
    Abandoned,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signal(name) => write!(f, "signal {name}"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::Explicit => f.write_str("cancelled explicitly"),
            Self::Aborted => f.write_str("aborted after the grace period"),
            Self::Admission(reason) => write!(f, "refused by admission: {reason}"),
            Self::DeferTimeout => f.write_str("deferred longer than max_defer"),
            Self::Abandoned => f.write_str("its caller dropped the response"),
        }
    }
}

/// Where an operation is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum OperationState {
    /// Accepted, not started.
    Pending,
    /// Accepted, not started, and held back now by a defer rule (`defer_on`, or its lane's
    /// `defer_on`) or put aside by an admission hook's [`Defer`](super::Decision::Defer).
    /// Only snapshots show it; in [`CoordinatorStats`] deferred items count as pending.
    Deferred,
    /// Its body is running.
    Running,
    /// The body returned `Ok` (also after its token was cancelled: it finished its work).
    Completed,
    /// The body returned an error or panicked (the message is in the snapshot).
    Failed,
    /// Cancelled, with the reason: before it started, or while it ran (its token cancelled
    /// by an explicit cancel of it or of its coordinator, a shutdown or `cancel_running_on`)
    /// and then returned an error (an error after a cancel is taken as the body stopping on
    /// it; its text is not kept) or was dropped after the grace period
    /// ([`CancelReason::Aborted`]).
    Cancelled(CancelReason),
}

impl OperationState {
    /// Whether this is a terminal state (completed, failed or cancelled).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        !matches!(self, Self::Pending | Self::Deferred | Self::Running)
    }
}

/// A copy of one tracked operation.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OperationSnapshot {
    /// The operation id.
    pub id: OperationId,
    /// The key rendered through `Display` (keyed coordinators) or the lane (priority).
    pub key: Option<Arc<str>>,
    /// The state.
    pub state: OperationState,
    /// When it was accepted.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "enqueued_ms_ago",
            serialize_with = "crate::serde_ms::age::serialize"
        )
    )]
    pub enqueued: Instant,
    /// When its body started.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "started_ms_ago",
            serialize_with = "crate::serde_ms::option_age::serialize"
        )
    )]
    pub started: Option<Instant>,
    /// When it finished.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "finished_ms_ago",
            serialize_with = "crate::serde_ms::option_age::serialize"
        )
    )]
    pub finished: Option<Instant>,
    /// The body's error (its value, and its `Display` text through `Deref<Target = str>`)
    /// or the panic message.
    pub error: Option<OperationError>,
    /// Whether the failure was a panic.
    pub panicked: bool,
    /// Whether it is pinned (exempt from eviction).
    pub pinned: bool,
    /// The live signals it raised: filled by `operation(id)` and in the snapshots handed to
    /// `on_evicted`; empty in the list views (`snapshot()`, `completed()`, ...), which stay
    /// cheap.
    pub signals: Vec<Signal>,
}

impl OperationSnapshot {
    /// Run time: start to finish, or start to now while running.
    #[must_use]
    pub fn duration(&self) -> Option<Duration> {
        let started = self.started?;
        Some(
            self.finished
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(started),
        )
    }
}

/// What an evicted operation left behind: its id, key, terminal state, error and finish
/// time, and a copy of the signals it raised.
///
/// Every operation evicted from the window (by count, by age or by
/// [`evict`](crate::EphemeralWorkCoordinator::evict)) leaves one, whether or not it raised
/// signals. Echoes have their own bounds, set with
/// [`EphemeralOptions::echo`](super::EphemeralOptions::echo): at most `capacity` of them
/// (oldest dropped first), each for `retention` after the eviction. With
/// [`tracking`](super::EphemeralOptions::tracking) off, no echoes are kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Echo {
    /// The evicted operation.
    pub id: OperationId,
    /// Its rendered key.
    pub key: Option<Arc<str>>,
    /// Its terminal state.
    pub state: OperationState,
    /// Its error (value and text) or panic message, if it failed.
    pub error: Option<OperationError>,
    /// When it finished.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "finished_ms_ago",
            serialize_with = "crate::serde_ms::age::serialize"
        )
    )]
    pub finished: Instant,
    /// The signals it raised that were still live when it was evicted (empty for an
    /// operation that raised none).
    pub signals: Vec<Signal>,
    /// When the echo disappears.
    #[cfg_attr(
        feature = "serde",
        serde(
            rename = "expires_in_ms",
            serialize_with = "crate::serde_ms::remaining::serialize"
        )
    )]
    pub expires: Instant,
}

/// One consistent snapshot of a coordinator's counters, taken under one lock.
///
/// They always add up: `accepted == pending + running + completed + failed + cancelled`
/// (totals since creation, evicted operations included), and `accepted == tracked +
/// evicted` (every accepted operation is in the window, pending, running or finished, or
/// has left it; with [`tracking`](super::EphemeralOptions::tracking) off a finished one
/// leaves at once, so it counts in `evicted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CoordinatorStats {
    /// Items accepted since creation.
    pub accepted: u64,
    /// Accepted, not started (deferred included).
    pub pending: u64,
    /// Taken by a worker and not finished (admission checks included).
    pub running: u64,
    /// Ended `Completed`.
    pub completed: u64,
    /// Ended `Failed` (errors and panics).
    pub failed: u64,
    /// Ended `Cancelled`.
    pub cancelled: u64,
    /// Of the failures, how many were panics.
    pub panicked: u64,
    /// Finished operations evicted from the window.
    pub evicted: u64,
    /// Operations in the window now.
    pub tracked: u64,
    /// Pinned operations now.
    pub pinned: u64,
    /// Echoes kept now.
    pub echoes: u64,
    /// The concurrency limit now.
    pub max_concurrency: u64,
    /// The highest `running` seen.
    pub peak_running: u64,
}

/// What a keyed coordinator reports about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyStats {
    /// Items of this key waiting to start.
    pub pending: usize,
    /// Items of this key running.
    pub running: usize,
}
