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
///
/// `EphemeralOptions` has no getters: its `Debug` output is the only public view of the two
/// fields. They come after every field that holds caller text (name, id, patterns), so the
/// last match of each field name is the field itself. A test pins this reading.
pub(super) fn runs_past_max_defer(options: &EphemeralOptions) -> bool {
    let text = format!("{options:?}");
    let value = |field: &str| text.rfind(field).map(|at| &text[at + field.len()..]);
    let run = format!("{:?}", DeferPolicy::Run);
    value("max_defer: ").is_some_and(|v| v.starts_with("Some("))
        && value("defer_policy: ").is_some_and(|v| v.starts_with(run.as_str()))
}
