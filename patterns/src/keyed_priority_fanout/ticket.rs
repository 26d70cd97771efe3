//! `Ticket`: an accepted item as the coordinator underneath carries it, and the guards that
//! keep the key queues in step with it.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use ephemeral::OperationId;

use super::FanoutLane;
use super::state::Shared;

/// One accepted item as the coordinator underneath carries it: the item with its key and
/// its place in the key's queue. Opaque; it exists so that
/// [`KeyedPriorityFanout::coordinator`](super::KeyedPriorityFanout::coordinator) can be named.
///
/// When its operation ends, however it ends (ran, failed, panicked, aborted, or cancelled or
/// refused before it started), its key's queue forgets the item.
pub struct Ticket<K: Eq + Hash + Clone, T> {
    pub(super) place: Place<K>,
    pub(super) key: K,
    pub(super) item: T,
}

impl<K: Eq + Hash + Clone, T> fmt::Debug for Ticket<K, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("tag", &self.place.tag)
            .finish_non_exhaustive()
    }
}

/// A ticket's place in its key's queue, forgotten when dropped.
pub(super) struct Place<K: Eq + Hash + Clone> {
    pub(super) shared: Arc<Shared<K>>,
    pub(super) tag: u64,
}

impl<K: Eq + Hash + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        self.shared.lock().forget(self.tag);
    }
}

/// An `enqueue` under way: dropped before it recorded its item, it removes its tag from
/// [`State::enqueuing`](super::state::State::enqueuing), so an `enqueue` refused, or dropped
/// while it waits for room, leaves nothing behind.
pub(super) struct Enqueuing<K> {
    pub(super) shared: Arc<Shared<K>>,
    pub(super) tag: u64,
    pub(super) recorded: bool,
}

impl<K: Eq + Hash + Clone> Enqueuing<K> {
    /// Records the accepted item in its key's queue, unless its ticket already ended.
    pub(super) fn record(mut self, key: K, lane: FanoutLane, id: OperationId) -> OperationId {
        self.shared.lock().record(self.tag, key, lane, id);
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
