//! Numbering per publisher and topic, and the receiver's gap detection.
//!
//! Each [`Nats`](crate::Nats) handle numbers what it publishes **per topic** (1, 2, 3, …), in
//! the [`PUB`](crate::headers::PUB) header with its publisher id. A subscriber sees every
//! message of a topic it matches, so per topic a gap in the numbers is a loss (a reconnect, a
//! slow consumer dropped by the server or the client), turned into
//! [`Lagged`](ephemeral::Lagged). Numbering per publisher alone would show false gaps
//! whenever the publisher also publishes topics the subscriber does not match.
//!
//! The first message a receiver gets from a publisher on a topic is taken as it comes: losses
//! before it cannot be told from messages published before the receiver subscribed.
//!
//! Both tables are bounded. The publisher keeps at most [`PUBLISHER_TOPICS`] topics; past
//! that it starts over under a new publisher id, which receivers take for a new publisher
//! (no false gap; a loss right at the switch goes unseen). A receiver remembers the last
//! number of at most [`RECEIVER_STREAMS`] (publisher, topic) pairs, least recently seen
//! first out; a pair seen again after eviction starts afresh, unchecked.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use ephemeral::Name;

/// Topics a publisher numbers before it starts over under a new id.
pub(crate) const PUBLISHER_TOPICS: usize = 65_536;
/// (publisher, topic) pairs a receiver tracks.
pub(crate) const RECEIVER_STREAMS: usize = 4_096;

/// A fresh random 64-bit id (std's per-process random hasher keys, the pid and the time).
pub(crate) fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(since.as_nanos());
    }
    // Never 0: 0 means "not numbered".
    h.finish().max(1)
}

/// The publisher's side.
#[derive(Debug)]
pub(crate) struct Numbering {
    id: u64,
    next: HashMap<Name, u64>,
}

impl Numbering {
    pub(crate) fn new() -> Self {
        Self {
            id: random_id(),
            next: HashMap::new(),
        }
    }

    /// The publisher id and the number of the next message on `topic`.
    pub(crate) fn next(&mut self, topic: &Name) -> (u64, u64) {
        if let Some(n) = self.next.get_mut(topic) {
            *n += 1;
            return (self.id, *n);
        }
        if self.next.len() >= PUBLISHER_TOPICS {
            self.next.clear();
            self.id = random_id();
        }
        self.next.insert(topic.clone(), 1);
        (self.id, 1)
    }
}

/// The receiver's side: the last number seen per (publisher, topic).
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    last: HashMap<(u64, Name), (u64, u64)>,
    tick: u64,
}

impl Gaps {
    /// Records message `n` of (`publisher`, `topic`); returns how many were skipped before it.
    pub(crate) fn observe(&mut self, publisher: u64, topic: &Name, n: u64) -> u64 {
        self.tick += 1;
        let tick = self.tick;
        if let Some((last, seen)) = self.last.get_mut(&(publisher, topic.clone())) {
            let gap = n.saturating_sub(*last).saturating_sub(1);
            // A number at or below the last one is a duplicate or a restart: take it as the
            // new reference, never as a loss.
            *last = n;
            *seen = tick;
            return gap;
        }
        if self.last.len() >= RECEIVER_STREAMS {
            self.evict();
        }
        self.last.insert((publisher, topic.clone()), (n, tick));
        0
    }

    /// Drops the least recently seen quarter (amortised O(1) per observation).
    fn evict(&mut self) {
        let mut ticks: Vec<u64> = self.last.values().map(|(_, seen)| *seen).collect();
        let cut = ticks.len() / 4;
        let (_, threshold, _) = ticks.select_nth_unstable(cut);
        let threshold = *threshold;
        self.last.retain(|_, (_, seen)| *seen > threshold);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn numbers_count_per_topic() {
        let mut n = Numbering::new();
        let (id, first) = n.next(&name("a"));
        assert_eq!(first, 1);
        assert_eq!(n.next(&name("a")), (id, 2));
        assert_eq!(n.next(&name("b")), (id, 1));
    }

    #[test]
    fn a_full_publisher_table_starts_over_under_a_new_id() {
        let mut n = Numbering::new();
        let (id, _) = n.next(&name("t.0"));
        for i in 1..PUBLISHER_TOPICS {
            n.next(&name(&format!("t.{i}")));
        }
        let (new_id, first) = n.next(&name("t.new"));
        assert_ne!(new_id, id);
        assert_eq!(first, 1);
        assert_eq!(n.next(&name("t.0")), (new_id, 1));
    }

    #[test]
    fn gaps_are_counted_and_duplicates_are_not() {
        let mut g = Gaps::default();
        let t = name("a");
        assert_eq!(g.observe(1, &t, 5), 0, "first sighting is unchecked");
        assert_eq!(g.observe(1, &t, 6), 0);
        assert_eq!(g.observe(1, &t, 9), 2);
        assert_eq!(g.observe(1, &t, 9), 0);
        assert_eq!(g.observe(1, &t, 1), 0, "restart");
        assert_eq!(g.observe(1, &t, 3), 1);
        assert_eq!(g.observe(2, &t, 7), 0, "another publisher");
        assert_eq!(g.observe(1, &name("b"), 4), 0, "another topic");
    }

    #[test]
    fn the_receiver_table_is_bounded_and_keeps_the_recent() {
        let mut g = Gaps::default();
        let hot = name("hot");
        for i in 0..(RECEIVER_STREAMS as u64 * 3) {
            g.observe(i + 10, &name("cold"), 1);
            g.observe(1, &hot, i + 1);
        }
        assert!(g.len() <= RECEIVER_STREAMS);
        assert_eq!(g.observe(1, &hot, RECEIVER_STREAMS as u64 * 3 + 2), 1);
    }
}
