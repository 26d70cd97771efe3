//! `CoordinatorHandle`: one trait over every coordinator type, for code that steers or reads
//! a coordinator without caring which kind it is.

use std::fmt;
use std::hash::Hash;

use super::keyed::EphemeralKeyedWorkCoordinator;
use super::options::OptionsError;
use super::priority::PriorityWorkCoordinator;
use super::result::EphemeralResultCoordinator;
use super::snapshot::CoordinatorStats;
use super::work::EphemeralWorkCoordinator;
use crate::SignalSink;

/// The calls that steer or read a coordinator of any type: the pending count, the
/// concurrency limit, the stats and the sink. Implemented for
/// [`EphemeralWorkCoordinator`], [`EphemeralKeyedWorkCoordinator`],
/// [`EphemeralResultCoordinator`] and [`PriorityWorkCoordinator`], so that a pattern (a
/// backpressure monitor, a concurrency scaler, telemetry) works with all of them. Each
/// method is the coordinator's inherent method of the same name.
///
/// # Examples
///
/// ```
/// use ephemeral::{
///     CoordinatorHandle, EphemeralKeyedWorkCoordinator, EphemeralOptions,
///     EphemeralWorkCoordinator, OperationContext,
/// };
///
/// /// Halves the concurrency of any coordinator with a backlog.
/// fn relieve(coordinator: &impl CoordinatorHandle) {
///     if coordinator.pending_count() > 100 {
///         let _ = coordinator.set_max_concurrency((coordinator.max_concurrency() / 2).max(1));
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let body = |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) };
/// let work = EphemeralWorkCoordinator::new(body, EphemeralOptions::default().max_concurrency(8))?;
/// let keyed: EphemeralKeyedWorkCoordinator<&str, u32> =
///     EphemeralKeyedWorkCoordinator::new(body, EphemeralOptions::default().max_concurrency(8))?;
/// work.pause();
/// work.enqueue_many(0..200).await?;
/// relieve(&work);
/// relieve(&keyed);
/// assert_eq!((work.max_concurrency(), keyed.max_concurrency()), (4, 8));
/// # Ok(())
/// # }
/// ```
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
    /// Resolves once it is done, without completing it and without keeping it alive (every
    /// coordinator of this crate: its `done`). The provided version, for other
    /// implementations, looks at [`is_done`](Self::is_done) every 100 ms with a clone.
    fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            while !this.is_done() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    /// The sink it reads.
    fn sink(&self) -> &SignalSink;
    /// Its id.
    fn id(&self) -> &str;
}

/// Implements [`CoordinatorHandle`] for a coordinator type through its inherent methods.
macro_rules! coordinator_handle {
    (impl [$($generics:tt)*] for $ty:ty $(where [$($bounds:tt)*])?) => {
        impl<$($generics)*> CoordinatorHandle for $ty $(where $($bounds)*)? {
            fn pending_count(&self) -> usize {
                <$ty>::pending_count(self)
            }
            fn max_concurrency(&self) -> usize {
                <$ty>::max_concurrency(self)
            }
            fn set_max_concurrency(&self, n: usize) -> Result<(), OptionsError> {
                <$ty>::set_max_concurrency(self, n)
            }
            fn stats(&self) -> CoordinatorStats {
                <$ty>::stats(self)
            }
            fn is_done(&self) -> bool {
                <$ty>::is_done(self)
            }
            fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
                <$ty>::done(self)
            }
            fn sink(&self) -> &SignalSink {
                <$ty>::sink(self)
            }
            fn id(&self) -> &str {
                <$ty>::id(self)
            }
        }
    };
}

coordinator_handle!(impl [T: Send + 'static] for EphemeralWorkCoordinator<T>);
coordinator_handle!(impl [T: Send + 'static, R: Clone + Send + 'static] for EphemeralResultCoordinator<T, R>);
coordinator_handle!(impl [T: Send + 'static] for PriorityWorkCoordinator<T>);
coordinator_handle!(
    impl [K, T] for EphemeralKeyedWorkCoordinator<K, T>
    where [K: Hash + Eq + Clone + fmt::Display + Send + 'static, T: Send + 'static]
);
