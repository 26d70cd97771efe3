//! `EphemeralKeyedWorkCoordinator<K, T>`: strict order per key, no head-of-line blocking.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::admission::Admission;
use super::body::erase;
use super::common::common_methods;
use super::context::OperationContext;
use super::engine::Engine;
use super::error::{CoordinatorError, EnqueueError};
use super::keyed_queue::{KeyStats, KeyedQueue};
use super::options::EphemeralOptions;
use super::snapshot::OperationSnapshot;
use crate::OperationId;

/// A work coordinator whose items carry a key: items of one key start strictly in the order
/// they were accepted, at most `per_key_concurrency` (default 1) at once, while a busy key
/// never holds back the others.
///
/// Fair scheduling: a key with more than `fairness_threshold` (64) pending items is *hot*;
/// whenever a slot frees up, keys at or under the threshold start first, so one hot key's
/// backlog cannot starve the rest. Keys are served round-robin within each class. A key's
/// state is dropped as soon as it has nothing pending or running, so the number of keys ever
/// seen costs nothing. Keys appear in snapshots rendered through `Display`.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let seen = log.clone();
/// let coordinator = EphemeralKeyedWorkCoordinator::new(
///     move |(account, amount): (&'static str, i64), _ctx: OperationContext| {
///         let seen = seen.clone();
///         async move {
///             seen.lock().unwrap().push((account, amount));
///             Ok::<_, std::convert::Infallible>(())
///         }
///     },
///     EphemeralOptions::default().max_concurrency(4),
/// )?;
/// for (account, amount) in [("alice", 10), ("bob", 5), ("alice", -3), ("alice", 7)] {
///     coordinator.enqueue(account, (account, amount)).await?;
/// }
/// coordinator.drain().await?;
///
/// let alice: Vec<i64> = log.lock().unwrap().iter()
///     .filter(|(a, _)| *a == "alice").map(|(_, n)| *n).collect();
/// assert_eq!(alice, [10, -3, 7]); // per-key order
/// # Ok(())
/// # }
/// ```
pub struct EphemeralKeyedWorkCoordinator<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    engine: Engine<T, (), KeyedQueue<T, K>>,
}

impl<K, T> Clone for EphemeralKeyedWorkCoordinator<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<K, T> EphemeralKeyedWorkCoordinator<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    /// A keyed coordinator running `body` on every item.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(body: F, options: EphemeralOptions) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        Self::with_admission(body, options, Vec::new())
    }

    /// [`new`](Self::new) with [`Admission`] hooks.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_admission<F, Fut, E>(
        body: F,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        let queue = KeyedQueue::new(options.per_key_concurrency, options.fairness_threshold);
        let engine = Engine::new(erase(body), options, queue, hooks, Vec::new())?;
        Ok(Self { engine })
    }

    /// Accepts `item` under `key`, waiting while `max_pending` items wait to start.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    pub async fn enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        let rendered = Some(Arc::from(key.to_string()));
        self.engine.enqueue(item, key, rendered).await
    }

    /// Accepts `item` under `key` if there is room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] or [`EnqueueError::Closed`], with the item.
    pub fn try_enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        let rendered = Some(Arc::from(key.to_string()));
        self.engine.try_enqueue(item, key, rendered)
    }

    /// Pending and running counts of one key (zeros for a key with no state).
    #[must_use]
    pub fn key_stats(&self, key: &K) -> KeyStats {
        self.engine.with_queue(|q| q.key_stats(key))
    }

    /// The operations of one key in the window (pending, running and finished), by id.
    ///
    /// Keys are matched by their `Display` rendering, as they appear in snapshots, so two
    /// keys that render alike share a view.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = EphemeralKeyedWorkCoordinator::new(
    ///     |amount: i64, _ctx: OperationContext| async move {
    ///         if amount < 0 { Err("overdrawn") } else { Ok(()) }
    ///     },
    ///     EphemeralOptions::default(),
    /// )?;
    /// coordinator.enqueue("alice", 10).await?;
    /// coordinator.enqueue("bob", 5).await?;
    /// coordinator.enqueue("alice", -3).await?;
    /// coordinator.drain().await?;
    ///
    /// let alice = coordinator.snapshot_key(&"alice");
    /// assert_eq!(alice.len(), 2);
    /// assert_eq!(alice[1].error.as_deref(), Some("overdrawn"));
    /// assert!(coordinator.snapshot_key(&"carol").is_empty());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn snapshot_key(&self, key: &K) -> Vec<OperationSnapshot> {
        let rendered = key.to_string();
        self.engine
            .filter_records(|r| r.key.as_deref() == Some(rendered.as_str()))
    }

    /// How many keys have state now (something pending or running).
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.engine.with_queue(KeyedQueue::key_count)
    }

    common_methods!();
}

impl<K, T> fmt::Debug for EphemeralKeyedWorkCoordinator<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.engine, f)
    }
}
