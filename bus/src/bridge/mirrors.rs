//! What the bridges of this process share: the signals already raised in each sink (so a
//! signal reaching a sink along two paths is raised once) and the holds mirrored into each
//! sink (so a hold reaching it along two paths is held once, and lapses when its holder's
//! refreshes stop, whatever the topology).
//!
//! # Why refresh numbers
//!
//! A holder stamps every refresh with a number from its process ([`next_refresh`], strictly
//! increasing); bridges that forward a mirrored hold pass the number on unchanged. A mirror's
//! lease is extended only by a refresh *newer* than the last it took. In a ring, the same
//! refresh comes back around: it is not newer, so it extends nothing. Without this, two
//! forwarders in a cycle would keep each other's mirrors alive after the holder died.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::{Hold, SignalBuilder, SignalSink};
use tokio::time::Instant;

use super::sightings::Sightings;
use crate::sync::Mutex;

/// The next refresh number of this process: microseconds since the first call, made
/// strictly increasing across every bridge and thread.
pub(crate) fn next_refresh() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static LAST: AtomicU64 = AtomicU64::new(0);
    let start = START.get_or_init(std::time::Instant::now);
    let now = u64::try_from(start.elapsed().as_micros())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1);
    // AcqRel: the read-modify-write itself is what makes numbers unique and increasing; no
    // other memory is published through it.
    let previous = LAST
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(0);
    now.max(previous.saturating_add(1))
}

/// How long a mirror that ended (released, or lapsed) is remembered, so that a late or
/// circulating copy of an old refresh does not bring it back.
fn memory(lease: Duration) -> Duration {
    (lease * 4).max(Duration::from_secs(10))
}

/// (sink id, origin, origin sequence).
type Key = (u64, u64, u64);

/// Where a mirror stands.
enum Held {
    /// Mirrored: the sink holds it.
    Yes(Hold),
    /// A bridge is making the hold (outside the lock: the sink notifies its watchers).
    Creating,
    /// Ended (released or lapsed): remembered, so an old refresh does not revive it.
    No,
}

/// A hold mirrored into a sink, or the memory of one that ended.
struct Mirror {
    held: Held,
    /// The newest refresh number taken (`u64::MAX` once released: nothing is newer).
    refresh: u64,
    /// The lease the newest refresh asked for.
    lease: Duration,
    /// While held: when the lease runs out. Once ended: when to forget it.
    until: Instant,
    /// The bridges that delivered refreshes of it: it ends at once when the last of them
    /// is dropped.
    bridges: Vec<u64>,
}

impl Mirror {
    /// Takes refresh `r` from `bridge` if it is newer than the last; true if it was.
    fn take(&mut self, bridge: u64, r: &Refresh) -> bool {
        if r.number == Some(self.refresh) && !self.bridges.contains(&bridge) {
            // The same refresh along another path: this bridge carries it too.
            self.bridges.push(bridge);
        }
        if r.number.is_some_and(|n| n <= self.refresh) {
            return false;
        }
        self.refresh = r.number.unwrap_or(self.refresh);
        self.lease = r.lease;
        self.until = self.until.max(crate::after(r.lease));
        if !self.bridges.contains(&bridge) {
            self.bridges.push(bridge);
        }
        true
    }

    /// Ends it (if held), to be remembered for a while; returns the hold to drop.
    fn end(&mut self) -> Option<Hold> {
        self.until = crate::after(memory(self.lease));
        match std::mem::replace(&mut self.held, Held::No) {
            Held::Yes(hold) => Some(hold),
            Held::Creating | Held::No => None,
        }
    }
}

#[derive(Default)]
struct Table {
    mirrors: HashMap<Key, Mirror>,
    /// Signals raised through some bridge, per sink, until they would have expired.
    sightings: Sightings,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut table = TABLE.lock();
    f(table.get_or_insert_with(Table::default))
}

/// Records a signal raised in `sink`, a sink of `capacity`; false if it was already raised
/// there (it came along another path). Sightings leave when their signals would have
/// expired, and a sink remembers at most `capacity` of them, the newest (see
/// `sightings.rs`).
pub(crate) fn first_sighting(
    sink: u64,
    capacity: usize,
    origin: u64,
    seq: u64,
    until: Instant,
) -> bool {
    with(|t| {
        t.sightings
            .first(sink, (origin, seq), until, Instant::now(), capacity)
    })
}

/// A hold refresh that arrived through bridge `bridge` of `sink`.
pub(crate) struct Refresh {
    pub(crate) origin: u64,
    pub(crate) seq: u64,
    /// `None` from a sender without numbers: taken as new every time.
    pub(crate) number: Option<u64>,
    pub(crate) lease: Duration,
}

/// What became of a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refreshed {
    /// The hold is now mirrored in the sink.
    Created,
    /// The mirror's lease was extended.
    Extended,
    /// Not newer than what the mirror took (a copy along another path, or around a loop),
    /// or the hold was released: nothing changed.
    Stale,
    /// The sink refused the hold.
    Failed,
}

/// Takes `refresh` for `sink` from `bridge`; `build` makes the signal if the hold is new.
pub(crate) fn refresh(
    sink: &SignalSink,
    bridge: u64,
    r: &Refresh,
    build: impl FnOnce() -> SignalBuilder,
) -> Refreshed {
    let key = (sink.id(), r.origin, r.seq);
    let create = with(|t| {
        if let Some(m) = t.mirrors.get_mut(&key) {
            match m.held {
                Held::Yes(_) | Held::Creating => {
                    return if m.take(bridge, r) {
                        Some(Refreshed::Extended)
                    } else {
                        Some(Refreshed::Stale)
                    };
                }
                // Ended: only a newer refresh brings it back.
                Held::No if r.number.is_some_and(|n| n <= m.refresh) => {
                    return Some(Refreshed::Stale);
                }
                Held::No => {}
            }
        }
        t.mirrors.insert(
            key,
            Mirror {
                held: Held::Creating,
                refresh: r.number.unwrap_or(0),
                lease: r.lease,
                until: crate::after(r.lease),
                bridges: vec![bridge],
            },
        );
        None
    });
    if let Some(outcome) = create {
        return outcome;
    }
    // Made outside the lock: the sink notifies its watchers (and a forwarder woken by that
    // finds the entry, `Creating`, with its number).
    let hold = sink.hold_with(build());
    let (outcome, spare) = with(|t| match (t.mirrors.get_mut(&key), hold) {
        (Some(m), Ok(hold)) if matches!(m.held, Held::Creating) && !m.bridges.is_empty() => {
            m.held = Held::Yes(hold);
            (Refreshed::Created, None)
        }
        // Released while it was being made, or its bridges stopped meanwhile: it must not
        // stay.
        (m, Ok(hold)) => {
            if let Some(m) = m.filter(|m| matches!(m.held, Held::Creating)) {
                m.end();
            }
            (Refreshed::Stale, Some(hold))
        }
        (m, Err(_)) => {
            if let Some(m) = m.filter(|m| matches!(m.held, Held::Creating)) {
                m.end();
            }
            (Refreshed::Failed, None)
        }
    });
    // Dropped outside the lock: releasing notifies the sink's watchers.
    drop(spare);
    outcome
}

/// The holder released the hold: the mirror ends at once, and no late refresh brings it
/// back.
pub(crate) fn release(sink: u64, origin: u64, seq: u64) {
    let ended = with(|t| {
        let m = t.mirrors.entry((sink, origin, seq)).or_insert(Mirror {
            held: Held::No,
            refresh: 0,
            lease: Duration::ZERO,
            until: Instant::now(),
            bridges: Vec::new(),
        });
        m.refresh = u64::MAX;
        m.end()
    });
    drop(ended);
}

/// Ends the mirrors of `sink` whose lease ran out, and forgets ended ones (of any sink)
/// past their memory.
pub(crate) fn sweep(sink: u64) {
    let ended = with(|t| {
        let now = Instant::now();
        let mut ended = Vec::new();
        t.mirrors.retain(|(s, _, _), m| {
            if m.until > now {
                return true;
            }
            match m.held {
                Held::No => false,
                // Its maker fills it in.
                Held::Creating => true,
                Held::Yes(_) => {
                    if *s == sink {
                        ended.extend(m.end());
                    }
                    true
                }
            }
        });
        ended
    });
    drop(ended);
}

/// Bridge `bridge` of `sink` stopped: the mirrors only it refreshed end now.
pub(crate) fn forget_bridge(sink: u64, bridge: u64) {
    let ended = with(|t| {
        let mut ended = Vec::new();
        for ((s, _, _), m) in &mut t.mirrors {
            if *s != sink {
                continue;
            }
            m.bridges.retain(|b| *b != bridge);
            if m.bridges.is_empty() && matches!(m.held, Held::Yes(_)) {
                ended.extend(m.end());
            }
        }
        ended
    });
    drop(ended);
}

/// What a forwarder passes on for a hold mirrored into `sink`: its newest refresh number
/// and lease, while it is held (or being made).
pub(crate) fn current(sink: u64, origin: u64, seq: u64) -> Option<(u64, Duration)> {
    with(|t| {
        t.mirrors
            .get(&(sink, origin, seq))
            .filter(|m| !matches!(m.held, Held::No))
            .map(|m| (m.refresh, m.lease))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_numbers_strictly_increase_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| next_refresh()).collect::<Vec<_>>()))
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let mine = t.join().unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
            all.extend(mine);
        }
        let len = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), len, "no number is handed out twice");
    }

    /// A forwarder woken by the new hold (the sink notifies watchers while it is made) must
    /// find it with its number at once, or it would forward it only at its next refresh.
    #[tokio::test(start_paused = true)]
    async fn a_hold_being_made_is_already_visible_to_forwarders() {
        let sink = SignalSink::default();
        let r = Refresh {
            origin: 9,
            seq: 3,
            number: Some(42),
            lease: Duration::from_secs(2),
        };
        let sink_id = sink.id();
        let outcome = refresh(&sink, 1, &r, || {
            assert_eq!(current(sink_id, 9, 3), Some((42, Duration::from_secs(2))));
            SignalBuilder::new(ephemeral::Name::new("circuit.open").unwrap())
        });
        assert_eq!(outcome, Refreshed::Created);
        assert_eq!(current(sink_id, 9, 3), Some((42, Duration::from_secs(2))));
        release(sink_id, 9, 3);
        assert_eq!(current(sink_id, 9, 3), None);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_newer_refresh_extends_a_mirror() {
        let sink = SignalSink::default();
        let build = || SignalBuilder::new(ephemeral::Name::new("circuit.open").unwrap());
        let lease = Duration::from_secs(1);
        let r = |number| Refresh {
            origin: 7,
            seq: 1,
            number: Some(number),
            lease,
        };
        assert_eq!(refresh(&sink, 1, &r(10), build), Refreshed::Created);
        assert_eq!(refresh(&sink, 2, &r(10), build), Refreshed::Stale, "a copy");
        assert_eq!(sink.count("circuit.*"), 1, "held once");
        tokio::time::advance(Duration::from_millis(900)).await;
        // A copy coming around a loop does not keep it alive.
        assert_eq!(refresh(&sink, 2, &r(9), build), Refreshed::Stale);
        tokio::time::advance(Duration::from_millis(200)).await;
        sweep(sink.id());
        assert!(!sink.has_signal("circuit.open"), "lapsed");
        assert_eq!(
            refresh(&sink, 1, &r(10), build),
            Refreshed::Stale,
            "not revived"
        );
        assert_eq!(refresh(&sink, 1, &r(11), build), Refreshed::Created, "back");
        // Released: nothing brings it back.
        release(sink.id(), 7, 1);
        assert!(!sink.has_signal("circuit.open"));
        assert_eq!(refresh(&sink, 1, &r(12), build), Refreshed::Stale);
        // Dropping the only bridge that refreshed a mirror ends it.
        let other = Refresh { seq: 2, ..r(1) };
        assert_eq!(refresh(&sink, 3, &other, build), Refreshed::Created);
        forget_bridge(sink.id(), 3);
        assert!(!sink.has_signal("circuit.open"));
    }
}
