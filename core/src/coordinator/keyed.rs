//! `EphemeralKeyedWorkCoordinator<K, T>`: strict order per key, no head-of-line blocking.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::admission::Admission;
use super::context::OperationContext;
use super::engine::Reserved;
use super::engine::{Engine, enqueue_each, user_body};
use super::error::{CoordinatorError, EnqueueError, EnqueueManyError};
use super::key_label::KeyLabel;
use super::methods::coordinator_methods;
use super::options::EphemeralOptions;
use super::queue::KeyedQueue;
use super::snapshot::KeyStats;
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
/// seen costs nothing.
///
/// Keys appear rendered through `Display` wherever they are shown: snapshots, echoes,
/// [`OperationContext::key`], the signals a body raises, admission requests and the
/// operation's span. Integer keys (`u8` to `u64`, `i8` to `i64`, `usize`, `isize`) are kept
/// as numbers and rendered only when one of those asks; `Arc<str>` keys are shared, `String`
/// and `&'static str` keys copied once, and any other key is rendered when it is enqueued.
/// Only `Hash` and `Eq` decide a key's order: a key whose `Display` returns an error or
/// panics is shown as `<unrenderable key>` (with a `tracing` warning), and its item is
/// accepted and run as any other.
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
#[must_use = "dropping the last handle shuts the coordinator down (pending items are cancelled)"]
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
        E: fmt::Display + Send + Sync + 'static,
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
        E: fmt::Display + Send + Sync + 'static,
    {
        let queue = KeyedQueue::new(options.per_key_concurrency, options.fairness_threshold);
        let engine = Engine::new(user_body(body), options, queue, hooks, Vec::new())?;
        Ok(Self { engine })
    }

    /// Accepts `item` under `key`, waiting while `max_pending` items wait to start.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    pub async fn enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        let label = Some(KeyLabel::of(&key));
        self.engine.enqueue(item, key, label).await
    }

    /// Accepts `item` under `key` if there is room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] or [`EnqueueError::Closed`], with the item.
    pub fn try_enqueue(&self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        let label = Some(KeyLabel::of(&key));
        self.engine.try_enqueue(item, key, label)
    }

    /// Waits for room for one item and holds it: [`KeyedEnqueuePermit::send`] never waits,
    /// and dropping the permit (say, when another `select!` branch won) gives the room back.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] after `complete`, `drain` or `cancel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = EphemeralKeyedWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let permit = coordinator.reserve().await?; // the room is held from here on
    /// let id = permit.send("alice", 7)?; // never waits
    /// coordinator.drain().await?;
    /// assert_eq!(coordinator.operation(id).unwrap().key.as_deref(), Some("alice"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve(&self) -> Result<KeyedEnqueuePermit<K, T>, EnqueueError<()>> {
        Ok(KeyedEnqueuePermit {
            reserved: self.engine.reserve().await?,
        })
    }

    /// Enqueues every `(key, item)` pair in order, waiting for room as
    /// [`enqueue`](Self::enqueue) does.
    ///
    /// # Errors
    ///
    /// Stops at the first refused pair: [`EnqueueManyError`] holds the ids of the pairs
    /// accepted before it, and gives back the refused pair and every pair after it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = EphemeralKeyedWorkCoordinator::new(
    ///     |_: i64, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default(),
    /// )?;
    /// coordinator.enqueue_many([("alice", 10), ("bob", 5), ("alice", -3)]).await?;
    /// coordinator.complete();
    /// let refused = coordinator.enqueue_many([("carol", 1), ("dave", 2)]).await.unwrap_err();
    /// assert_eq!(refused.into_inner(), [("carol", 1), ("dave", 2)]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_many(
        &self,
        items: impl IntoIterator<Item = (K, T)>,
    ) -> Result<Vec<OperationId>, EnqueueManyError<(K, T)>> {
        enqueue_each(items, |(key, item)| async move {
            let label = Some(KeyLabel::of(&key));
            self.engine
                .enqueue(item, key.clone(), label)
                .await
                .map_err(|e| e.map(|item| (key, item)))
        })
        .await
    }

    /// Feeds a stream of `(key, item)` pairs into the coordinator on a task;
    /// [`drain`](Self::drain) waits for the stream to end.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralOptions, OperationContext};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = EphemeralKeyedWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let events = futures::stream::iter([("door-1", 1), ("door-2", 1), ("door-1", 2)]);
    /// coordinator.intake(events);
    /// coordinator.drain().await?;
    /// assert_eq!(coordinator.snapshot_key(&"door-1").len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn intake<S>(&self, stream: S)
    where
        S: futures::Stream<Item = (K, T)> + Send + 'static,
    {
        use futures::StreamExt;
        self.intake_results(stream.map(Ok::<(K, T), std::convert::Infallible>));
    }

    /// Feeds a fallible stream of `(key, item)` pairs; the first error stops it and is
    /// returned by [`drain`](Self::drain).
    pub fn intake_results<S, E>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<(K, T), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.engine.intake(stream, |(key, item): (K, T)| {
            let label = Some(KeyLabel::of(&key));
            Ok((item, key, label))
        });
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
        let rendered = super::key_label::render(key);
        self.engine
            .filter_records(|r| r.key.as_ref().is_some_and(|k| k.renders_as(&rendered)))
    }

    /// How many keys have state now (something pending or running).
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.engine.with_queue(KeyedQueue::key_count)
    }

    coordinator_methods!();
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

/// Room for one item, reserved by [`EphemeralKeyedWorkCoordinator::reserve`].
#[must_use = "dropping the permit gives the room back"]
pub struct KeyedEnqueuePermit<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    reserved: Reserved<T, (), KeyedQueue<T, K>>,
}

impl<K, T> KeyedEnqueuePermit<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    /// Accepts `item` under `key` into the reserved room.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] if the coordinator stopped taking items meanwhile
    /// (`complete`, `drain` or `cancel`; the permit's room is then given back).
    pub fn send(self, key: K, item: T) -> Result<OperationId, EnqueueError<T>> {
        let label = Some(KeyLabel::of(&key));
        self.reserved.send(item, key, label)
    }
}

impl<K, T> fmt::Debug for KeyedEnqueuePermit<K, T>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedEnqueuePermit")
    }
}
