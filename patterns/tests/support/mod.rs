//! Helpers shared by the pattern tests.

/// Tasks alive on the current runtime now: a pattern that leaves a task behind (a timer, a
/// monitor) shows as one more than before.
pub(crate) fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}
