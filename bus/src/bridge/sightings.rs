//! Which bridged signals each sink has raised, so that a signal reaching a sink along two
//! paths is raised there once.
//!
//! A sighting is remembered until its signal would have expired, and a sink remembers at
//! most as many as its capacity: it cannot hold more live signals than that, so a sighting
//! past it guards a signal the sink has already pushed out. Without that bound the table
//! grew with rate × time to live, whatever the sinks' capacities (about 600,000 sightings
//! at 10,000 bridged signals a second and the default minute of max age, for sinks holding
//! 1,000 signals each).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use tokio::time::Instant;

/// A bridged signal: its origin and origin sequence.
pub(crate) type Signal = (u64, u64);

/// The sightings of every sink of this process.
#[derive(Default)]
pub(crate) struct Sightings {
    sinks: HashMap<u64, SinkSightings>,
}

/// The sightings of one sink. Each sighting has a number (`generation`), so that the
/// forgotten entries `order` and `expiry` still hold are told apart from a later sighting
/// of the same signal (a copy arriving after the first was forgotten is new again).
#[derive(Default)]
struct SinkSightings {
    /// The remembered signals, with when each would have expired and its number.
    live: HashMap<Signal, (Instant, u64)>,
    /// The same, first seen first (forgotten ones are skipped).
    order: VecDeque<(Signal, u64)>,
    /// The same, soonest expiry first (forgotten ones are skipped).
    expiry: BinaryHeap<Reverse<(Instant, Signal, u64)>>,
    next: u64,
}

impl Sightings {
    /// Records `signal` raised in `sink` at `now`, alive until `until`; false if it was
    /// already raised there (it came along another path). Every sink first forgets the
    /// sightings whose time came, and `sink` then forgets its oldest while it remembers more
    /// than `bound` (its capacity).
    pub(crate) fn first(
        &mut self,
        sink: u64,
        signal: Signal,
        until: Instant,
        now: Instant,
        bound: usize,
    ) -> bool {
        self.sinks.retain(|_, s| {
            s.forget_expired(now);
            !s.live.is_empty()
        });
        let s = self.sinks.entry(sink).or_default();
        if s.live.contains_key(&signal) {
            return false;
        }
        let generation = s.next;
        s.next += 1;
        s.live.insert(signal, (until, generation));
        s.order.push_back((signal, generation));
        s.expiry.push(Reverse((until, signal, generation)));
        while s.live.len() > bound.max(1) {
            let Some((oldest, generation)) = s.order.pop_front() else {
                break;
            };
            s.forget(oldest, generation);
        }
        s.compact();
        true
    }

    /// How many sightings are remembered, for every sink.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.sinks.values().map(|s| s.live.len()).sum()
    }

    /// How many entries the sinks' queues hold, forgotten ones included.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.sinks
            .values()
            .map(|s| s.order.len() + s.expiry.len())
            .sum()
    }
}

impl SinkSightings {
    /// Forgets `signal` if `generation` is its current sighting.
    fn forget(&mut self, signal: Signal, generation: u64) {
        if self
            .live
            .get(&signal)
            .is_some_and(|&(_, g)| g == generation)
        {
            self.live.remove(&signal);
        }
    }

    /// Forgets the sightings whose signals expired by `now`, soonest first.
    fn forget_expired(&mut self, now: Instant) {
        while let Some(&Reverse((at, signal, generation))) = self.expiry.peek() {
            if at > now {
                break;
            }
            self.expiry.pop();
            self.forget(signal, generation);
        }
    }

    /// Drops the forgotten entries at the front of `order`, and rebuilds either queue once
    /// forgotten entries are more than half of it (forgotten by count, an expiry entry stays
    /// until its time; forgotten by expiry, an order entry stays behind an older live one):
    /// both stay within twice the remembered sightings, plus a constant.
    fn compact(&mut self) {
        while let Some(&(signal, generation)) = self.order.front() {
            if self
                .live
                .get(&signal)
                .is_some_and(|&(_, g)| g == generation)
            {
                break;
            }
            self.order.pop_front();
        }
        let limit = 2 * self.live.len() + 64;
        if self.order.len() > limit {
            let live = &self.live;
            self.order
                .retain(|(s, g)| live.get(s).is_some_and(|&(_, lg)| lg == *g));
        }
        if self.expiry.len() > limit {
            self.expiry = self
                .live
                .iter()
                .map(|(&signal, &(until, generation))| Reverse((until, signal, generation)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A signal is raised once per sink until it would have expired, and the table forgets
    /// each sighting exactly then, soonest first, whatever order they came in.
    #[test]
    fn sightings_are_forgotten_exactly_when_their_signals_expire() {
        let mut t = Sightings::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Ten signals living 10, 9, ..., 1 s; the sink 2 copy of one is its own sighting.
        for seq in 0..10 {
            assert!(t.first(1, (7, seq), at(10 - seq), t0, 1000));
        }
        assert!(t.first(2, (7, 0), at(10), t0, 1000));
        assert!(!t.first(1, (7, 3), at(10), t0, 1000), "a second path");
        assert_eq!(t.len(), 11);
        // At 5 s the five that lived 1..=5 s are gone, none else.
        assert!(!t.first(1, (7, 0), at(20), at(5), 1000));
        assert_eq!(t.len(), 6);
        assert!(t.sinks[&1].live.contains_key(&(7, 4)));
        assert!(!t.sinks[&1].live.contains_key(&(7, 9)));
        // Once its time came, the same signal is new again (a late copy after expiry).
        assert!(t.first(1, (7, 9), at(30), at(5), 1000));
        assert!(t.first(3, (1, 1), at(40), at(10), 1000));
        assert_eq!(t.len(), 2, "sink 1 keeps (7, 9), sink 3 its own");
        assert!(
            !t.sinks.contains_key(&2),
            "a sink with nothing left is forgotten"
        );
    }

    /// A sink remembers at most `bound` sightings, the newest: the oldest is forgotten first
    /// (a late copy of it is raised again), a newer one is still recognised.
    #[test]
    fn a_sink_remembers_at_most_its_capacity_newest_first() {
        let mut t = Sightings::default();
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(60);
        for seq in 0..5 {
            assert!(t.first(1, (7, seq), until, t0, 3));
        }
        assert_eq!(t.len(), 3);
        assert!(
            !t.first(1, (7, 4), until, t0, 3),
            "a newer one is recognised"
        );
        assert!(t.first(1, (7, 0), until, t0, 3), "the oldest was forgotten");
        assert!(!t.first(1, (7, 0), until, t0, 3));
        assert!(t.first(2, (7, 0), until, t0, 3), "another sink's own bound");
        assert_eq!(t.len(), 4);
    }

    /// At a steady rate, with one long-lived signal in front of many short-lived ones and a
    /// small bound, what the table holds stays bounded by the bound, not by the rate.
    #[test]
    fn what_the_table_holds_stays_bounded_at_any_rate() {
        let mut t = Sightings::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(t.first(1, (9, 0), ms(3_600_000), t0, 100));
        for seq in 1..100_000 {
            // One a millisecond, each living 50 ms, and a bound of 100.
            assert!(t.first(1, (7, seq), ms(seq + 50), ms(seq), 100));
            assert!(t.len() <= 100);
            assert!(t.entries() <= 2 * (2 * 100 + 64), "{}", t.entries());
        }
        // The long-lived one, never past the bound (about 50 live at a time), is remembered.
        assert!(!t.first(1, (9, 0), ms(3_600_000), ms(100_000), 100));
    }
}
