//! Who hears about a name: subscriptions, watches and listeners, routed per name.
//!
//! Registrations are few and change rarely; raises are many. So the set of targets a name is
//! routed to is computed once per name (testing every registration's pattern once) and cached
//! on the name's entry together with the registry's epoch; any registration change bumps the
//! epoch, and each name recomputes its route lazily the next time it is raised. A raise of a
//! known name therefore tests no pattern at all.

use std::sync::Arc;

use super::listener::ListenerShared;
use super::subscription::SubShared;
use super::watch::WatchShared;
use crate::Pattern;

/// One registered receiver.
#[derive(Clone)]
pub(crate) enum Target {
    Subscriber(Arc<SubShared>),
    Watcher(Arc<WatchShared>),
    Listener(Arc<ListenerShared>),
}

/// A name's cached route.
#[derive(Clone, Default)]
pub(crate) struct Route {
    epoch: u64,
    targets: Option<Arc<[Target]>>,
}

/// Every registration of a sink.
#[derive(Default)]
pub(crate) struct Registry {
    next_id: u64,
    /// Starts at 1 so that a fresh `Route` (epoch 0) is always stale.
    epoch: u64,
    entries: Vec<(u64, Pattern, Target)>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            next_id: 1,
            epoch: 1,
            entries: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, pattern: Pattern, target: Target) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push((id, pattern, target));
        self.epoch += 1;
        id
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Target> {
        let at = self.entries.iter().position(|(i, _, _)| *i == id)?;
        let (_, _, target) = self.entries.swap_remove(at);
        self.epoch += 1;
        Some(target)
    }

    /// Whether nothing is registered (no raise needs routing).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn targets(&self) -> impl Iterator<Item = (&Pattern, &Target)> {
        self.entries.iter().map(|(_, p, t)| (p, t))
    }

    /// The targets `name` is routed to, from `route`'s cache when it is current: each ring
    /// once, however many subscriptions read it.
    pub(crate) fn route(&self, route: &mut Route, name: &str) -> Option<Arc<[Target]>> {
        if self.entries.is_empty() {
            return None;
        }
        if route.epoch != self.epoch {
            let mut targets: Vec<Target> = Vec::new();
            for (_, pattern, target) in &self.entries {
                if !pattern.matches(name) {
                    continue;
                }
                // Subscriptions sharing a ring are reached by one push into it.
                if let Target::Subscriber(sub) = target
                    && targets.iter().any(|t| {
                        matches!(t, Target::Subscriber(other) if Arc::ptr_eq(&other.ring, &sub.ring))
                    })
                {
                    continue;
                }
                targets.push(target.clone());
            }
            route.targets = (!targets.is_empty()).then(|| Arc::from(targets));
            route.epoch = self.epoch;
        }
        route.targets.clone()
    }

    /// Counts of each kind of registration: (subscriptions, watches, listeners).
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for (_, _, target) in &self.entries {
            match target {
                Target::Subscriber(_) => counts.0 += 1,
                Target::Watcher(_) => counts.1 += 1,
                Target::Listener(_) => counts.2 += 1,
            }
        }
        counts
    }
}
