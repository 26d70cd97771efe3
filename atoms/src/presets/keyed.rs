//! `KeyedSequential<K, T>`: strictly one item at a time per key.

use std::fmt;
use std::hash::Hash;

use ephemeral::{
    CoordinatorError, CoordinatorStats, EnqueueError, EphemeralKeyedWorkCoordinator,
    EphemeralOptions, IntakeError, KeyStats, OperationContext, OperationId,
};

/// A keyed coordinator that runs items of one key strictly one at a time, in the order they
/// were accepted, while different keys run in parallel (up to `max_concurrency`, by default
/// the available parallelism).
///
/// When to use it: per-entity ordering — events of one account, one device, one order — where
/// two updates of the same entity must never overlap or swap. Use
/// [`EphemeralKeyedWorkCoordinator`] directly for `per_key_concurrency` above 1 or admission
/// hooks, or reach it through [`inner`](Self::inner).
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ephemeral::OperationContext;
/// use ephemeral_atoms::presets::KeyedSequential;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let seen = log.clone();
/// let accounts = KeyedSequential::new(move |(account, amount): (&'static str, i64), _ctx: OperationContext| {
///     let seen = seen.clone();
///     async move {
///         seen.lock().unwrap().push((account, amount));
///         Ok::<_, std::convert::Infallible>(())
///     }
/// })?;
/// for (account, amount) in [("alice", 10), ("bob", 5), ("alice", -3), ("alice", 7)] {
///     accounts.enqueue(account, (account, amount)).await?;
/// }
/// accounts.drain().await?;
///
/// let alice: Vec<i64> = log.lock().unwrap().iter()
///     .filter(|(a, _)| *a == "alice").map(|(_, n)| *n).collect();
/// assert_eq!(alice, [10, -3, 7]);
/// assert_eq!(accounts.stats().completed, 4);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle cancels the coordinator's work"]
pub struct KeyedSequential<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    inner: EphemeralKeyedWorkCoordinator<K, T>,
}

impl<K, T> Clone for KeyedSequential<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K, T> KeyedSequential<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    /// A keyed coordinator running `body`, one item at a time per key.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime.
    pub fn new<F, Fut, E>(body: F) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::with_options(body, EphemeralOptions::default())
    }

    /// [`new`](Self::new) on top of `options` (a sink, `max_concurrency` across keys...);
    /// `per_key_concurrency` is always 1.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), or a bad option.
    pub fn with_options<F, Fut, E>(
        body: F,
        options: EphemeralOptions,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let options = options.per_key_concurrency(1);
        Ok(Self {
            inner: EphemeralKeyedWorkCoordinator::new(body, options)?,
        })
    }

    /// Accepts `item` under `key`, waiting while the pending queue is full.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    pub async fn enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.inner.enqueue(key, item).await
    }

    /// Accepts `item` under `key` if there is room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] or [`EnqueueError::Closed`], with the item.
    pub fn try_enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.inner.try_enqueue(key, item)
    }

    /// Pending and running counts of one key.
    #[must_use]
    pub fn key_stats(&self, key: &K) -> KeyStats {
        self.inner.key_stats(key)
    }

    /// Stops accepting items and waits until every accepted one has ended.
    ///
    /// # Errors
    ///
    /// The first error of an intake stream fed through [`inner`](Self::inner).
    pub async fn drain(&self) -> Result<(), IntakeError> {
        self.inner.drain().await
    }

    /// Cancels everything (see [`EphemeralKeyedWorkCoordinator::cancel`]).
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// One consistent snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> CoordinatorStats {
        self.inner.stats()
    }

    /// The coordinator underneath, for everything this preset does not expose.
    pub fn inner(&self) -> &EphemeralKeyedWorkCoordinator<K, T> {
        &self.inner
    }
}

impl<K, T> fmt::Debug for KeyedSequential<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSequential")
            .field("inner", &self.inner)
            .finish()
    }
}
