//! Errors of the coordinators.

use std::fmt;
use std::sync::Arc;

use crate::OperationId;

use super::options::OptionsError;

/// Why an item was not accepted. Always gives the item back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError<T> {
    /// The coordinator was completed, drained or cancelled — by `complete()`, `drain()` or
    /// `cancel()`, by a drain signal, or because the runtime its workers ran on shut down:
    /// no item is accepted any more.
    #[error(
        "the coordinator no longer accepts items: it was completed, drained or cancelled (by a call, a drain signal, or the shutdown of its runtime); make a new coordinator for more work"
    )]
    Closed(T),
    /// `try_enqueue` found `max_pending` items already waiting.
    #[error(
        "the coordinator already has max_pending items waiting: retry later, or use enqueue().await to wait for room"
    )]
    Full(T),
    /// A priority lane refused the item.
    #[error("lane `{lane}` refused the item: {reason}")]
    Refused {
        /// The item.
        item: T,
        /// The lane.
        lane: Arc<str>,
        /// Why (for example its max depth).
        reason: Arc<str>,
    },
}

impl<T> EnqueueError<T> {
    /// The item that was not accepted.
    pub fn into_inner(self) -> T {
        match self {
            Self::Closed(item) | Self::Full(item) | Self::Refused { item, .. } => item,
        }
    }

    /// The same reason with the item changed by `f` (for example, paired with its key).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> EnqueueError<U> {
        match self {
            Self::Closed(item) => EnqueueError::Closed(f(item)),
            Self::Full(item) => EnqueueError::Full(f(item)),
            Self::Refused { item, lane, reason } => EnqueueError::Refused {
                item: f(item),
                lane,
                reason,
            },
        }
    }
}

impl<T> fmt::Debug for EnqueueError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Refused { lane, reason, .. } => f
                .debug_struct("Refused")
                .field("lane", lane)
                .field("reason", reason)
                .finish_non_exhaustive(),
        }
    }
}

/// Why `enqueue_many` stopped: the ids of the items it accepted, and every item it did not
/// accept, in the order given (the refused one first), with the reason.
///
/// Items are accepted one by one in order, so the first `accepted.len()` items were accepted
/// and [`into_inner`](Self::into_inner) returns exactly the others: none is lost.
#[derive(thiserror::Error)]
#[error("{} of the items were accepted, the rest were given back: {refused}", .accepted.len())]
#[non_exhaustive]
pub struct EnqueueManyError<T> {
    /// The ids of the items accepted before the refusal, in order.
    pub accepted: Vec<OperationId>,
    /// Why the rest was refused, carrying every item not accepted, in order.
    pub refused: EnqueueError<Vec<T>>,
}

impl<T> EnqueueManyError<T> {
    /// Every item that was not accepted, in the order given.
    pub fn into_inner(self) -> Vec<T> {
        self.refused.into_inner()
    }

    /// Builds the error from the refusal of one item and the items after it.
    pub(crate) fn new(
        accepted: Vec<OperationId>,
        refused: EnqueueError<T>,
        rest: impl Iterator<Item = T>,
    ) -> Self {
        let refused = refused.map(|first| std::iter::once(first).chain(rest).collect());
        Self { accepted, refused }
    }
}

impl<T> fmt::Debug for EnqueueManyError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnqueueManyError")
            .field("accepted", &self.accepted)
            .field("refused", &self.refused)
            .finish()
    }
}

/// Why a coordinator could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// A bad option.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// Created outside a tokio runtime.
    #[error(
        "a coordinator must be created inside a tokio runtime (call it from async code or inside Runtime::enter)"
    )]
    NoRuntime,
    /// The lanes of a priority coordinator.
    #[error(transparent)]
    Lanes(#[from] LaneError),
}

/// Why the lanes given to a [`PriorityWorkCoordinator`](super::PriorityWorkCoordinator) were
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    /// No lane was given.
    #[error("a priority coordinator needs at least one lane")]
    NoLanes,
    /// A lane's name was empty or only whitespace (`""`, `" "`, `"\n"`): a snapshot's key, a
    /// log line or an `enqueue(lane, ..)` call could not tell it from nothing. Blank names
    /// are refused with this one variant, as a coordinator's blank `name` or `id` is
    /// ([`OptionsError::Blank`](crate::OptionsError::Blank)), so matching on it catches both.
    #[error(
        "a lane name must not be empty or only whitespace: give every lane a visible name to enqueue by"
    )]
    EmptyName,
    /// Two lanes had this name.
    #[error("lane name `{0}` is used twice: lane names must be distinct")]
    DuplicateName(Arc<str>),
    /// This lane's `max_depth` was zero: it would refuse every item.
    #[error(
        "lane `{0}` has a max_depth of 0, so it would refuse every item: give it at least 1, or leave max_depth unset for no limit"
    )]
    ZeroDepth(Arc<str>),
}

/// Why `pin` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The id is not (or no longer) tracked.
    #[error(
        "operation {0} is not tracked (unknown or already evicted): pin an operation while the window holds it, e.g. right after enqueue"
    )]
    Unknown(OperationId),
    /// As many operations are pinned as `max_tracked` allows.
    #[error(
        "as many operations are pinned as the max_tracked bound ({max}) allows: unpin some first, or raise max_tracked"
    )]
    TooMany {
        /// The bound.
        max: usize,
    },
}

/// Why a result could not be awaited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The id was never handed out by this coordinator, or it was evicted from the window.
    #[error("operation {0} is unknown or was evicted from the window: pin it to keep its result")]
    Unknown(OperationId),
    /// The operation failed (its message).
    #[error("operation {id} failed: {message}")]
    Failed {
        /// The operation.
        id: OperationId,
        /// The error or panic message.
        message: super::OperationError,
    },
    /// The operation was cancelled.
    #[error("operation {id} was cancelled: {reason}")]
    Cancelled {
        /// The operation.
        id: OperationId,
        /// Why.
        reason: super::CancelReason,
    },
}

/// An error of an intake stream, surfaced by `drain`: the stream's own error, a refusal
/// that stopped it, or a panic while it was polled (`the intake stream panicked: <message>`;
/// the intake stops as on an error, and the items taken before it still run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("intake stream failed: {message}")]
pub struct IntakeError {
    /// The stream error's message.
    pub message: Arc<str>,
}
