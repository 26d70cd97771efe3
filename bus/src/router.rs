//! The local subscriptions of one bus handle, and delivery to them.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ephemeral::Name;
use tokio::time::Instant;

use crate::Message;
use crate::subscription::LocalSub;
use crate::topics::Topics;

/// The subscriptions of this peer. Read on every delivery (lock-free snapshot), written on
/// subscribe and unsubscribe (rare), hence a whole-table swap.
#[derive(Default)]
pub(crate) struct Locals {
    subs: ArcSwap<Vec<Arc<LocalSub>>>,
    write: Mutex<()>,
    pub(crate) topics: Topics,
}

impl Locals {
    pub(crate) fn add(&self, sub: Arc<LocalSub>) {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Vec::clone(&self.subs.load());
        next.push(sub);
        self.subs.store(Arc::new(next));
    }

    pub(crate) fn remove(&self, id: u64) {
        let _guard = self
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Vec::clone(&self.subs.load());
        next.retain(|s| s.id != id);
        self.subs.store(Arc::new(next));
    }

    /// One entry per subscription, as announced to the other peers.
    pub(crate) fn patterns(&self) -> Vec<String> {
        self.subs
            .load()
            .iter()
            .map(|s| s.pattern.as_str().to_owned())
            .collect()
    }

    pub(crate) fn all(&self) -> Arc<Vec<Arc<LocalSub>>> {
        self.subs.load_full()
    }

    /// Delivers `message` to every matching subscription; returns how many buffered it.
    pub(crate) async fn dispatch(
        &self,
        message: &Message,
        deadline: Option<Instant>,
        skip: Option<u64>,
    ) -> usize {
        let subs = self.subs.load_full();
        let mut reached = 0;
        for sub in subs
            .iter()
            .filter(|s| Some(s.id) != skip && s.pattern.matches(&message.topic))
        {
            if sub.push(message.clone(), deadline).await {
                reached += 1;
            }
        }
        reached
    }

    /// [`dispatch`](Self::dispatch) for a message nobody else needs: the last matching
    /// subscription gets it without a clone (the common case: one subscription).
    pub(crate) async fn dispatch_owned(&self, message: Message) -> usize {
        let subs = self.subs.load_full();
        let mut matching = subs.iter().filter(|s| s.pattern.matches(&message.topic));
        let Some(mut current) = matching.next() else {
            return 0;
        };
        let mut reached = 0;
        for next in matching {
            if current.push(message.clone(), None).await {
                reached += 1;
            }
            current = next;
        }
        if current.push(message, None).await {
            reached += 1;
        }
        reached
    }

    /// Whether any subscription here matches `topic`.
    pub(crate) fn any_matching(&self, topic: &str) -> bool {
        self.subs.load().iter().any(|s| s.pattern.matches(topic))
    }

    /// Whether a local subscription is to exactly `topic` (a request server's).
    pub(crate) fn any_exact(&self, topic: &str) -> bool {
        self.subs.load().iter().any(|s| s.pattern.as_str() == topic)
    }

    /// Delivers `message` to the first subscription to exactly its topic only (a request to
    /// a server; a wildcard watcher is never taken for one).
    pub(crate) async fn dispatch_one(&self, message: &Message, deadline: Instant) -> bool {
        let subs = self.subs.load_full();
        match subs
            .iter()
            .find(|s| s.pattern.as_str() == message.topic.as_str())
        {
            Some(sub) => sub.push(message.clone(), Some(deadline)).await,
            None => false,
        }
    }

    pub(crate) fn lag(&self, topic: &Name, count: u64) {
        for sub in self.subs.load().iter().filter(|s| s.pattern.matches(topic)) {
            sub.add_lag(count);
        }
    }

    pub(crate) fn close_all(&self) {
        for sub in self.subs.load().iter() {
            sub.close();
        }
    }
}
