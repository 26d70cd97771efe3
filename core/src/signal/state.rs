//! The sink's window and indexes: everything that lives behind the sink's one lock.
//!
//! Invariants (each checked by a test):
//! * `window` is ordered by sequence number; retracted or expired-out-of-order signals leave a
//!   tombstone (`live: false`) that is popped when it reaches the front, and the deque is
//!   compacted when tombstones outnumber live signals, so it never holds more than
//!   `2 × live + 64` slots.
//! * `live` counts the window's non-tombstone slots and never exceeds `capacity`.
//! * every live window signal's sequence number is in its name's `seqs` (in order); every held
//!   signal's is in its name's `held`.
//! * names with neither (idle names) are kept for reuse up to `max_idle_names`, then swept.
//! * every index in `names` and every live slot's `name` points at an entry of `entries` that
//!   is in use; freed entries are listed in `free` and reused before the slab grows.
//! * the expiry heap has at most `2 × capacity + 64` entries (rebuilt from the window beyond).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::routes::{Registry, Route, Target};
use super::signal::{Flags, Rare};
use super::stamp::Stamp;
use super::{SinkOptions, stats::Counters};
use crate::{Name, NameError, OperationId, Signal};

/// Everything of a new signal but its name, sequence number and timestamp.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) operation: Option<OperationId>,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) flags: Flags,
    /// The rare parts; `expires_at` is filled in when the signal is stamped.
    pub(crate) rare: Rare,
}

impl Extras {
    /// The operation, flags and rare parts of the signal, `expires_at` filled in (if sooner
    /// than the max age).
    fn into_parts(self, expires_at: Option<Instant>) -> (u64, Flags, Option<Arc<Rare>>) {
        let mut flags = self.flags;
        flags.operation = self.operation.is_some();
        let mut rare = self.rare;
        rare.expires_at = expires_at;
        (
            self.operation.map_or(0, OperationId::as_u64),
            flags,
            rare.into_shared(),
        )
    }
}

/// One signal of the window, without its name: the name is the entry at `name` in
/// `State::entries`, so a slot is 48 bytes (the window of a default sink fits the L1 cache
/// better) and a signal leaving the window finds its name's entry without hashing.
pub(super) struct Slot {
    pub(super) seq: u64,
    pub(super) stamp: Stamp,
    operation: u64,
    rare: Option<Arc<Rare>>,
    /// The index of the signal's name in `State::entries`.
    name: usize,
    flags: Flags,
    /// False once the signal left the window out of order (a tombstone).
    pub(super) live: bool,
}

impl Slot {
    /// The signal this slot holds, named from `entries`.
    pub(super) fn signal(&self, entries: &[NameEntry]) -> Signal {
        Signal {
            name: entries[self.name].name.clone(),
            sequence: self.seq,
            timestamp: self.stamp,
            operation: self.operation,
            flags: self.flags,
            rare: self.rare.clone(),
        }
    }

    /// The signal's own expiry, if it has one shorter than the max age.
    pub(super) fn expires_at(&self) -> Option<Instant> {
        self.rare.as_deref().and_then(|r| r.expires_at)
    }
}

pub(super) struct NameEntry {
    pub(super) name: Name,
    /// `State::hasher`'s hash of `name`, so the table can grow without hashing names again.
    pub(super) hash: u64,
    /// Sequence numbers of this name's live window signals, oldest first.
    pub(super) seqs: VecDeque<u64>,
    /// Sequence numbers of this name's held signals, oldest first.
    pub(super) held: Vec<u64>,
    route: Route,
}

impl NameEntry {
    /// A free slab entry.
    fn vacant() -> Self {
        Self {
            name: Name::placeholder(),
            hash: 0,
            seqs: VecDeque::new(),
            held: Vec::new(),
            route: Route::default(),
        }
    }

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
    /// Interned names: indexes into `entries`, found by the hash of the name (`hasher`). A
    /// raise hashes its name before it takes the lock; a signal leaving the window finds its
    /// entry by the index kept in its slot.
    pub(super) names: HashTable<usize>,
    /// The slab of name entries `names` and the window's slots point into.
    pub(super) entries: Vec<NameEntry>,
    /// Indexes of `entries` not in use, reused first.
    free: Vec<usize>,
    pub(super) hasher: DefaultHashBuilder,
    pub(super) idle_names: usize,
    /// Bumped whenever the set of interned names changes; memoised pattern results carry the
    /// generation they were computed at.
    pub(super) generation: u64,
    pub(super) expiries: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) holds: BTreeMap<u64, Signal>,
    pub(super) ops: HashMap<OperationId, Vec<u64>>,
    pub(super) memo: HashMap<Box<str>, super::query::Memo>,
    pub(super) seq: u64,
    last_timestamp: Stamp,
    pub(super) registry: Registry,
    pub(super) counters: Counters,
}

/// A raised signal and the route whose listeners must hear of it once the lock is released.
pub(crate) type Raised = (Signal, Option<Arc<[Target]>>);

/// A name to raise: the text, its hash, and the validated `Name` when the caller has one.
#[derive(Clone, Copy)]
pub(crate) struct NameKey<'a> {
    pub(crate) text: &'a str,
    pub(crate) hash: u64,
    pub(crate) known: Option<&'a Name>,
}

impl State {
    pub(super) fn new(options: &SinkOptions, hasher: DefaultHashBuilder) -> Self {
        Self {
            capacity: options.capacity,
            max_age: options.max_age,
            max_holds: options.max_holds,
            max_idle_names: options.max_idle_names,
            max_patterns: options.max_patterns,
            window: VecDeque::with_capacity(options.capacity.min(4096)),
            live: 0,
            names: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            hasher,
            idle_names: 0,
            generation: 0,
            expiries: BinaryHeap::new(),
            holds: BTreeMap::new(),
            ops: HashMap::new(),
            memo: HashMap::new(),
            seq: 0,
            last_timestamp: Stamp::MIN,
            registry: Registry::new(),
            counters: Counters::default(),
        }
    }

    /// The entry of an interned name.
    pub(super) fn entry(&self, name: &str, hash: u64) -> Option<&NameEntry> {
        let entries = &self.entries;
        let index = self
            .names
            .find(hash, |&i| entries[i].name.as_str() == name)?;
        entries.get(*index)
    }

    /// Appends a raised signal, routes it, and evicts beyond capacity. A name not interned
    /// yet is validated here, once (unless `key.known` says it was already); a known name is
    /// valid by construction.
    /// `stamp`: the stamp of `now`, converted before the lock was taken.
    pub(super) fn insert(
        &mut self,
        now: Instant,
        stamp: Stamp,
        key: NameKey<'_>,
        extras: Option<Extras>,
    ) -> Result<Raised, NameError> {
        self.expire(now, stamp);
        let index = intern(
            &mut self.names,
            &mut self.entries,
            &mut self.free,
            &self.hasher,
            &mut self.generation,
            &mut self.idle_names,
            key,
        )?;
        let (sequence, timestamp) = next_stamp(&mut self.seq, &mut self.last_timestamp, stamp);
        let (operation, flags, rare, expires_at) = match extras {
            None => (0, Flags::default(), None, None),
            Some(extras) => {
                let expires_at = extras
                    .expires_in
                    .filter(|ttl| *ttl < self.max_age)
                    .and_then(|ttl| timestamp.instant().checked_add(ttl));
                let (operation, flags, rare) = extras.into_parts(expires_at);
                (operation, flags, rare, expires_at)
            }
        };
        let entry = &mut self.entries[index];
        if entry.is_idle() {
            self.idle_names -= 1;
        }
        entry.seqs.push_back(sequence);
        let signal = Signal {
            name: entry.name.clone(),
            sequence,
            timestamp,
            operation,
            flags,
            rare: rare.clone(),
        };
        let route = if self.registry.is_empty() {
            None
        } else {
            // Delivered only while live (DESIGN §3: expiry is honoured at delivery too): until
            // its own expiry, else its max age as the sink's max age is now. A reader then
            // reads the clock once per call that finds such a value (see `Cursor`).
            let until = expires_at.or_else(|| timestamp.instant().checked_add(self.max_age));
            deliver(&self.registry, &mut entry.route, &signal, until)
        };
        self.window.push_back(Slot {
            seq: sequence,
            stamp: timestamp,
            operation,
            rare,
            name: index,
            flags,
            live: true,
        });
        self.live += 1;
        if flags.operation {
            self.ops
                .entry(OperationId::from_raw(operation))
                .or_default()
                .push(sequence);
        }
        if let Some(at) = expires_at {
            self.expiries.push(Reverse((at, sequence)));
            // Saturating: a capacity of `usize::MAX` (no practical bound) must not overflow.
            if self.expiries.len() > self.capacity.saturating_mul(2).saturating_add(64) {
                self.rebuild_expiries();
            }
        }
        self.counters.raised += 1;
        if self.live > self.capacity {
            self.evict_oldest();
        }
        self.tidy(self.max_idle_names);
        Ok((signal, route))
    }

    /// Adds a held condition: live until released, exempt from age and capacity. `None` when
    /// the sink already holds `max_holds` conditions.
    pub(super) fn insert_hold(
        &mut self,
        now: Instant,
        key: NameKey<'_>,
        mut extras: Extras,
    ) -> Result<Option<Raised>, NameError> {
        if self.holds.len() >= self.max_holds {
            return Ok(None);
        }
        self.purge(now);
        extras.flags.held = true;
        let index = intern(
            &mut self.names,
            &mut self.entries,
            &mut self.free,
            &self.hasher,
            &mut self.generation,
            &mut self.idle_names,
            key,
        )?;
        let (sequence, timestamp) =
            next_stamp(&mut self.seq, &mut self.last_timestamp, Stamp::of(now));
        let entry = &mut self.entries[index];
        let (operation, flags, rare) = extras.into_parts(None);
        let signal = Signal {
            name: entry.name.clone(),
            sequence,
            timestamp,
            operation,
            flags,
            rare,
        };
        if entry.is_idle() {
            self.idle_names -= 1;
        }
        entry.held.push(sequence);
        // A held condition never expires, in the window or in a subscription's buffer.
        let route = deliver(&self.registry, &mut entry.route, &signal, None);
        self.holds.insert(sequence, signal.clone());
        self.counters.holds_acquired += 1;
        Ok(Some((signal, route)))
    }

    /// Releases a held condition; false when it was already released.
    pub(super) fn release(&mut self, sequence: u64) -> bool {
        let Some(signal) = self.holds.remove(&sequence) else {
            return false;
        };
        let name = signal.name.as_str();
        let hash = self.hasher.hash_one(name);
        let entries = &mut self.entries;
        if let Some(&index) = self.names.find(hash, |&i| entries[i].name.as_str() == name)
            && let Some(entry) = entries.get_mut(index)
        {
            entry.held.retain(|s| *s != sequence);
            if entry.is_idle() {
                self.idle_names += 1;
            }
            notify_watchers(&self.registry, &mut entry.route, name, true);
        }
        self.counters.holds_released += 1;
        self.tidy(self.max_idle_names);
        true
    }

    /// Removes every signal whose time is up, as of `now`, and tidies the tables.
    pub(super) fn purge(&mut self, now: Instant) {
        self.expire(now, Stamp::of(now));
        self.tidy(self.max_idle_names);
    }

    /// Removes every signal whose time is up, as of `now`, leaving the tidying to the caller
    /// (`insert` tidies once, after its own changes).
    #[inline]
    fn expire(&mut self, now: Instant, stamp: Stamp) {
        // Age: the window is in timestamp order, so expired-by-age signals are at the front.
        // A signal stamped at or before `now - max_age` has reached its max age.
        let cutoff = stamp.minus(self.max_age);
        if self
            .window
            .front()
            .is_some_and(|slot| !slot.live || slot.stamp <= cutoff)
        {
            self.expire_by_age(cutoff);
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

    /// Removes the signals stamped at or before `cutoff` from the front of the window.
    #[inline(never)]
    fn expire_by_age(&mut self, cutoff: Stamp) {
        while let Some(front) = self.window.front() {
            if front.live && front.stamp > cutoff {
                break;
            }
            if let Some(slot) = self.window.pop_front()
                && slot.live
            {
                self.live -= 1;
                self.unindex(&slot, Removal::Expired);
            }
        }
    }

    /// Removes the live window signal with this sequence number, if there is one; whether
    /// there was.
    pub(super) fn take(&mut self, sequence: u64, why: Removal) -> bool {
        let Ok(index) = self.window.binary_search_by_key(&sequence, |slot| slot.seq) else {
            return false;
        };
        let slot = &mut self.window[index];
        if !slot.live {
            return false;
        }
        slot.live = false;
        // A tombstone keeps nothing but its place.
        let rare = slot.rare.take();
        let gone = Slot {
            seq: slot.seq,
            stamp: slot.stamp,
            operation: slot.operation,
            rare,
            name: slot.name,
            flags: slot.flags,
            live: false,
        };
        self.live -= 1;
        self.unindex(&gone, why);
        true
    }

    fn evict_oldest(&mut self) {
        while let Some(slot) = self.window.pop_front() {
            if slot.live {
                self.live -= 1;
                self.unindex(&slot, Removal::Evicted);
                return;
            }
        }
    }

    /// Takes the signal in `slot`, which just left the window, out of the indexes.
    fn unindex(&mut self, slot: &Slot, why: Removal) {
        let sequence = slot.seq;
        if let Some(entry) = self.entries.get_mut(slot.name) {
            if entry.seqs.front() == Some(&sequence) {
                entry.seqs.pop_front();
            } else if let Ok(at) = entry.seqs.binary_search(&sequence) {
                entry.seqs.remove(at);
            }
            if entry.is_idle() {
                self.idle_names += 1;
            }
            if !self.registry.is_empty() {
                notify_watchers(&self.registry, &mut entry.route, entry.name.as_str(), false);
            }
        }
        if slot.flags.operation {
            let op = OperationId::from_raw(slot.operation);
            if let Some(seqs) = self.ops.get_mut(&op) {
                seqs.retain(|s| *s != sequence);
                if seqs.is_empty() {
                    self.ops.remove(&op);
                }
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
    #[inline]
    pub(super) fn tidy(&mut self, max_idle_names: usize) {
        if self.window.front().is_some_and(|s| !s.live)
            || self.window.len() > 2 * self.live + 64
            || self.idle_names > max_idle_names
        {
            self.tidy_now(max_idle_names);
        }
    }

    #[inline(never)]
    fn tidy_now(&mut self, max_idle_names: usize) {
        while self.window.front().is_some_and(|s| !s.live) {
            self.window.pop_front();
        }
        if self.window.len() > 2 * self.live + 64 {
            self.window.retain(|slot| slot.live);
        }
        if self.idle_names > max_idle_names {
            let before = self.names.len();
            let (entries, free) = (&mut self.entries, &mut self.free);
            self.names.retain(|&mut index| {
                let entry = &mut entries[index];
                if !entry.is_idle() {
                    return true;
                }
                // Nothing points at an idle entry but `names`: free it, and what it holds.
                entry.name = Name::placeholder();
                entry.route = Route::default();
                free.push(index);
                false
            });
            self.counters.names_reclaimed += (before - self.names.len()) as u64;
            self.idle_names = 0;
            self.generation += 1;
            if self.names.capacity() > 4 * self.names.len().max(64) {
                let entries = &self.entries;
                self.names.shrink_to_fit(|&i| entries[i].hash);
            }
            // The slab shrinks only from its end, as far as its free entries go.
            if self.entries.len() > 4 * self.names.len().max(64) {
                self.compact_entries();
            }
            if self.ops.capacity() > 4 * self.ops.len().max(64) {
                self.ops.shrink_to_fit();
            }
        }
    }

    /// Moves every entry in use to the front of the slab and shrinks it, so the slab stays
    /// within four times the interned names (plus 64).
    #[cold]
    fn compact_entries(&mut self) {
        let mut moved = vec![usize::MAX; self.entries.len()];
        let mut kept: Vec<NameEntry> = Vec::with_capacity(self.names.len());
        for index in self.names.iter_mut() {
            moved[*index] = kept.len();
            let entry = std::mem::replace(&mut self.entries[*index], NameEntry::vacant());
            kept.push(entry);
            *index = moved[*index];
        }
        for slot in self.window.iter_mut().filter(|slot| slot.live) {
            slot.name = moved[slot.name];
        }
        self.entries = kept;
        self.free.clear();
        self.free.shrink_to_fit();
        // Memoised results hold indexes: recompute them.
        self.generation += 1;
    }

    fn rebuild_expiries(&mut self) {
        self.expiries = self
            .window
            .iter()
            .filter(|slot| slot.live)
            .filter_map(|slot| slot.expires_at().map(|at| Reverse((at, slot.seq))))
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
            let slot = &self.window[index];
            if slot.live && select(&slot.signal(&self.entries)) && self.take(sequence, why) {
                removed += 1;
            }
        }
        self.tidy(self.max_idle_names);
        removed
    }
}

/// The next sequence number and the timestamp to stamp with.
#[inline]
fn next_stamp(seq: &mut u64, last: &mut Stamp, now: Stamp) -> (u64, Stamp) {
    *seq += 1;
    // Timestamps never go backwards, so "later sequence" implies "not earlier timestamp"
    // even when threads read the clock in one order and take the lock in the other.
    *last = (*last).max(now);
    (*seq, *last)
}

/// Finds `key`'s entry with one hash lookup and returns its index in `entries`, allocating
/// only for a name not seen before (or reclaimed since), which is validated then, once.
#[inline]
fn intern(
    names: &mut HashTable<usize>,
    entries: &mut Vec<NameEntry>,
    free: &mut Vec<usize>,
    hasher: &DefaultHashBuilder,
    generation: &mut u64,
    idle_names: &mut usize,
    key: NameKey<'_>,
) -> Result<usize, NameError> {
    let slab = &*entries;
    // The common case, a name already interned, without the entry API's reservation.
    if let Some(&index) = names.find(key.hash, |&i| slab[i].name.as_str() == key.text) {
        return Ok(index);
    }
    match names.entry(
        key.hash,
        |&i| slab[i].name.as_str() == key.text,
        |&i| slab[i].hash,
    ) {
        Entry::Occupied(entry) => Ok(*entry.get()),
        Entry::Vacant(vacant) => {
            let name = match key.known {
                Some(name) => name.clone(),
                None => Name::new(key.text)?,
            };
            debug_assert_eq!(hasher.hash_one(key.text), key.hash);
            // A new name enters no memoised result until they are recomputed.
            *generation += 1;
            // It is counted idle until something makes it live.
            *idle_names += 1;
            let entry = NameEntry {
                name,
                hash: key.hash,
                seqs: VecDeque::new(),
                held: Vec::new(),
                route: Route::default(),
            };
            let index = match free.pop() {
                Some(index) => {
                    entries[index] = entry;
                    index
                }
                None => {
                    entries.push(entry);
                    entries.len() - 1
                }
            };
            vacant.insert(index);
            Ok(index)
        }
    }
}

/// Delivers to subscriptions and watches under the lock (so every subscription sees signals
/// in sequence order) and returns the route for listeners, which run after the lock is
/// released. `until`: the instant from which subscriptions must not hand the signal out.
#[inline]
fn deliver(
    registry: &Registry,
    route: &mut Route,
    signal: &Signal,
    until: Option<Instant>,
) -> Option<Arc<[Target]>> {
    let route = registry.route(route, signal.name.as_str())?;
    for target in route.iter() {
        match target {
            // Never fails but when the subscription was dropped meanwhile (closed): then
            // there is nobody to deliver to.
            Target::Subscriber(sub) => {
                let _ = sub.ring.try_push(signal.clone(), until);
            }
            Target::Watcher(watch) => watch.bump_for(signal.flags.held),
            Target::Listener(_) => {}
        }
    }
    Some(route)
}

/// Tells the watches of `name` that one of its signals left: a held condition (`held`) or
/// a window signal.
fn notify_watchers(registry: &Registry, route: &mut Route, name: &str, held: bool) {
    if let Some(targets) = registry.route(route, name) {
        for target in targets.iter() {
            if let Target::Watcher(watch) = target {
                watch.bump_for(held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(state: &State, name: &'a str) -> NameKey<'a> {
        NameKey {
            text: name,
            hash: state.hasher.hash_one(name),
            known: None,
        }
    }

    /// After thousands of one-off names are reclaimed, the slab of name entries shrinks back
    /// to the names in use, and every live signal still carries its own name.
    #[test]
    fn the_name_slab_shrinks_and_live_signals_keep_their_names() {
        let options = SinkOptions::default()
            .capacity(5000)
            .max_age(Duration::from_secs(60))
            .max_idle_names(16);
        let mut state = State::new(&options, DefaultHashBuilder::default());
        let start = Instant::now();
        for i in 0..3000 {
            let name = format!("one.off.{i}");
            state
                .insert(start, Stamp::of(start), key(&state, &name), None)
                .unwrap();
        }
        let later = start + Duration::from_secs(30);
        for i in 0..10 {
            let name = format!("keep.{i}");
            state
                .insert(later, Stamp::of(later), key(&state, &name), None)
                .unwrap();
        }
        assert!(state.entries.len() >= 3010);
        state.purge(start + Duration::from_secs(60));
        assert_eq!(state.live, 10);
        assert_eq!(state.names.len(), 10);
        assert!(state.entries.len() <= 4 * 64, "{}", state.entries.len());
        let names: Vec<String> = state
            .sense(later, "keep.*")
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("keep.{i}")).collect();
        assert_eq!(names, expected);
        // A name raised again after the sweep is interned afresh, in a reused or new entry.
        state
            .insert(later, Stamp::of(later), key(&state, "one.off.7"), None)
            .unwrap();
        assert_eq!(state.count(later, "one.off.*"), 1);
        assert_eq!(
            state.latest(later, "*").map(|s| s.name().to_string()),
            Some("one.off.7".to_owned())
        );
    }
}
