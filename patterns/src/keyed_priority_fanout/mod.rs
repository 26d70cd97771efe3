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
//! It is built on a public [`PriorityWorkCoordinator`] with lanes `priority` and `normal`:
//! each accepted item is one operation of it (the id `enqueue` returns is that item's), and
//! an admission hook lets an item start only when it is first in its key's queue and its key
//! is idle; until then the item is put aside, holding no slot, and shows as `Deferred` in
//! snapshots. So stats, snapshots, `cancel_operation`, the coordinator's `cancel_on` rules,
//! `max_concurrency`, panics caught and recorded and `drain` all count and act on items. An
//! item that ends without running (cancelled, refused, shut down) leaves its key's queue at
//! once, and the key's next item may start.
//!
//! `max_defer` bounds how long an item waits, for its key as for a defer rule, and needs
//! [`DeferPolicy::Cancel`]: an item that waits that long ends `Cancelled(DeferTimeout)`.
//! [`DeferPolicy::Run`] would start such an item anyway, beside its key's running item, so
//! [`KeyedPriorityFanout::new`] refuses it ([`FanoutConfigError::RunPastMaxDefer`]).
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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::{
    Admission, AdmissionRequest, CoordinatorError, CoordinatorStats, Decision, DeferPolicy,
    EnqueueError, EphemeralOptions, IntakeError, Lane, OperationContext, OperationId,
    PriorityWorkCoordinator,
};
use futures::future::BoxFuture;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

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
    fn name(self) -> &'static str {
        match self {
            Self::Priority => PRIORITY,
            Self::Normal => NORMAL,
        }
    }
}

/// Why a [`KeyedPriorityFanout`] could not be built.
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
fn runs_past_max_defer(options: &EphemeralOptions) -> bool {
    let text = format!("{options:?}");
    let value = |field: &str| text.rfind(field).map(|at| &text[at + field.len()..]);
    let run = format!("{:?}", DeferPolicy::Run);
    value("max_defer: ").is_some_and(|v| v.starts_with("Some("))
        && value("defer_policy: ").is_some_and(|v| v.starts_with(run.as_str()))
}

/// One key's items: the tags of its accepted items not started yet, in acceptance order,
/// and the one admitted or running.
struct KeyQueue {
    order: VecDeque<u64>,
    running: Option<u64>,
}

/// Where an accepted item is.
struct Tagged<K> {
    key: K,
    id: OperationId,
    running: bool,
    /// Set while the item is put aside waiting for its key; notified (and cleared) once it
    /// can start: first in its key's queue, its key idle. Only that item is woken, so a
    /// key's finish costs one wake-up however many items wait for the key.
    turn: Option<Arc<Notify>>,
}

/// What an item put aside waits for: its turn, enabled before the state can change again.
type Turn = Pin<Box<OwnedNotified>>;

struct State<K> {
    next_tag: u64,
    keys: HashMap<K, KeyQueue>,
    /// Accepted items, by tag.
    tags: HashMap<u64, Tagged<K>>,
    /// The tag of each accepted item's operation, for the admission hook (which sees ids).
    by_id: HashMap<OperationId, u64>,
    /// Tags whose `enqueue` has not returned yet, each with whether its ticket already
    /// ended (refused by a rule the moment it was accepted): `enqueue` then records nothing.
    /// An `enqueue` removes its tag however it ends, dropped while waiting for room too.
    enqueuing: HashMap<u64, bool>,
}

impl<K: Eq + Hash + Clone> State<K> {
    fn new() -> Self {
        Self {
            next_tag: 0,
            keys: HashMap::new(),
            tags: HashMap::new(),
            by_id: HashMap::new(),
            enqueuing: HashMap::new(),
        }
    }

    /// Records an accepted item, unless its ticket already ended.
    fn record(&mut self, tag: u64, key: K, id: OperationId) {
        if self.enqueuing.remove(&tag) == Some(true) {
            return;
        }
        self.keys
            .entry(key.clone())
            .or_insert_with(|| KeyQueue {
                order: VecDeque::new(),
                running: None,
            })
            .order
            .push_back(tag);
        self.tags.insert(
            tag,
            Tagged {
                key,
                id,
                running: false,
                turn: None,
            },
        );
        self.by_id.insert(id, tag);
    }

    /// Lets item `tag` start if it is first in its key's queue and the key is idle (the key
    /// then counts it as running); otherwise its turn, for it to wait on.
    fn try_start(&mut self, tag: u64) -> Result<(), Turn> {
        let Some(tagged) = self.tags.get_mut(&tag) else {
            // Gone already (its ticket ended): let the coordinator settle it.
            return Ok(());
        };
        let Some(queue) = self.keys.get_mut(&tagged.key) else {
            return Ok(());
        };
        if queue.running.is_none() && queue.order.front() == Some(&tag) {
            queue.order.pop_front();
            queue.running = Some(tag);
            tagged.running = true;
            return Ok(());
        }
        let notify = Arc::new(Notify::new());
        let mut turn = Box::pin(notify.clone().notified_owned());
        turn.as_mut().enable();
        tagged.turn = Some(notify);
        Err(turn)
    }

    /// Forgets item `tag` (it ran, or ended without running): its key's next item may
    /// start, and is woken if it waits; a key with nothing left is forgotten.
    fn forget(&mut self, tag: u64) {
        let Some(tagged) = self.tags.remove(&tag) else {
            // Not recorded (yet): an `enqueue` still running records nothing; one that
            // ended, refused or dropped, removed the tag already.
            if let Some(ended) = self.enqueuing.get_mut(&tag) {
                *ended = true;
            }
            return;
        };
        self.by_id.remove(&tagged.id);
        let Some(queue) = self.keys.get_mut(&tagged.key) else {
            return;
        };
        if tagged.running {
            queue.running = None;
        } else if let Some(at) = queue.order.iter().position(|t| *t == tag) {
            queue.order.remove(at);
        }
        if queue.running.is_some() {
            return;
        }
        let Some(&next) = queue.order.front() else {
            self.keys.remove(&tagged.key);
            return;
        };
        // An item not put aside (still queued, or being asked about) starts when asked.
        if let Some(turn) = self.tags.get_mut(&next).and_then(|t| t.turn.take()) {
            // A permit is kept if the turn is not awaited yet.
            turn.notify_one();
        }
    }
}

struct Shared<K> {
    state: Mutex<State<K>>,
    /// Woken when `enqueue` records an item, for a hook asked about it first.
    recorded: Notify,
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state is only changed in short sections that cannot panic half-way.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One accepted item as the coordinator underneath carries it: the item with its key and
/// its place in the key's queue. Opaque; it exists so that
/// [`KeyedPriorityFanout::coordinator`] can be named.
///
/// When its operation ends, however it ends (ran, failed, panicked, aborted, or cancelled or
/// refused before it started), its key's queue forgets the item.
pub struct Ticket<K: Eq + Hash + Clone, T> {
    place: Place<K>,
    key: K,
    item: T,
}

impl<K: Eq + Hash + Clone, T> fmt::Debug for Ticket<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("tag", &self.place.tag)
            .finish_non_exhaustive()
    }
}

/// A ticket's place in its key's queue, forgotten when dropped.
struct Place<K: Eq + Hash + Clone> {
    shared: Arc<Shared<K>>,
    tag: u64,
}

impl<K: Eq + Hash + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        self.shared.lock().forget(self.tag);
    }
}

/// An `enqueue` under way: dropped before it recorded its item, it removes its tag from
/// [`State::enqueuing`], so an `enqueue` refused, or dropped while it waits for room, leaves
/// nothing behind.
struct Enqueuing<K> {
    shared: Arc<Shared<K>>,
    tag: u64,
    recorded: bool,
}

impl<K: Eq + Hash + Clone> Enqueuing<K> {
    /// Records the accepted item in its key's queue, unless its ticket already ended.
    fn record(mut self, key: K, id: OperationId) -> OperationId {
        self.shared.lock().record(self.tag, key, id);
        self.recorded = true;
        self.shared.recorded.notify_waiters();
        id
    }
}

impl<K> Drop for Enqueuing<K> {
    fn drop(&mut self) {
        if !self.recorded {
            self.shared.lock().enqueuing.remove(&self.tag);
        }
    }
}

/// The admission hook: an item starts only when first in its key's queue, its key idle.
struct KeyTurn<K> {
    shared: Arc<Shared<K>>,
}

impl<K> fmt::Debug for KeyTurn<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyTurn")
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Admission for KeyTurn<K> {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            loop {
                // Enabled before looking, so that a record made meanwhile wakes it.
                let recorded = self.shared.recorded.notified();
                tokio::pin!(recorded);
                recorded.as_mut().enable();
                {
                    let mut state = self.shared.lock();
                    if let Some(&tag) = state.by_id.get(&request.id) {
                        return match state.try_start(tag) {
                            Ok(()) => Decision::Admit,
                            Err(turn) => Decision::defer(turn),
                        };
                    }
                }
                // Accepted a moment ago: `enqueue` records it as soon as it returns.
                recorded.await;
            }
        })
    }
}

/// A priority lane and a normal lane over many keys, with per-key ordering across both; see
/// the [module docs](self).
#[must_use = "dropping the last handle cancels both lanes"]
pub struct KeyedPriorityFanout<K: Eq + Hash + Clone + Send + Sync + 'static, T: Send + 'static> {
    shared: Arc<Shared<K>>,
    coordinator: PriorityWorkCoordinator<Ticket<K, T>>,
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static, T: Send + 'static> Clone
    for KeyedPriorityFanout<K, T>
{
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            coordinator: self.coordinator.clone(),
        }
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static, T: Send + 'static> fmt::Debug
    for KeyedPriorityFanout<K, T>
{
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
    /// [`FanoutConfigError::RunPastMaxDefer`] if `options` set a `max_defer` with
    /// [`DeferPolicy::Run`]; [`FanoutConfigError::Coordinator`] as
    /// [`PriorityWorkCoordinator::new`]: outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(body: F, options: EphemeralOptions) -> Result<Self, FanoutConfigError>
    where
        F: Fn(K, T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        // Under `Run`, core starts an item past `max_defer` whatever the hook says: the key
        // rule could not hold.
        if runs_past_max_defer(&options) {
            return Err(FanoutConfigError::RunPastMaxDefer);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            recorded: Notify::new(),
        });
        let body = Arc::new(body);
        let hook: Arc<dyn Admission> = Arc::new(KeyTurn {
            shared: shared.clone(),
        });
        let coordinator = PriorityWorkCoordinator::with_admission(
            move |ticket: Ticket<K, T>, ctx: OperationContext| {
                let body = body.clone();
                async move {
                    let Ticket { place, key, item } = ticket;
                    // Kept until the body ends, however it ends: its drop lets the key's
                    // next item start.
                    let _place = place;
                    body(key, item, ctx).await
                }
            },
            vec![Lane::new(PRIORITY, 1), Lane::new(NORMAL, 0)],
            options,
            vec![hook],
        )?;
        Ok(Self {
            shared,
            coordinator,
        })
    }

    /// A ticket for `item`, and the guard of the `enqueue` that hands it over.
    fn ticket(&self, key: K, item: T) -> (Ticket<K, T>, Enqueuing<K>) {
        let tag = {
            let mut state = self.shared.lock();
            let tag = state.next_tag;
            state.next_tag += 1;
            state.enqueuing.insert(tag, false);
            tag
        };
        let ticket = Ticket {
            place: Place {
                shared: self.shared.clone(),
                tag,
            },
            key,
            item,
        };
        let enqueuing = Enqueuing {
            shared: self.shared.clone(),
            tag,
            recorded: false,
        };
        (ticket, enqueuing)
    }

    /// Accepts `item` for `key` through `lane`, waiting while `max_pending` items wait.
    /// The id is the item's operation.
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
        let (ticket, enqueuing) = self.ticket(key.clone(), item);
        match self.coordinator.enqueue(lane.name(), ticket).await {
            Ok(id) => Ok(enqueuing.record(key, id)),
            Err(e) => Err(rebuild(e)),
        }
    }

    /// Accepts `item` for `key` through `lane` if there is room now. The id is the item's
    /// operation.
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
        let (ticket, enqueuing) = self.ticket(key.clone(), item);
        match self.coordinator.try_enqueue(lane.name(), ticket) {
            Ok(id) => Ok(enqueuing.record(key, id)),
            Err(e) => Err(rebuild(e)),
        }
    }

    /// Items accepted for `key` that have not started yet.
    #[must_use]
    pub fn key_depth(&self, key: &K) -> usize {
        self.shared
            .lock()
            .keys
            .get(key)
            .map_or(0, |q| q.order.len())
    }

    /// Whether an item for `key` is running now (or admitted and about to).
    #[must_use]
    pub fn key_running(&self, key: &K) -> bool {
        self.shared
            .lock()
            .keys
            .get(key)
            .is_some_and(|q| q.running.is_some())
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

    /// The coordinator underneath (one operation per item), for snapshots, signals,
    /// cancelling an item by its id and concurrency changes.
    pub fn coordinator(&self) -> &PriorityWorkCoordinator<Ticket<K, T>> {
        &self.coordinator
    }
}

/// The ticket's error, carrying the user's item instead.
fn rebuild<K: Eq + Hash + Clone, T>(e: EnqueueError<Ticket<K, T>>) -> EnqueueError<T> {
    // The place, never recorded, is forgotten with the rest of the ticket.
    e.map(|ticket| ticket.item)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<K> State<K> {
        /// Entries kept for items and keys, of every kind.
        fn entries(&self) -> usize {
            self.keys.len() + self.tags.len() + self.by_id.len() + self.enqueuing.len()
        }
    }

    /// An `enqueue` dropped while it waits for room, or refused, leaves no entry behind: only
    /// the two accepted items (and their key) are kept.
    #[tokio::test(start_paused = true)]
    async fn an_abandoned_or_refused_enqueue_leaves_nothing_behind() {
        let fanout = KeyedPriorityFanout::new(
            |_key: u32, _item: u32, _ctx: OperationContext| async {
                std::future::pending::<()>().await;
                Ok::<_, String>(())
            },
            EphemeralOptions::default()
                .max_concurrency(1)
                .max_pending(1),
        )
        .unwrap();
        fanout.enqueue(FanoutLane::Normal, 0, 0).await.unwrap();
        tokio::task::yield_now().await;
        fanout.enqueue(FanoutLane::Normal, 0, 1).await.unwrap();
        let kept = fanout.shared.lock().entries();
        // One key, two tags, two ids.
        assert_eq!(kept, 5);
        for item in 2..102 {
            let waiting = fanout.enqueue(FanoutLane::Normal, 1, item);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
        }
        for item in 102..112 {
            let refused = fanout.try_enqueue(FanoutLane::Priority, 2, item);
            assert!(matches!(refused, Err(EnqueueError::Full(i)) if i == item));
        }
        assert_eq!(fanout.shared.lock().entries(), kept);
        assert_eq!(fanout.key_depth(&1), 0);
    }

    /// Whether each turn is ready now.
    fn ready(turns: &mut [Turn]) -> Vec<bool> {
        use futures::FutureExt;
        turns
            .iter_mut()
            .map(|turn| turn.as_mut().now_or_never().is_some())
            .collect()
    }

    /// A finish wakes only the key's next item, not every item waiting for the key; if that
    /// item ends before it starts (cancelled), the one after it is woken.
    #[test]
    fn a_finish_wakes_only_the_item_that_can_start() {
        let mut state = State::new();
        for tag in 0..5 {
            state.enqueuing.insert(tag, false);
            state.record(tag, 7_u32, OperationId::from_raw(tag));
        }
        assert!(state.try_start(0).is_ok());
        let mut turns: Vec<Turn> = (1..5)
            .map(|tag| state.try_start(tag).unwrap_err())
            .collect();
        assert_eq!(ready(&mut turns), [false; 4]);
        state.forget(0);
        assert_eq!(ready(&mut turns[1..]), [false; 3]);
        assert_eq!(ready(&mut turns[..1]), [true]);
        // Item 1, woken, is cancelled before it is asked again: item 2 is next.
        state.forget(1);
        assert_eq!(ready(&mut turns[2..]), [false; 2]);
        assert_eq!(ready(&mut turns[1..2]), [true]);
        assert!(state.try_start(2).is_ok());
        assert!(state.try_start(3).is_err());
    }
}
