//! `Lane`: one named lane of a priority coordinator, with its own limits and rules.

use std::sync::Arc;

use crate::Pattern;

/// One named lane of a [`PriorityWorkCoordinator`](super::PriorityWorkCoordinator).
///
/// # Examples
///
/// ```
/// use ephemeral::Lane;
///
/// let lanes = [
///     Lane::new("interactive", 10).max_depth(100),
///     Lane::new("batch", 1).defer_on("backpressure.*").resume_on("backpressure.cleared"),
/// ];
/// assert_eq!(lanes[0].name(), "interactive");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Lane {
    pub(crate) name: Arc<str>,
    pub(crate) priority: i32,
    pub(crate) max_depth: Option<usize>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
}

impl Lane {
    /// A lane named `name`; higher `priority` starts first (any `i32`). Between lanes of equal
    /// priority, the item accepted first starts first. An empty or blank name (`""`, `" "`)
    /// is refused when the coordinator is built
    /// ([`LaneError::EmptyName`](crate::LaneError::EmptyName)).
    pub fn new(name: &str, priority: i32) -> Self {
        Self {
            name: Arc::from(name),
            priority,
            max_depth: None,
            cancel_on: None,
            defer_on: None,
            resume_on: None,
        }
    }

    /// At most `depth` items wait in this lane (those an admission hook put aside with
    /// [`Decision::Defer`](crate::Decision::Defer) included: they come back to its front);
    /// more are refused with a reason. Zero is
    /// refused when the coordinator is built ([`LaneError::ZeroDepth`](crate::LaneError::ZeroDepth)).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// This lane's items reaching admission while `pattern` matches end cancelled
    /// ([`CancelReason::Signal`](crate::CancelReason::Signal)), in addition to the
    /// coordinator-wide [`cancel_on`](crate::EphemeralOptions::cancel_on). Running bodies
    /// are not touched (that is the coordinator-wide `cancel_running_on`).
    pub fn cancel_on(mut self, pattern: &str) -> Self {
        self.cancel_on = Some(Pattern::new(pattern));
        self
    }

    /// This lane starts nothing while `pattern` matches (the other lanes go on).
    ///
    /// Its items are then `Deferred`, as under the coordinator-wide
    /// [`defer_on`](crate::EphemeralOptions::defer_on): the coordinator's
    /// [`max_defer`](crate::EphemeralOptions::max_defer) bounds how long each is held, from
    /// its acceptance or the raise of the defer signal, whichever is later, then its
    /// [`DeferPolicy`](crate::DeferPolicy) applies. There is no per-lane `max_defer`.
    pub fn defer_on(mut self, pattern: &str) -> Self {
        self.defer_on = Some(Pattern::new(pattern));
        self
    }

    /// A signal matching `pattern` newer than the latest defer match ends the lane's deferral.
    /// Without this lane's [`defer_on`](Self::defer_on) it does nothing.
    pub fn resume_on(mut self, pattern: &str) -> Self {
        self.resume_on = Some(Pattern::new(pattern));
        self
    }

    /// The lane's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}
