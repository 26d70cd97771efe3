//! The keyed queue: strict order per key, a per-key limit, no head-of-line blocking, and
//! cold keys first.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

// hashbrown's default hasher (foldhash, seeded per process) rather than std's SipHash: three
// or four key lookups per item, and the sink's name index makes the same choice for names
// that come from users too.
use hashbrown::DefaultHashBuilder;
use hashbrown::hash_table::{Entry, HashTable, OccupiedEntry};

use super::job::{Job, PopCx, Select, Visit, VisitMut};
use super::policy::Queue;
use crate::OperationId;
use crate::coordinator::snapshot::KeyStats;

/// The keys' table: a map from key to state that clones a key only to insert it (a keyed
/// push finds its key by reference; `HashMap::entry` takes the key by value, so every push
/// cloned it, an allocation for a `String` key, even for a key already there).
#[derive(Debug)]
struct KeyTable<K, V> {
    table: HashTable<(K, V)>,
    hasher: DefaultHashBuilder,
}

impl<K: Hash + Eq, V> KeyTable<K, V> {
    fn new() -> Self {
        Self {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn get(&self, key: &K) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let hash = self.hasher.hash_one(key);
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    /// The entry of `key` if it is there, to read, change or remove in one lookup.
    fn occupied(&mut self, key: &K) -> Option<OccupiedEntry<'_, (K, V)>> {
        let hash = self.hasher.hash_one(key);
        self.table.find_entry(hash, |(k, _)| k == key).ok()
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        self.occupied(key).map(|entry| entry.remove().0.1)
    }

    /// The value of `key`, first inserted as `make()` under a clone of `key` if missing: one
    /// hash and one probe either way.
    fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V
    where
        K: Clone,
    {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        let entry = match self
            .table
            .entry(hash, |(k, _)| k == key, |(k, _)| hasher.hash_one(k))
        {
            Entry::Occupied(entry) => entry,
            Entry::Vacant(entry) => entry.insert((key.clone(), make())),
        };
        &mut entry.into_mut().1
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|(k, v)| (k, v))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.table.iter_mut().map(|(k, v)| (&*k, v))
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.table.iter().map(|(_, v)| v)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.table.iter_mut().map(|(_, v)| v)
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.table.retain(|(_, v)| keep(v));
    }
}

#[derive(Debug)]
struct KeyState<T, K> {
    pending: VecDeque<Job<T, K>>,
    running: usize,
    /// Whether the key sits in a ready list (at most once).
    ready: bool,
}

/// Keys that may start an item now sit in one of two ready lists, served round-robin: *cold*
/// keys (at most `threshold` pending) before *hot* ones. A busy key is simply not in a ready
/// list, so it never blocks the others; a key's items start strictly in order because only its
/// head is ever taken. A key with nothing pending or running is forgotten.
///
/// Each step looks a key up once (a forgotten key costs one more lookup to remove), and the
/// pending lists of forgotten keys are kept for reuse (see [`KeyedQueue::forget`]): with
/// many keys of one item each, keys come and go with every item, in bursts as wide as
/// `max_pending`.
#[derive(Debug)]
pub(crate) struct KeyedQueue<T, K> {
    keys: KeyTable<K, KeyState<T, K>>,
    cold: VecDeque<K>,
    hot: VecDeque<K>,
    per_key: usize,
    threshold: usize,
    len: usize,
    /// The most keys known at once so far.
    peak_keys: usize,
    /// Empty pending lists of forgotten keys, for the next new key.
    spare: Vec<VecDeque<Job<T, K>>>,
}

/// The largest pending list (in jobs) a keyed queue keeps for reuse once its key is
/// forgotten.
const SPARE_CAPACITY: usize = 16;

impl<T, K: Hash + Eq + Clone> KeyedQueue<T, K> {
    pub(crate) fn new(per_key: usize, threshold: usize) -> Self {
        Self {
            keys: KeyTable::new(),
            cold: VecDeque::new(),
            hot: VecDeque::new(),
            per_key,
            threshold,
            len: 0,
            peak_keys: 0,
            spare: Vec::new(),
        }
    }

    pub(crate) fn key_stats(&self, key: &K) -> KeyStats {
        self.keys
            .get(key)
            .map_or_else(KeyStats::default, |s| KeyStats {
                pending: s.pending.len(),
                running: s.running,
            })
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn make_ready(&mut self, key: &K) {
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        if state.ready || state.pending.is_empty() || state.running >= self.per_key {
            return;
        }
        state.ready = true;
        if state.pending.len() > self.threshold {
            self.hot.push_back(key.clone());
        } else {
            self.cold.push_back(key.clone());
        }
    }

    fn reclaim(&mut self, key: &K) {
        if self
            .keys
            .get(key)
            .is_some_and(|s| s.pending.is_empty() && s.running == 0 && !s.ready)
        {
            self.forget(key);
        }
    }

    /// Removes an idle key, keeping its empty pending list for reuse (see
    /// [`keep_spare`](Self::keep_spare)).
    fn forget(&mut self, key: &K) {
        if let Some(state) = self.keys.remove(key) {
            self.keep_spare(state.pending);
        }
    }

    /// Keeps a forgotten key's empty pending list for reuse while the spare lists and the
    /// known keys together stay below the most keys the queue held at once (`peak_keys`,
    /// which `max_pending` and `max_concurrency` bound). A list grown past
    /// [`SPARE_CAPACITY`] by a hot key is dropped rather than kept.
    ///
    /// The bound is counted, not read from the table's capacity: removals can leave
    /// tombstones in a hash table, which lower its free room by an amount that depends on
    /// the hashes (per process seed), so a bound read there kept fewer lists in about one
    /// process in a hundred.
    fn keep_spare(&mut self, pending: VecDeque<Job<T, K>>) {
        if self.spare.len() + self.keys.len() < self.peak_keys
            && (1..=SPARE_CAPACITY).contains(&pending.capacity())
        {
            self.spare.push(pending);
        }
    }

    /// While the coordinator-wide deferral holds, the engine pops only when some job is past
    /// `max_defer` under `DeferPolicy::Run`, and only such a job may start: the head of the
    /// first ready key (cold keys first) whose head is one. Every other key stays held, and
    /// a key whose head is not overdue keeps its order (a later overdue item of it waits).
    fn pop_overdue(&mut self) -> Option<Job<T, K>> {
        let keys = &self.keys;
        let overdue = |key: &K| {
            keys.get(key)
                .and_then(|state| state.pending.front())
                .is_some_and(Job::is_overdue)
        };
        let key = match self.cold.iter().position(overdue) {
            Some(index) => self.cold.remove(index),
            None => {
                let index = self.hot.iter().position(overdue)?;
                self.hot.remove(index)
            }
        }?;
        self.start_head(key).ok()
    }

    /// Starts the head job of `key`, just taken out of its ready list, and puts the key back
    /// in one if it may start another; `Err(key)` when it has no pending job (or no state).
    fn start_head(&mut self, key: K) -> Result<Job<T, K>, K> {
        let (per_key, threshold) = (self.per_key, self.threshold);
        let Some(state) = self.keys.get_mut(&key) else {
            return Err(key);
        };
        state.ready = false;
        let Some(job) = state.pending.pop_front() else {
            return Err(key);
        };
        state.running += 1;
        self.len -= 1;
        Self::ready_if(
            state,
            || key,
            per_key,
            threshold,
            &mut self.cold,
            &mut self.hot,
        );
        Ok(job)
    }

    /// Puts `key` (whose state is `state`) in a ready list if it may start an item now.
    fn ready_if(
        state: &mut KeyState<T, K>,
        key: impl FnOnce() -> K,
        per_key: usize,
        threshold: usize,
        cold: &mut VecDeque<K>,
        hot: &mut VecDeque<K>,
    ) {
        if state.ready || state.pending.is_empty() || state.running >= per_key {
            return;
        }
        state.ready = true;
        if state.pending.len() > threshold {
            hot.push_back(key());
        } else {
            cold.push_back(key());
        }
    }
}

impl<T: Send + 'static, K: Hash + Eq + Clone + Send + 'static> Queue<T> for KeyedQueue<T, K> {
    type Route = K;

    const ALWAYS_ACCEPTS: bool = true;

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, job: Job<T, K>) -> bool {
        let spare = &mut self.spare;
        let state = self.keys.get_or_insert_with(&job.route, || KeyState {
            pending: spare.pop().unwrap_or_default(),
            running: 0,
            ready: false,
        });
        // The key is cloned for a ready list only when it joins one (a busy key does not).
        let key = || job.route.clone();
        let (per_key, threshold) = (self.per_key, self.threshold);
        if !state.ready && state.running < per_key {
            state.ready = true;
            // As `ready_if` with this job counted among the pending.
            if state.pending.len() + 1 > threshold {
                self.hot.push_back(key());
            } else {
                self.cold.push_back(key());
            }
        }
        state.pending.push_back(job);
        self.len += 1;
        self.peak_keys = self.peak_keys.max(self.keys.len());
        false
    }

    fn pop(&mut self, cx: &mut PopCx<'_>) -> Option<Job<T, K>> {
        if cx.global {
            return self.pop_overdue();
        }
        loop {
            let key = self.cold.pop_front().or_else(|| self.hot.pop_front())?;
            match self.start_head(key) {
                Ok(job) => return Some(job),
                // Met in a ready list with nothing left: forgotten now if idle.
                Err(key) => self.reclaim(&key),
            }
        }
    }

    fn requeue(&mut self, job: Job<T, K>) {
        let key = job.route.clone();
        if let Some(state) = self.keys.get_mut(&key) {
            state.running = state.running.saturating_sub(1);
            state.pending.push_front(job);
            self.len += 1;
            self.make_ready(&key);
        } else {
            self.push(job);
        }
    }

    fn finished(&mut self, key: &K) {
        // One lookup, also when the key is forgotten.
        let Some(mut entry) = self.keys.occupied(key) else {
            return;
        };
        let state = &mut entry.get_mut().1;
        state.running = state.running.saturating_sub(1);
        let (per_key, threshold) = (self.per_key, self.threshold);
        Self::ready_if(
            state,
            || key.clone(),
            per_key,
            threshold,
            &mut self.cold,
            &mut self.hot,
        );
        if state.pending.is_empty() && state.running == 0 && !state.ready {
            let ((_, state), _) = entry.remove();
            self.keep_spare(state.pending);
        }
    }

    fn remove(&mut self, id: OperationId) -> Option<Job<T, K>> {
        let (key, index) = self.keys.iter().find_map(|(k, s)| {
            s.pending
                .iter()
                .position(|j| j.id == id)
                .map(|i| (k.clone(), i))
        })?;
        let state = self.keys.get_mut(&key)?;
        let job = state.pending.remove(index)?;
        self.len -= 1;
        if state.ready && state.pending.is_empty() && state.running == 0 {
            // Waiting in a ready list with nothing left to start: taken out of it, so the
            // key is forgotten now, not at the next start (a paused coordinator has none).
            state.ready = false;
            self.cold.retain(|k| *k != key);
            self.hot.retain(|k| *k != key);
        }
        self.reclaim(&key);
        Some(job)
    }

    fn take_all(&mut self) -> Vec<Job<T, K>> {
        let mut jobs: Vec<_> = self
            .keys
            .values_mut()
            .flat_map(|s| {
                s.ready = false;
                s.pending.drain(..)
            })
            .collect();
        jobs.sort_by_key(|j| j.id);
        self.cold.clear();
        self.hot.clear();
        self.keys.retain(|s| s.running > 0);
        self.spare.clear();
        self.len = 0;
        jobs
    }

    fn remove_where(&mut self, remove: &mut Select<'_, T, K>) -> Vec<Job<T, K>> {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for (key, state) in self.keys.iter_mut() {
            let (gone, keep): (VecDeque<_>, VecDeque<_>) =
                state.pending.drain(..).partition(|j| remove(j));
            state.pending = keep;
            if !gone.is_empty() {
                touched.push(key.clone());
            }
            out.extend(gone);
        }
        self.len -= out.len();
        // A key left with nothing is forgotten now, taken out of its ready list too: waiting
        // for `pop` to meet it is waiting for ever while a coordinator-wide deferral holds
        // (`max_defer` with `DeferPolicy::Cancel` removes through here, and nothing pops),
        // so every key seen meanwhile would stay.
        let mut forgot = false;
        for key in &touched {
            if let Some(state) = self.keys.get_mut(key)
                && state.pending.is_empty()
                && state.running == 0
            {
                state.ready = false;
                self.forget(key);
                forgot = true;
            }
        }
        if forgot {
            let keys = &self.keys;
            self.cold.retain(|k| keys.get(k).is_some());
            self.hot.retain(|k| keys.get(k).is_some());
        }
        out.sort_by_key(|j| j.id);
        out
    }

    fn for_each(&self, f: &mut Visit<'_, T, K>) {
        self.keys.values().flat_map(|s| &s.pending).for_each(f);
    }

    fn for_each_mut(&mut self, f: &mut VisitMut<'_, T, K>) {
        self.keys
            .values_mut()
            .flat_map(|s| &mut s.pending)
            .for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{KeyedQueue, SPARE_CAPACITY};
    use crate::coordinator::queue::job::{Job, PopCx};
    use crate::coordinator::queue::policy::Queue;
    use crate::{OperationId, SignalSink};

    fn job(id: u64, key: u64) -> Job<u64, u64> {
        Job::new(OperationId::from_raw(id), id, key, None)
    }

    /// A pop's context with no deferral.
    fn pop_cx(sink: &SignalSink) -> PopCx<'_> {
        PopCx {
            sink,
            now: tokio::time::Instant::now(),
            global: false,
            held: false,
        }
    }

    /// Pops every startable job and reports each finished.
    fn run_all(queue: &mut KeyedQueue<u64, u64>) -> usize {
        let sink = SignalSink::default();
        let mut cx = pop_cx(&sink);
        let mut started = Vec::new();
        while let Some(job) = queue.pop(&mut cx) {
            started.push(job.route);
        }
        for key in &started {
            queue.finished(key);
        }
        started.len()
    }

    #[test]
    fn a_burst_of_forgotten_keys_leaves_its_pending_lists_for_the_next_burst() {
        let mut queue = KeyedQueue::new(1, 4);
        for key in 0..1000 {
            queue.push(job(key, key));
        }
        assert_eq!(run_all(&mut queue), 1000);
        assert_eq!(queue.key_count(), 0);
        // Every list is kept (the queue held all 1,000 keys at once) ...
        assert_eq!(queue.spare.len(), 1000);
        assert_eq!(queue.peak_keys, 1000);
        // ... and the next burst of new keys takes them all, allocating none.
        for key in 1000..2000 {
            queue.push(job(key, key));
        }
        assert!(queue.spare.is_empty());
        assert_eq!(run_all(&mut queue), 1000);
        assert_eq!(queue.spare.len(), 1000);
    }

    /// A key whose clones are counted.
    #[derive(Debug)]
    struct Counted(u64, Arc<AtomicUsize>);

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.1.fetch_add(1, Ordering::Relaxed);
            Self(self.0, Arc::clone(&self.1))
        }
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    impl Eq for Counted {}

    impl std::hash::Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    #[test]
    fn a_key_is_cloned_only_to_enter_the_table_or_a_ready_list() {
        let clones = Arc::new(AtomicUsize::new(0));
        let key = |n| Counted(n, Arc::clone(&clones));
        let counted = || clones.load(Ordering::Relaxed);
        let mut queue = KeyedQueue::new(1, 4);
        let sink = SignalSink::default();
        let mut cx = pop_cx(&sink);
        // A new key: into the table, and into a ready list.
        queue.push(Job::new(OperationId::from_raw(1), 1, key(7), None));
        assert_eq!(counted(), 2);
        let started = queue.pop(&mut cx).map(|job| job.id);
        assert_eq!(started, Some(OperationId::from_raw(1)));
        // The key is busy (one at a time): more of its items wait without a clone.
        for id in 2..10 {
            queue.push(Job::new(OperationId::from_raw(id), id, key(7), None));
        }
        assert_eq!(counted(), 2);
        assert!(queue.pop(&mut cx).is_none(), "the key is busy");
        // Its item finished: the key is ready again (one clone for the list).
        queue.finished(&key(7));
        assert_eq!(counted(), 3);
        let next = queue.pop(&mut cx).map(|job| job.id);
        assert_eq!(next, Some(OperationId::from_raw(2)), "in order");
    }

    #[test]
    fn a_hot_keys_grown_list_is_not_kept() {
        let mut queue = KeyedQueue::new(1, 4);
        let backlog = 4 * SPARE_CAPACITY as u64;
        for id in 0..backlog {
            queue.push(job(id, 7));
        }
        for _ in 0..backlog {
            assert_eq!(run_all(&mut queue), 1);
        }
        assert_eq!(queue.key_count(), 0);
        assert!(
            queue.spare.is_empty(),
            "a list of {backlog} jobs is dropped"
        );
    }
}
