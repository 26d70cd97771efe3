//! The fan-out's bookkeeping: each key's queue of items, and where each accepted item is.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use ephemeral::OperationId;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

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
    running: bool,
    /// Set while the item is put aside waiting for its key; notified (and cleared) once it
    /// can start: first in its key's queue, its key idle. Only that item is woken, so a
    /// key's finish costs one wake-up however many items wait for the key.
    turn: Option<Arc<Notify>>,
}

/// What an item put aside waits for: its turn, enabled before the state can change again.
pub(super) type Turn = Pin<Box<OwnedNotified>>;

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
}

impl<K: Eq + Hash + Clone> State<K> {
    pub(super) fn new() -> Self {
        Self {
            next_tag: 0,
            keys: HashMap::new(),
            tags: HashMap::new(),
            by_id: HashMap::new(),
            enqueuing: HashMap::new(),
        }
    }

    /// Records an accepted item, unless its ticket already ended.
    pub(super) fn record(&mut self, tag: u64, key: K, id: OperationId) {
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
    pub(super) fn try_start(&mut self, tag: u64) -> Result<(), Turn> {
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
    pub(super) fn forget(&mut self, tag: u64) {
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
