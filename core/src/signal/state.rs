//! The sink's window and indexes: everything that lives behind the sink's one lock.
//!
//! Invariants (each checked by a test):
//! * `window` is ordered by sequence number; retracted or expired-out-of-order signals leave a
//!   tombstone (`signal: None`) that is popped when it reaches the front, and the deque is
//!   compacted when tombstones outnumber live signals, so it never holds more than
//!   `2 × live + 64` slots.
//! * `live` counts the window's non-tombstone slots and never exceeds `capacity`.
//! * every live window signal's sequence number is in its name's `seqs` (in order); every held
//!   signal's is in its name's `held`.
//! * names with neither (idle names) are kept for reuse up to `max_idle_names`, then swept.
//! * the expiry heap has at most `2 × capacity + 64` entries (rebuilt from the window beyond).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::routes::{Registry, Route, Target};
use super::signal::{Flags, Headers, Lineage};
use super::{SinkOptions, stats::Counters};
use crate::{Name, OperationId, Signal};

/// Everything of a new signal but its name, sequence number and timestamp.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) key: Option<Arc<str>>,
    pub(crate) operation: Option<OperationId>,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) payload: Option<Arc<[u8]>>,
    pub(crate) headers: Option<Headers>,
    pub(crate) flags: Flags,
    pub(crate) lineage: Option<Arc<Lineage>>,
    pub(crate) route: Option<Arc<[u64]>>,
}

pub(super) struct Slot {
    pub(super) seq: u64,
    pub(super) signal: Option<Signal>,
}

pub(super) struct NameEntry {
    pub(super) name: Name,
    /// Sequence numbers of this name's live window signals, oldest first.
    pub(super) seqs: VecDeque<u64>,
    /// Sequence numbers of this name's held signals, oldest first.
    pub(super) held: Vec<u64>,
    route: Route,
}

impl NameEntry {
    pub(super) fn is_idle(&self) -> bool {
        self.seqs.is_empty() && self.held.is_empty()
    }
}

/// Why a signal left the window.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    Expired,
    Evicted,
    Retracted,
    Cleared,
}

pub(crate) struct State {
    pub(super) capacity: usize,
    pub(super) max_age: Duration,
    pub(super) max_holds: usize,
    pub(super) max_idle_names: usize,
    pub(super) max_patterns: usize,
    pub(super) window: VecDeque<Slot>,
    pub(super) live: usize,
    pub(super) names: HashMap<Arc<str>, NameEntry>,
    pub(super) idle_names: usize,
    /// Bumped whenever the set of interned names changes; memoised pattern results carry the
    /// generation they were computed at.
    pub(super) generation: u64,
    pub(super) expiries: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) holds: BTreeMap<u64, Signal>,
    pub(super) ops: HashMap<OperationId, Vec<u64>>,
    pub(super) memo: HashMap<Box<str>, super::query::Memo>,
    pub(super) seq: u64,
    last_timestamp: Option<Instant>,
    pub(super) registry: Registry,
    pub(super) counters: Counters,
}

impl State {
    pub(super) fn new(options: &SinkOptions) -> Self {
        Self {
            capacity: options.capacity,
            max_age: options.max_age,
            max_holds: options.max_holds,
            max_idle_names: options.max_idle_names,
            max_patterns: options.max_patterns,
            window: VecDeque::with_capacity(options.capacity.min(4096)),
            live: 0,
            names: HashMap::new(),
            idle_names: 0,
            generation: 0,
            expiries: BinaryHeap::new(),
            holds: BTreeMap::new(),
            ops: HashMap::new(),
            memo: HashMap::new(),
            seq: 0,
            last_timestamp: None,
            registry: Registry::new(),
            counters: Counters::default(),
        }
    }

    fn next_stamp(&mut self, now: Instant) -> (u64, Instant) {
        self.seq += 1;
        // Timestamps never go backwards, so "later sequence" implies "not earlier timestamp"
        // even when threads read the clock in one order and take the lock in the other.
        let timestamp = self.last_timestamp.map_or(now, |last| last.max(now));
        self.last_timestamp = Some(timestamp);
        (self.seq, timestamp)
    }

    /// Appends a raised signal, routes it, and evicts beyond capacity.
    pub(super) fn insert(
        &mut self,
        now: Instant,
        name: &str,
        known: Option<&Name>,
        extras: Extras,
    ) -> (Signal, Option<Arc<[Target]>>) {
        self.expire(now);
        let (sequence, timestamp) = self.next_stamp(now);
        let expires_at = extras
            .expires_in
            .filter(|ttl| *ttl < self.max_age)
            .and_then(|ttl| timestamp.checked_add(ttl));
        let max_idle = self.max_idle_names;
        let entry = intern(
            &mut self.names,
            &mut self.generation,
            &mut self.idle_names,
            name,
            known,
        );
        let signal = Signal {
            name: entry.name.clone(),
            key: extras.key,
            operation: extras.operation,
            sequence,
            timestamp,
            expires_at,
            payload: extras.payload,
            headers: extras.headers,
            flags: extras.flags,
            lineage: extras.lineage,
            route: extras.route,
        };
        let was_idle = entry.is_idle();
        entry.seqs.push_back(sequence);
        if was_idle {
            self.idle_names -= 1;
        }
        // A signal raised with a time to live is never delivered after it (capped at the max
        // age as it is now). One raised without is delivered however long it waited: checking
        // the max age at delivery would read the clock for every signal and every subscriber
        // (a tenth of the fan-out's time), for events the reader asked to receive.
        let deliver_until = extras
            .expires_in
            .and_then(|_| expires_at.or_else(|| timestamp.checked_add(self.max_age)));
        let route = deliver(
            &self.registry,
            &mut entry.route,
            name,
            &signal,
            deliver_until,
        );
        self.window.push_back(Slot {
            seq: sequence,
            signal: Some(signal.clone()),
        });
        self.live += 1;
        if let Some(op) = signal.operation {
            self.ops.entry(op).or_default().push(sequence);
        }
        if let Some(at) = expires_at {
            self.expiries.push(Reverse((at, sequence)));
            if self.expiries.len() > 2 * self.capacity + 64 {
                self.rebuild_expiries();
            }
        }
        self.counters.raised += 1;
        while self.live > self.capacity {
            self.evict_oldest();
        }
        self.tidy(max_idle);
        (signal, route)
    }

    /// Adds a held condition: live until released, exempt from age and capacity.
    pub(super) fn insert_hold(
        &mut self,
        now: Instant,
        name: &str,
        known: Option<&Name>,
        mut extras: Extras,
    ) -> Option<(Signal, Option<Arc<[Target]>>)> {
        if self.holds.len() >= self.max_holds {
            return None;
        }
        self.purge(now);
        let (sequence, timestamp) = self.next_stamp(now);
        extras.flags.held = true;
        let entry = intern(
            &mut self.names,
            &mut self.generation,
            &mut self.idle_names,
            name,
            known,
        );
        let signal = Signal {
            name: entry.name.clone(),
            key: extras.key,
            operation: extras.operation,
            sequence,
            timestamp,
            expires_at: None,
            payload: extras.payload,
            headers: extras.headers,
            flags: extras.flags,
            lineage: extras.lineage,
            route: extras.route,
        };
        let was_idle = entry.is_idle();
        entry.held.push(sequence);
        if was_idle {
            self.idle_names -= 1;
        }
        // A held condition never expires, in the window or in a subscription's buffer.
        let route = deliver(&self.registry, &mut entry.route, name, &signal, None);
        self.holds.insert(sequence, signal.clone());
        self.counters.holds_acquired += 1;
        Some((signal, route))
    }

    /// Releases a held condition; false when it was already released.
    pub(super) fn release(&mut self, sequence: u64) -> bool {
        let Some(signal) = self.holds.remove(&sequence) else {
            return false;
        };
        let name = signal.name.as_str();
        if let Some(entry) = self.names.get_mut(name) {
            entry.held.retain(|s| *s != sequence);
            if entry.is_idle() {
                self.idle_names += 1;
            }
            notify_watchers(&self.registry, &mut entry.route, name);
        }
        self.counters.holds_released += 1;
        self.tidy(self.max_idle_names);
        true
    }

    /// Removes every signal whose time is up, as of `now`, and tidies the tables.
    pub(super) fn purge(&mut self, now: Instant) {
        self.expire(now);
        self.tidy(self.max_idle_names);
    }

    /// Removes every signal whose time is up, as of `now`, leaving the tidying to the caller
    /// (`insert` tidies once, after its own changes).
    fn expire(&mut self, now: Instant) {
        // Age: the window is in timestamp order, so expired-by-age signals are at the front.
        while let Some(front) = self.window.front() {
            match &front.signal {
                None => {
                    self.window.pop_front();
                }
                Some(signal) => {
                    let expired = signal
                        .timestamp
                        .checked_add(self.max_age)
                        .is_some_and(|deadline| deadline <= now);
                    if !expired {
                        break;
                    }
                    if let Some(signal) = self.window.pop_front().and_then(|s| s.signal) {
                        self.live -= 1;
                        self.unindex(&signal, Removal::Expired);
                    }
                }
            }
        }
        // Own expiries, shorter than the max age, anywhere in the window.
        while let Some(Reverse((at, sequence))) = self.expiries.peek().copied() {
            if at > now {
                break;
            }
            self.expiries.pop();
            self.take(sequence, Removal::Expired);
        }
    }

    /// Removes the live window signal with this sequence number, if there is one.
    pub(super) fn take(&mut self, sequence: u64, why: Removal) -> Option<Signal> {
        let index = self
            .window
            .binary_search_by_key(&sequence, |slot| slot.seq)
            .ok()?;
        let signal = self.window[index].signal.take()?;
        self.live -= 1;
        self.unindex(&signal, why);
        Some(signal)
    }

    fn evict_oldest(&mut self) {
        while let Some(slot) = self.window.pop_front() {
            if let Some(signal) = slot.signal {
                self.live -= 1;
                self.unindex(&signal, Removal::Evicted);
                return;
            }
        }
    }

    fn unindex(&mut self, signal: &Signal, why: Removal) {
        let sequence = signal.sequence;
        let name = signal.name.as_str();
        if let Some(entry) = self.names.get_mut(name) {
            if entry.seqs.front() == Some(&sequence) {
                entry.seqs.pop_front();
            } else if let Ok(at) = entry.seqs.binary_search(&sequence) {
                entry.seqs.remove(at);
            }
            if entry.is_idle() {
                self.idle_names += 1;
            }
            notify_watchers(&self.registry, &mut entry.route, name);
        }
        if let Some(op) = signal.operation
            && let Some(seqs) = self.ops.get_mut(&op)
        {
            seqs.retain(|s| *s != sequence);
            if seqs.is_empty() {
                self.ops.remove(&op);
            }
        }
        let counter = match why {
            Removal::Expired => &mut self.counters.expired,
            Removal::Evicted => &mut self.counters.evicted,
            Removal::Retracted => &mut self.counters.retracted,
            Removal::Cleared => &mut self.counters.cleared,
        };
        *counter += 1;
    }

    /// Keeps the tables within their stated bounds.
    pub(super) fn tidy(&mut self, max_idle_names: usize) {
        while self.window.front().is_some_and(|s| s.signal.is_none()) {
            self.window.pop_front();
        }
        if self.window.len() > 2 * self.live + 64 {
            self.window.retain(|slot| slot.signal.is_some());
        }
        if self.idle_names > max_idle_names {
            let before = self.names.len();
            self.names.retain(|_, entry| !entry.is_idle());
            self.counters.names_reclaimed += (before - self.names.len()) as u64;
            self.idle_names = 0;
            self.generation += 1;
            if self.names.capacity() > 4 * self.names.len().max(64) {
                self.names.shrink_to_fit();
            }
            if self.ops.capacity() > 4 * self.ops.len().max(64) {
                self.ops.shrink_to_fit();
            }
        }
    }

    fn rebuild_expiries(&mut self) {
        self.expiries = self
            .window
            .iter()
            .filter_map(|slot| slot.signal.as_ref())
            .filter_map(|s| s.expires_at.map(|at| Reverse((at, s.sequence))))
            .collect();
    }

    /// Applies a new capacity, evicting the oldest signals beyond it at once.
    pub(super) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.live > self.capacity {
            self.evict_oldest();
        }
        self.tidy(self.max_idle_names);
    }

    /// Removes every live window signal for which `select` is true.
    pub(super) fn remove_where(
        &mut self,
        sequences: Vec<u64>,
        why: Removal,
        select: impl Fn(&Signal) -> bool,
    ) -> usize {
        let mut removed = 0;
        for sequence in sequences {
            let Ok(index) = self.window.binary_search_by_key(&sequence, |s| s.seq) else {
                continue;
            };
            if self.window[index].signal.as_ref().is_some_and(&select)
                && self.take(sequence, why).is_some()
            {
                removed += 1;
            }
        }
        self.tidy(self.max_idle_names);
        removed
    }
}

/// Interns `name` with one hash lookup, allocating only for a name not seen before (or
/// reclaimed since).
fn intern<'a>(
    names: &'a mut HashMap<Arc<str>, NameEntry>,
    generation: &mut u64,
    idle_names: &mut usize,
    name: &str,
    known: Option<&Name>,
) -> &'a mut NameEntry {
    match names.entry_ref(name) {
        EntryRef::Occupied(entry) => entry.into_mut(),
        EntryRef::Vacant(vacant) => {
            // The caller validated `name` before taking the lock.
            let name = known
                .cloned()
                .unwrap_or_else(|| Name::from_validated(Arc::from(name)));
            // A new name enters no memoised result until they are recomputed.
            *generation += 1;
            // It is counted idle until something makes it live.
            *idle_names += 1;
            vacant.insert_with_key(
                name.as_arc().clone(),
                NameEntry {
                    name,
                    seqs: VecDeque::new(),
                    held: Vec::new(),
                    route: Route::default(),
                },
            )
        }
    }
}

/// Delivers to subscriptions and watches under the lock (so every subscription sees signals
/// in sequence order) and returns the route for listeners, which run after the lock is
/// released. `until`: the instant from which subscriptions must not hand the signal out.
fn deliver(
    registry: &Registry,
    route: &mut Route,
    name: &str,
    signal: &Signal,
    until: Option<Instant>,
) -> Option<Arc<[Target]>> {
    let route = registry.route(route, name)?;
    for target in route.iter() {
        match target {
            // Never fails but when the subscription was dropped meanwhile (closed): then
            // there is nobody to deliver to.
            Target::Subscriber(sub) => {
                let _ = sub.ring.try_push(signal.clone(), until);
            }
            Target::Watcher(watch) => watch.bump(),
            Target::Listener(_) => {}
        }
    }
    Some(route)
}

fn notify_watchers(registry: &Registry, route: &mut Route, name: &str) {
    if let Some(targets) = registry.route(route, name) {
        for target in targets.iter() {
            if let Target::Watcher(watch) = target {
                watch.bump();
            }
        }
    }
}
