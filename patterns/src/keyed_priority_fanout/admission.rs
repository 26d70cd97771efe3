//! `KeyTurn`: the admission hook that lets an item start only on its key's turn.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;

use super::state::Shared;

/// The admission hook: an item starts only when first in its key's queue, its key idle.
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
