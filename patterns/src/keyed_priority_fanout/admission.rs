//! `KeyTurn`: the admission hook that lets an item start only on its key's turn.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;

#[cfg(doc)]
use super::state::State;
use super::state::{Shared, Verdict};

/// The admission hook: an item starts only when first in its key's queue, its key idle,
/// and no item that outranks it is on its way back to the coordinator's queue (see
/// [`State::decide`](super::state::State::decide)).
pub(super) struct KeyTurn<K> {
    pub(super) shared: Arc<Shared<K>>,
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
                let decided = {
                    let mut state = self.shared.lock();
                    let tag = state.by_id.get(&request.id).copied();
                    tag.map(|tag| (tag, state.decide(tag)))
                };
                match decided {
                    Some((_, Verdict::Start)) => return Decision::Admit,
                    Some((tag, Verdict::Wait(turn))) => {
                        let shared = self.shared.clone();
                        return Decision::defer(async move {
                            turn.await;
                            // Core requeues the item as soon as this returns.
                            shared.lock().back(tag);
                        });
                    }
                    Some((_, Verdict::Hold(changed))) => changed.await,
                    // Accepted a moment ago: `enqueue` records it as soon as it returns.
                    None => recorded.await,
                }
            }
        })
    }
}
