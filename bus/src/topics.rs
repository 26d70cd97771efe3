//! Per-topic counters, in a bounded table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use ephemeral::Name;

/// At most this many topics get counters of their own; the rest share one `(other)` entry.
pub(crate) const MAX_TOPICS: usize = 1024;

/// Counters of one topic.
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// Messages published and received on one topic by one bus handle.
///
/// Rates come from two snapshots: `(b.published - a.published) / (b.uptime - a.uptime)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TopicStats {
    /// The topic, or `(other)` for topics beyond the first 1024 seen.
    pub topic: String,
    /// Messages this handle published on it (a publish refused with an error is not
    /// counted, as in [`BusStats::published`](crate::BusStats::published)).
    pub published: u64,
    /// Messages this handle received on it from other peers.
    pub received: u64,
}

#[derive(Default)]
pub(crate) struct Topics {
    table: Mutex<HashMap<Name, Arc<TopicCounters>>>,
    other: Arc<TopicCounters>,
}

impl Topics {
    pub(crate) fn counters(&self, topic: &Name) -> Arc<TopicCounters> {
        let mut table = self.table.lock();
        if let Some(c) = table.get(topic) {
            return Arc::clone(c);
        }
        if table.len() >= MAX_TOPICS {
            return Arc::clone(&self.other);
        }
        let c = Arc::new(TopicCounters::default());
        table.insert(topic.clone(), Arc::clone(&c));
        c
    }

    pub(crate) fn snapshot(&self) -> Vec<TopicStats> {
        let table = self.table.lock();
        let mut out: Vec<TopicStats> = table
            .iter()
            .map(|(name, c)| stats(name.as_str(), c))
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        let other = stats("(other)", &self.other);
        if other.published + other.received > 0 {
            out.push(other);
        }
        out
    }
}

fn stats(topic: &str, c: &TopicCounters) -> TopicStats {
    TopicStats {
        topic: topic.to_owned(),
        published: c.published.load(Ordering::Relaxed),
        received: c.received.load(Ordering::Relaxed),
    }
}
