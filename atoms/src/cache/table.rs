//! The cache's table: slots, expiry checks, eviction and the shared computations.

use std::collections::HashMap;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use ephemeral::Signal;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

use super::{CacheError, CacheOptions, CacheStats, EvictionReason};

pub(super) type Factory<K, V, E> = Arc<dyn Fn(K) -> BoxFuture<'static, Result<V, E>> + Send + Sync>;
pub(super) type Load<V, E> = Shared<BoxFuture<'static, Result<V, CacheError<E>>>>;
pub(super) type OnEvict<K, V> = Arc<dyn Fn(&K, &V, EvictionReason) + Send + Sync>;

pub(super) enum Slot<V, E> {
    Ready {
        value: V,
        created: Instant,
        last_read: Instant,
    },
    Loading {
        generation: u64,
        load: Load<V, E>,
    },
}

pub(super) struct State<K, V, E> {
    pub(super) slots: HashMap<K, Slot<V, E>>,
    pub(super) generation: u64,
    pub(super) stats: CacheStats,
}

pub(super) struct Inner<K, V, E> {
    pub(super) factory: Factory<K, V, E>,
    pub(super) options: CacheOptions,
    pub(super) on_evict: Option<OnEvict<K, V>>,
    pub(super) state: Mutex<State<K, V, E>>,
}

/// An eviction to report once the lock is released.
pub(super) type Evicted<K, V> = (K, V, EvictionReason);

/// What a read found.
pub(super) enum Step<K, V, E> {
    Hit(V),
    Join(Load<V, E>),
    Miss(Load<V, E>, Vec<Evicted<K, V>>),
}

impl<K, V, E> Inner<K, V, E> {
    pub(super) fn state(&self) -> MutexGuard<'_, State<K, V, E>> {
        // Every update leaves the table consistent before any call that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn expired(&self, created: Instant, last_read: Instant, now: Instant) -> bool {
        let past = |from: Instant, ttl| now.saturating_duration_since(from) >= ttl;
        self.options.sliding.is_some_and(|ttl| past(last_read, ttl))
            || self.options.absolute.is_some_and(|ttl| past(created, ttl))
    }

    pub(super) fn raise(&self, name: &str, reason: Option<EvictionReason>) {
        let Some(sink) = &self.options.sink else {
            return;
        };
        let Ok(mut builder) = Signal::build(name) else {
            return;
        };
        if let Some(key) = &self.options.name {
            builder = builder.key(key.clone());
        }
        if let Some(reason) = reason {
            builder = builder.header("reason", reason.as_str());
        }
        // Reporting must never fail a read.
        let _ = sink.raise_with(builder);
    }

    /// Runs the callback and raises the signals, outside the lock.
    pub(super) fn report(&self, evicted: Vec<Evicted<K, V>>) {
        for (key, value, reason) in evicted {
            if let Some(on_evict) = &self.on_evict {
                // A panicking callback must not poison a read; it is logged and skipped.
                let called =
                    std::panic::catch_unwind(AssertUnwindSafe(|| on_evict(&key, &value, reason)));
                if called.is_err() {
                    tracing::warn!(%reason, "cache eviction callback panicked");
                }
            }
            self.raise("cache.evict", Some(reason));
        }
    }
}

impl<K, V, E> State<K, V, E>
where
    K: Hash + Eq + Clone,
{
    pub(super) fn count(&mut self, reason: EvictionReason) {
        match reason {
            EvictionReason::Expired => self.stats.expired += 1,
            EvictionReason::Size => self.stats.evicted_size += 1,
            EvictionReason::Explicit => self.stats.evicted_explicit += 1,
        }
    }

    pub(super) fn remove(&mut self, key: &K, reason: EvictionReason, out: &mut Vec<Evicted<K, V>>) {
        if let Some(Slot::Ready { value, .. }) = self.slots.remove(key) {
            self.count(reason);
            out.push((key.clone(), value, reason));
        }
    }
}

impl<K, V, E> Inner<K, V, E>
where
    K: Hash + Eq + Clone,
{
    pub(super) fn purge(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        let expired: Vec<K> = state
            .slots
            .iter()
            .filter(|(_, slot)| match slot {
                Slot::Ready {
                    created, last_read, ..
                } => self.expired(*created, *last_read, now),
                Slot::Loading { .. } => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            state.remove(&key, EvictionReason::Expired, out);
        }
    }

    /// Frees one place if the cache is full: expired entries first, then abandoned
    /// computations (no request is waiting on them), then the least recently read value.
    pub(super) fn make_room(
        &self,
        state: &mut State<K, V, E>,
        now: Instant,
        out: &mut Vec<Evicted<K, V>>,
    ) {
        if state.slots.len() < self.options.max_size {
            return;
        }
        self.purge(state, now, out);
        // Only the table holds an abandoned load's future: nobody awaits its result.
        state.slots.retain(|_, slot| match slot {
            Slot::Loading { load, .. } => load.strong_count().is_some_and(|n| n > 1),
            Slot::Ready { .. } => true,
        });
        while state.slots.len() >= self.options.max_size {
            let oldest = state
                .slots
                .iter()
                .filter_map(|(k, slot)| match slot {
                    Slot::Ready { last_read, .. } => Some((*last_read, k)),
                    Slot::Loading { .. } => None,
                })
                .min_by_key(|(t, _)| *t)
                .map(|(_, k)| k.clone());
            // Only computations in flight left: they finish and are bounded by the number
            // of concurrent distinct requests.
            let Some(key) = oldest else { break };
            state.remove(&key, EvictionReason::Size, out);
        }
    }
}

/// The shared computation for `key`: calls the factory, catches a panic, and stores the
/// value if the slot still waits for this generation.
pub(super) fn load<K, V, E>(inner: &Arc<Inner<K, V, E>>, key: K, generation: u64) -> Load<V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    let factory = inner.factory.clone();
    let weak: Weak<Inner<K, V, E>> = Arc::downgrade(inner);
    async move {
        let outcome = AssertUnwindSafe(async { factory(key.clone()).await })
            .catch_unwind()
            .await;
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(CacheError::Factory(Arc::new(e))),
            Err(panic) => Err(CacheError::Panicked(panic_message(panic.as_ref()))),
        };
        if let Some(inner) = weak.upgrade() {
            complete(&inner, key, generation, &result);
        }
        result
    }
    .boxed()
    .shared()
}

pub(super) fn complete<K: Hash + Eq, V: Clone, E>(
    inner: &Inner<K, V, E>,
    key: K,
    generation: u64,
    result: &Result<V, CacheError<E>>,
) {
    let now = Instant::now();
    let mut state = inner.state();
    let ours = matches!(
        state.slots.get(&key),
        Some(Slot::Loading { generation: g, .. }) if *g == generation
    );
    if !ours {
        // Replaced by an insert or removed while computing: the newer state wins.
        return;
    }
    match result {
        Ok(value) => {
            state.slots.insert(
                key,
                Slot::Ready {
                    value: value.clone(),
                    created: now,
                    last_read: now,
                },
            );
        }
        Err(_) => {
            state.slots.remove(&key);
            state.stats.load_failures += 1;
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
