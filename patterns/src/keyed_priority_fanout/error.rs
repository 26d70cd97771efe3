//! `FanoutConfigError`: why a fan-out could not be built.

use ephemeral::{CoordinatorError, DeferPolicy, EphemeralOptions};

/// Why a [`KeyedPriorityFanout`](super::KeyedPriorityFanout) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FanoutConfigError {
    /// The coordinator underneath refused: outside a tokio runtime, or a bad option.
    #[error(transparent)]
    Coordinator(#[from] CoordinatorError),
    /// `max_defer` was set with [`DeferPolicy::Run`]: an item that waited that long for its
    /// key would start beside the key's running item.
    #[error(
        "max_defer with DeferPolicy::Run would start an item that waited that long for its key beside the key's running item: use DeferPolicy::Cancel to keep one item per key"
    )]
    RunPastMaxDefer,
}

/// Whether `options` set a `max_defer` under [`DeferPolicy::Run`].
pub(super) fn runs_past_max_defer(options: &EphemeralOptions) -> bool {
    options
        .max_defer_setting()
        .is_some_and(|(_, policy)| policy == DeferPolicy::Run)
}
