//! `KeyedPriorityFanout`: the handle that accepts items and runs them on the coordinator.

use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use ephemeral::{
    Admission, CoordinatorStats, EnqueueError, EphemeralOptions, IntakeError, Lane,
    OperationContext, OperationId, PriorityWorkCoordinator,
};
use tokio::sync::Notify;

use super::admission::KeyTurn;
use super::error::{FanoutConfigError, runs_past_max_defer};
use super::state::{Shared, State};
use super::ticket::{Enqueuing, Place, Ticket};
use super::{FanoutLane, NORMAL, PRIORITY};

/// A priority lane and a normal lane over many keys, with per-key ordering across both; see
/// the [module docs](super).
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
    /// [`DeferPolicy::Run`](ephemeral::DeferPolicy::Run); [`FanoutConfigError::Coordinator`] as
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
        let accepted = self.coordinator.enqueue(lane.name(), ticket).await;
        settle(enqueuing, key, lane, accepted)
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
        let accepted = self.coordinator.try_enqueue(lane.name(), ticket);
        settle(enqueuing, key, lane, accepted)
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

/// What an `enqueue` of a ticket came to: accepted, the item recorded in its key's queue;
/// refused, the item handed back (the place, never recorded, is forgotten with the rest of
/// the ticket, and `enqueuing`'s guard removes its tag).
fn settle<K: Eq + Hash + Clone, T>(
    enqueuing: Enqueuing<K>,
    key: K,
    lane: FanoutLane,
    accepted: Result<OperationId, EnqueueError<Ticket<K, T>>>,
) -> Result<OperationId, EnqueueError<T>> {
    match accepted {
        Ok(id) => Ok(enqueuing.record(key, lane, id)),
        Err(e) => Err(e.map(|ticket| ticket.item)),
    }
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
}
