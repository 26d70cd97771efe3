//! The fan-out's bookkeeping: each key's queue of items, and where each accepted item is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::OperationId;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::FanoutLane;

/// One key's items: the tags of its accepted items not started yet, in acceptance order,
/// and the one admitted or running.
pub(super) struct KeyQueue {
    pub(super) order: VecDeque<u64>,
    pub(super) running: Option<u64>,
}

/// Where an accepted item is.
pub(super) struct Tagged<K> {
    key: K,
    id: OperationId,
    lane: FanoutLane,
    stage: Stage,
}

impl<K> Tagged<K> {
    /// Its rank among items that may start: priority before normal, then oldest first.
    fn rank(&self) -> Rank {
        (self.lane == FanoutLane::Normal, self.id)
    }
}

/// Priority items (`false`) before normal ones, then by operation id (acceptance order).
type Rank = (bool, OperationId);

/// Where an accepted item is in its life.
enum Stage {
    /// In the coordinator's queue, or being asked about.
    Queued,
    /// Put aside by the hook, holding no slot, until notified: when its key's turn comes
    /// (first in its key's queue, its key idle), or when the item it gave way to is asked
    /// again. Only that item is woken, so a key's finish costs one wake-up however many
    /// items wait for the key.
    Aside(Arc<Notify>),
    /// Woken from aside, on its way back to the front of its lane in the coordinator's
    /// queue; `back` once its deferral ended (core requeues it at once). Items it outranks
    /// give way to it meanwhile: core's worker may ask about them first.
    Returning { back: bool },
    /// Admitted: running, or about to.
    Running,
}

/// What an item waits on: notified once, enabled before the state can change again.
pub(super) type Turn = Pin<Box<OwnedNotified>>;

/// What the admission hook makes of an item.
pub(super) enum Verdict {
    /// It starts; its key counts it as running.
    Start,
    /// It is put aside until the turn is notified (then asked again).
    Wait(Turn),
    /// An item that outranks it is on its way back to the coordinator's queue: the hook
    /// waits (a moment, holding the slot) until the turn is notified, then asks again.
    Hold(Turn),
}

/// A fresh turn and what notifies it.
fn turn() -> (Arc<Notify>, Turn) {
    let notify = Arc::new(Notify::new());
    let mut turn = Box::pin(notify.clone().notified_owned());
    turn.as_mut().enable();
    (notify, turn)
}

pub(super) struct State<K> {
    pub(super) next_tag: u64,
    pub(super) keys: HashMap<K, KeyQueue>,
    /// Accepted items, by tag.
    pub(super) tags: HashMap<u64, Tagged<K>>,
    /// The tag of each accepted item's operation, for the admission hook (which sees ids).
    pub(super) by_id: HashMap<OperationId, u64>,
    /// Tags whose `enqueue` has not returned yet, each with whether its ticket already
    /// ended (refused by a rule the moment it was accepted): `enqueue` then records nothing.
    /// An `enqueue` removes its tag however it ends, dropped while waiting for room too.
    pub(super) enqueuing: HashMap<u64, bool>,
    /// The tags of the items in [`Stage::Returning`], by rank.
    returning: BTreeMap<Rank, u64>,
    /// For a returning item, the items put aside until it is asked again (or ends).
    giving_way: HashMap<u64, Vec<u64>>,
    /// Notified when an item's return ends (back, asked again, or ended): for hooks that
    /// hold an item until then.
    changed: Arc<Notify>,
}

impl<K: Eq + Hash + Clone> State<K> {
    pub(super) fn new() -> Self {
        Self {
            next_tag: 0,
            keys: HashMap::new(),
            tags: HashMap::new(),
            by_id: HashMap::new(),
            enqueuing: HashMap::new(),
            returning: BTreeMap::new(),
            giving_way: HashMap::new(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Records an accepted item, unless its ticket already ended.
    pub(super) fn record(&mut self, tag: u64, key: K, lane: FanoutLane, id: OperationId) {
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
                lane,
                stage: Stage::Queued,
            },
        );
        self.by_id.insert(id, tag);
    }

    /// Decides on item `tag`, which core's worker took from the queue: it starts if it is
    /// first in its key's queue, its key idle, and no item that outranks it is on its way
    /// back; otherwise it waits for its key, or gives way to the returning item.
    pub(super) fn decide(&mut self, tag: u64) -> Verdict {
        if !self.tags.contains_key(&tag) {
            // Gone already (its ticket ended): let the coordinator settle it.
            return Verdict::Start;
        }
        self.arrive(tag);
        let Some(tagged) = self.tags.get(&tag) else {
            return Verdict::Start;
        };
        let startable = self
            .keys
            .get(&tagged.key)
            .is_some_and(|q| q.running.is_none() && q.order.front() == Some(&tag));
        if !startable {
            return Verdict::Wait(self.put_aside(tag));
        }
        if let Some((_, &first)) = self.returning.range(..tagged.rank()).next() {
            let back = matches!(
                self.tags.get(&first).map(|t| &t.stage),
                Some(Stage::Returning { back: true })
            );
            if !back {
                // Its deferral is ending: core requeues it in a moment, at the front of
                // its lane. Put aside now, this item would come back after it anyway, but
                // core's worker would take (and put aside) every item queued meanwhile.
                let mut changed = Box::pin(self.changed.clone().notified_owned());
                changed.as_mut().enable();
                return Verdict::Hold(changed);
            }
            self.giving_way.entry(first).or_default().push(tag);
            return Verdict::Wait(self.put_aside(tag));
        }
        let Some(tagged) = self.tags.get_mut(&tag) else {
            return Verdict::Start;
        };
        if let Some(queue) = self.keys.get_mut(&tagged.key) {
            queue.order.pop_front();
            queue.running = Some(tag);
        }
        tagged.stage = Stage::Running;
        Verdict::Start
    }

    /// Puts item `tag` aside: its turn, notified by [`wake`](Self::wake).
    fn put_aside(&mut self, tag: u64) -> Turn {
        let (notify, turn) = turn();
        if let Some(tagged) = self.tags.get_mut(&tag) {
            tagged.stage = Stage::Aside(notify);
        }
        turn
    }

    /// Wakes item `tag` if it is put aside: it returns to the coordinator's queue.
    fn wake(&mut self, tag: u64) {
        let Some(tagged) = self.tags.get_mut(&tag) else {
            return;
        };
        if let Stage::Aside(notify) = &tagged.stage {
            // A permit is kept if the turn is not awaited yet.
            notify.notify_one();
            tagged.stage = Stage::Returning { back: false };
            self.returning.insert(tagged.rank(), tag);
        }
    }

    /// Item `tag`'s deferral ended: it is back in the coordinator's queue (or about to be).
    pub(super) fn back(&mut self, tag: u64) {
        if let Some(Tagged {
            stage: Stage::Returning { back },
            ..
        }) = self.tags.get_mut(&tag)
        {
            *back = true;
            self.changed.notify_waiters();
        }
    }

    /// Item `tag` is asked about (or ended): if it was returning, its return ends, and the
    /// items that gave way to it are woken.
    fn arrive(&mut self, tag: u64) {
        let Some(tagged) = self.tags.get_mut(&tag) else {
            return;
        };
        if let Stage::Returning { .. } = tagged.stage {
            tagged.stage = Stage::Queued;
            self.returning.remove(&tagged.rank());
            self.changed.notify_waiters();
        }
        for waiting in self.giving_way.remove(&tag).unwrap_or_default() {
            self.wake(waiting);
        }
    }

    /// Forgets item `tag` (it ran, or ended without running): its key's next item may
    /// start, and is woken if it waits; a key with nothing left is forgotten.
    pub(super) fn forget(&mut self, tag: u64) {
        if !self.tags.contains_key(&tag) {
            // Not recorded (yet): an `enqueue` still running records nothing; one that
            // ended, refused or dropped, removed the tag already.
            if let Some(ended) = self.enqueuing.get_mut(&tag) {
                *ended = true;
            }
            return;
        }
        self.arrive(tag);
        let Some(tagged) = self.tags.remove(&tag) else {
            return;
        };
        self.by_id.remove(&tagged.id);
        let Some(queue) = self.keys.get_mut(&tagged.key) else {
            return;
        };
        if let Stage::Running = tagged.stage {
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
        self.wake(next);
    }
}

pub(super) struct Shared<K> {
    pub(super) state: Mutex<State<K>>,
    /// Woken when `enqueue` records an item, for a hook asked about it first.
    pub(super) recorded: Notify,
}

impl<K> Shared<K> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state is only changed in short sections that cannot panic half-way.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether each turn is ready now.
    fn ready(turns: &mut [Turn]) -> Vec<bool> {
        use futures::FutureExt;
        turns
            .iter_mut()
            .map(|turn| turn.as_mut().now_or_never().is_some())
            .collect()
    }

    fn accept(state: &mut State<u32>, tag: u64, key: u32, lane: FanoutLane) {
        state.enqueuing.insert(tag, false);
        state.record(tag, key, lane, OperationId::from_raw(tag));
    }

    fn wait(verdict: Verdict) -> Turn {
        match verdict {
            Verdict::Wait(turn) => turn,
            _ => panic!("expected Wait"),
        }
    }

    /// A finish wakes only the key's next item, not every item waiting for the key; if that
    /// item ends before it starts (cancelled), the one after it is woken.
    #[test]
    fn a_finish_wakes_only_the_item_that_can_start() {
        let mut state = State::new();
        for tag in 0..5 {
            accept(&mut state, tag, 7, FanoutLane::Normal);
        }
        assert!(matches!(state.decide(0), Verdict::Start));
        let mut turns: Vec<Turn> = (1..5).map(|tag| wait(state.decide(tag))).collect();
        assert_eq!(ready(&mut turns), [false; 4]);
        state.forget(0);
        assert_eq!(ready(&mut turns[1..]), [false; 3]);
        assert_eq!(ready(&mut turns[..1]), [true]);
        // Item 1, woken, is cancelled before it is asked again: item 2 is next.
        state.forget(1);
        assert_eq!(ready(&mut turns[2..]), [false; 2]);
        assert_eq!(ready(&mut turns[1..2]), [true]);
        assert!(matches!(state.decide(2), Verdict::Start));
        assert!(matches!(state.decide(3), Verdict::Wait(_)));
    }

    /// A startable item waits while an item that outranks it returns (a moment, while the
    /// return's deferral ends; then it gives way until that item is asked again); it does
    /// not wait for an item that ended.
    #[test]
    fn a_startable_item_gives_way_to_a_returning_item_that_outranks_it() {
        let mut state = State::new();
        accept(&mut state, 0, 1, FanoutLane::Normal);
        accept(&mut state, 1, 1, FanoutLane::Normal);
        accept(&mut state, 2, 2, FanoutLane::Normal);
        accept(&mut state, 3, 3, FanoutLane::Priority);
        let mut aside = vec![wait(state.decide(1))];
        assert!(matches!(state.decide(0), Verdict::Start));
        state.forget(0);
        assert_eq!(ready(&mut aside), [true]);
        // Item 1 returns: item 2 (normal, younger, another key) holds until it is back,
        let Verdict::Hold(changed) = state.decide(2) else {
            panic!("expected Hold")
        };
        let mut holds = vec![changed];
        assert_eq!(ready(&mut holds), [false]);
        state.back(1);
        assert_eq!(ready(&mut holds), [true]);
        // then gives way until item 1 is asked again; item 3 (priority) does not.
        let mut gave_way = vec![wait(state.decide(2))];
        assert!(matches!(state.decide(3), Verdict::Start));
        assert_eq!(ready(&mut gave_way), [false]);
        assert!(matches!(state.decide(1), Verdict::Start));
        assert_eq!(ready(&mut gave_way), [true]);
        assert!(matches!(state.decide(2), Verdict::Start));
        assert!(state.returning.is_empty() && state.giving_way.is_empty());

        // A returning item that ends (cancelled) releases an item holding for it.
        accept(&mut state, 4, 1, FanoutLane::Priority);
        accept(&mut state, 5, 4, FanoutLane::Normal);
        let _aside = wait(state.decide(4));
        state.forget(1);
        let Verdict::Hold(changed) = state.decide(5) else {
            panic!("expected Hold")
        };
        let mut holds = vec![changed];
        state.forget(4);
        assert_eq!(ready(&mut holds), [true]);
        assert!(matches!(state.decide(5), Verdict::Start));
        assert!(state.returning.is_empty() && state.giving_way.is_empty());
    }
}
