//! `Registration`: the guard every receiver of a sink holds — subscriptions, watches and
//! listeners alike.

use std::sync::{Arc, Weak};

use super::inner::Inner;
use super::routes::Target;
use crate::Pattern;

/// One entry in a sink's routing registry, removed when the guard is dropped.
///
/// It holds the sink weakly: a receiver never keeps the sink it listens to alive (see "Which
/// handles keep a sink alive" in the crate docs), and a listener whose callback captures a
/// handle of its own sink makes no reference cycle through its guard.
pub(crate) struct Registration {
    sink: Weak<Inner>,
    id: u64,
}

impl Registration {
    /// Registers `target` for the names matching `pattern`.
    pub(crate) fn new(inner: &Arc<Inner>, pattern: Pattern, target: Target) -> Self {
        let id = inner.lock().registry.add(pattern, target);
        Self::registered(inner, id)
    }

    /// The guard of registration `id`, made by the caller under the sink's lock.
    pub(crate) fn registered(inner: &Arc<Inner>, id: u64) -> Self {
        Self {
            sink: Arc::downgrade(inner),
            id,
        }
    }

    /// The sink, while some handle keeps it alive.
    pub(crate) fn sink(&self) -> Option<Arc<Inner>> {
        self.sink.upgrade()
    }

    /// Leaves the target registered for as long as the sink lives.
    pub(crate) fn detach(mut self) {
        // An empty `Weak` upgrades to nothing, so the drop below unregisters nothing.
        self.sink = Weak::new();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.sink.upgrade() {
            inner.unregister(self.id);
        }
    }
}
