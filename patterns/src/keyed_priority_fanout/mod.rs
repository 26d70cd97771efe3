//! Keyed priority fan-out: a priority lane and a normal lane, with per-key ordering across
//! both.
//!
//! Use it when work for many keys (customers, accounts, devices) must run in parallel, some of
//! it is urgent, and work for one key must still happen in the order it was accepted, one item
//! at a time, whichever lane it came through. A plain priority coordinator would let an urgent
//! update for account 7 overtake (or run beside) a normal one for account 7; this does not.
//!
//! Rules:
//! - at most one item per key runs at a time, and a key's items start in acceptance order,
//!   across both lanes;
//! - whenever a slot frees up, the next item is the oldest *startable* priority item (its key
//!   idle and it first in its key's queue), else the oldest startable normal item;
//! - a priority item queued behind a normal item of the same key waits for it: order wins.
//!
//! It is built on a public [`PriorityWorkCoordinator`] with lanes `priority` and `normal`
//! that runs one *ticket* per accepted item; a ticket takes the best startable item when it
//! starts. So stats, snapshots, `max_concurrency`, panics caught and recorded, `drain` all
//! come from the coordinator and count items. When every queued item belongs to a key that is
//! already running, a started ticket waits (in its slot) for that key to finish.
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use ephemeral::{EphemeralOptions, OperationContext};
//! use ephemeral_patterns::keyed_priority_fanout::{FanoutLane, KeyedPriorityFanout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let seen = log.clone();
//! let fanout = KeyedPriorityFanout::new(
//!     move |account: u32, change: &'static str, _ctx: OperationContext| {
//!         let seen = seen.clone();
//!         async move {
//!             seen.lock().unwrap().push((account, change));
//!             Ok::<_, std::convert::Infallible>(())
//!         }
//!     },
//!     EphemeralOptions::default().max_concurrency(1),
//! )?;
//! fanout.pause();
//! fanout.enqueue(FanoutLane::Normal, 7, "rename").await?;
//! fanout.enqueue(FanoutLane::Priority, 7, "freeze").await?; // behind account 7's rename
//! fanout.enqueue(FanoutLane::Priority, 9, "freeze").await?; // jumps the queue
//! fanout.resume();
//! fanout.drain().await?;
//! assert_eq!(*log.lock().unwrap(), [(9, "freeze"), (7, "rename"), (7, "freeze")]);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::{
    CoordinatorError, CoordinatorStats, EnqueueError, EphemeralOptions, IntakeError, Lane,
    OperationContext, OperationId, PriorityWorkCoordinator,
};
use tokio::sync::Notify;

const PRIORITY: &str = "priority";
const NORMAL: &str = "normal";

/// Which lane an item comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanoutLane {
    /// Starts before any startable normal item.
    Priority,
    /// Starts when no priority item can.
    Normal,
}

impl FanoutLane {
    fn index(self) -> usize {
        match self {
            Self::Priority => 0,
            Self::Normal => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Priority => PRIORITY,
            Self::Normal => NORMAL,
        }
    }
}

struct Queued<T> {
    seq: u64,
    lane: FanoutLane,
    item: T,
}

struct KeyQueue<T> {
    items: VecDeque<Queued<T>>,
    running: bool,
}

struct State<K, T> {
    next_seq: u64,
    keys: HashMap<K, KeyQueue<T>>,
    /// Per lane: the head item of every idle key, by acceptance order.
    startable: [BTreeMap<u64, K>; 2],
}

impl<K: Eq + Hash + Clone, T> State<K, T> {
    /// Takes the best startable item and marks its key running.
    fn take(&mut self) -> Option<(K, T)> {
        let (_, key) = match self.startable[0].pop_first() {
            Some(found) => found,
            None => self.startable[1].pop_first()?,
        };
        let queue = self.keys.get_mut(&key)?;
        let queued = queue.items.pop_front()?;
        queue.running = true;
        Some((key, queued.item))
    }

    /// Marks `key` idle again and makes its next item startable.
    fn finish(&mut self, key: &K) {
        let Some(queue) = self.keys.get_mut(key) else {
            return;
        };
        queue.running = false;
        match queue.items.front() {
            Some(head) => {
                self.startable[head.lane.index()].insert(head.seq, key.clone());
            }
            None => {
                self.keys.remove(key);
            }
        }
    }

    fn push(&mut self, lane: FanoutLane, key: K, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let queue = self.keys.entry(key.clone()).or_insert_with(|| KeyQueue {
            items: VecDeque::new(),
            running: false,
        });
        if !queue.running && queue.items.is_empty() {
            self.startable[lane.index()].insert(seq, key);
        }
        queue.items.push_back(Queued { seq, lane, item });
    }
}

struct Shared<K, T> {
    state: Mutex<State<K, T>>,
    changed: Notify,
}

impl<K, T> Shared<K, T> {
    fn lock(&self) -> MutexGuard<'_, State<K, T>> {
        // The state is only changed in short sections that cannot panic half-way.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Marks the key idle when the item ends, however it ends (returned, panicked, aborted).
struct Running<K: Eq + Hash + Clone, T> {
    shared: Arc<Shared<K, T>>,
    key: K,
}

impl<K: Eq + Hash + Clone, T> Drop for Running<K, T> {
    fn drop(&mut self) {
        self.shared.lock().finish(&self.key);
        self.shared.changed.notify_waiters();
    }
}

/// A priority lane and a normal lane over many keys, with per-key ordering across both; see
/// the [module docs](self).
#[must_use = "dropping the last handle cancels both lanes"]
pub struct KeyedPriorityFanout<K, T: Send + 'static> {
    shared: Arc<Shared<K, T>>,
    coordinator: PriorityWorkCoordinator<()>,
}

impl<K, T: Send + 'static> Clone for KeyedPriorityFanout<K, T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            coordinator: self.coordinator.clone(),
        }
    }
}

impl<K, T: Send + 'static> fmt::Debug for KeyedPriorityFanout<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPriorityFanout")
            .field("pending", &self.coordinator.pending_count())
            .field("running", &self.coordinator.active_count())
            .finish_non_exhaustive()
    }
}

impl<K, T> KeyedPriorityFanout<K, T>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    T: Send + 'static,
{
    /// A fan-out running `body(key, item, ctx)` with `options` (its `max_concurrency` is the
    /// number of keys served at once).
    ///
    /// # Errors
    ///
    /// As [`PriorityWorkCoordinator::new`]: outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(body: F, options: EphemeralOptions) -> Result<Self, CoordinatorError>
    where
        F: Fn(K, T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::<K, T> {
                next_seq: 0,
                keys: HashMap::new(),
                startable: [BTreeMap::new(), BTreeMap::new()],
            }),
            changed: Notify::new(),
        });
        let body = Arc::new(body);
        let tickets = shared.clone();
        let coordinator = PriorityWorkCoordinator::new(
            move |(): (), ctx: OperationContext| {
                let shared = tickets.clone();
                let body = body.clone();
                async move {
                    let (key, item) = loop {
                        let changed = shared.changed.notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        if let Some(found) = shared.lock().take() {
                            break found;
                        }
                        changed.await;
                    };
                    let _running = Running {
                        shared: shared.clone(),
                        key: key.clone(),
                    };
                    body(key, item, ctx).await
                }
            },
            vec![Lane::new(PRIORITY, 1), Lane::new(NORMAL, 0)],
            options,
        )?;
        Ok(Self {
            shared,
            coordinator,
        })
    }

    /// Accepts `item` for `key` through `lane`, waiting while `max_pending` items wait.
    ///
    /// # Errors
    ///
    /// As [`PriorityWorkCoordinator::enqueue`], with the item.
    pub async fn enqueue(
        &self,
        lane: FanoutLane,
        key: K,
        item: T,
    ) -> Result<OperationId, EnqueueError<T>> {
        // The ticket first: if it is refused, nothing was queued and the item goes back.
        match self.coordinator.enqueue(lane.name(), ()).await {
            Ok(id) => {
                self.shared.lock().push(lane, key, item);
                self.shared.changed.notify_waiters();
                Ok(id)
            }
            Err(e) => Err(rebuild(e, item)),
        }
    }

    /// Accepts `item` for `key` through `lane` if there is room now.
    ///
    /// # Errors
    ///
    /// As [`PriorityWorkCoordinator::try_enqueue`], with the item.
    pub fn try_enqueue(
        &self,
        lane: FanoutLane,
        key: K,
        item: T,
    ) -> Result<OperationId, EnqueueError<T>> {
        match self.coordinator.try_enqueue(lane.name(), ()) {
            Ok(id) => {
                self.shared.lock().push(lane, key, item);
                self.shared.changed.notify_waiters();
                Ok(id)
            }
            Err(e) => Err(rebuild(e, item)),
        }
    }

    /// Items accepted for `key` that have not started yet.
    #[must_use]
    pub fn key_depth(&self, key: &K) -> usize {
        self.shared
            .lock()
            .keys
            .get(key)
            .map_or(0, |q| q.items.len())
    }

    /// Whether an item for `key` is running now.
    #[must_use]
    pub fn key_running(&self, key: &K) -> bool {
        self.shared.lock().keys.get(key).is_some_and(|q| q.running)
    }

    /// Stops starting items until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.coordinator.pause();
    }

    /// Starts items again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.coordinator.resume();
    }

    /// Stops intake and waits for every accepted item to end.
    ///
    /// # Errors
    ///
    /// As [`PriorityWorkCoordinator::drain`].
    pub async fn drain(&self) -> Result<(), IntakeError> {
        self.coordinator.drain().await
    }

    /// Counts of accepted, completed, failed and cancelled items.
    #[must_use]
    pub fn stats(&self) -> CoordinatorStats {
        self.coordinator.stats()
    }

    /// The coordinator underneath, for snapshots, signals and concurrency changes.
    pub fn coordinator(&self) -> &PriorityWorkCoordinator<()> {
        &self.coordinator
    }
}

/// The ticket's error, carrying the user's item instead.
fn rebuild<T>(e: EnqueueError<()>, item: T) -> EnqueueError<T> {
    match e {
        EnqueueError::Closed(()) => EnqueueError::Closed(item),
        EnqueueError::Full(()) => EnqueueError::Full(item),
        EnqueueError::Refused { lane, reason, .. } => EnqueueError::Refused { item, lane, reason },
        // A refusal added to the coordinator later: report it as what it says.
        other => EnqueueError::Refused {
            item,
            lane: Arc::from("fanout"),
            reason: Arc::from(other.to_string()),
        },
    }
}
