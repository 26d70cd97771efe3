//! What the patterns need of a coordinator, as one trait over the coordinator types.

use ephemeral::{CoordinatorStats, EphemeralWorkCoordinator, OptionsError, SignalSink};

/// The public coordinator calls a pattern steers or reads: the pending count, the
/// concurrency limit, the stats and the sink. Implemented for every coordinator type, so a
/// pattern works with any of them.
pub trait CoordinatorHandle: Clone + Send + Sync + 'static {
    /// Accepted items not started yet (deferred included).
    fn pending_count(&self) -> usize;
    /// The concurrency limit now.
    fn max_concurrency(&self) -> usize;
    /// Changes the concurrency limit.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] for a limit of 0.
    fn set_max_concurrency(&self, n: usize) -> Result<(), OptionsError>;
    /// One consistent snapshot of the counters.
    fn stats(&self) -> CoordinatorStats;
    /// Whether it is completed and every accepted item has ended.
    fn is_done(&self) -> bool;
    /// The sink it reads.
    fn sink(&self) -> &SignalSink;
    /// Its id.
    fn id(&self) -> &str;
}

impl<T: Send + 'static> CoordinatorHandle for EphemeralWorkCoordinator<T> {
    fn pending_count(&self) -> usize {
        EphemeralWorkCoordinator::pending_count(self)
    }
    fn max_concurrency(&self) -> usize {
        EphemeralWorkCoordinator::max_concurrency(self)
    }
    fn set_max_concurrency(&self, n: usize) -> Result<(), OptionsError> {
        EphemeralWorkCoordinator::set_max_concurrency(self, n)
    }
    fn stats(&self) -> CoordinatorStats {
        EphemeralWorkCoordinator::stats(self)
    }
    fn is_done(&self) -> bool {
        EphemeralWorkCoordinator::is_done(self)
    }
    fn sink(&self) -> &SignalSink {
        EphemeralWorkCoordinator::sink(self)
    }
    fn id(&self) -> &str {
        EphemeralWorkCoordinator::id(self)
    }
}
