//! Cache options, errors and statistics.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::SignalSink;

/// How a [`SlidingCache`](super::SlidingCache) expires and bounds its entries.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `sliding` | none | an entry expires this long after its last read |
/// | `absolute` | none | an entry expires this long after it was computed, read or not |
/// | `max_size` | 1024 | most values stored; beyond, the least recently read is evicted (computations in flight are not: see [`SlidingCache`](super::SlidingCache)) |
/// | `signals` | none | sink for `cache.hit`, `cache.miss` (a read joining a computation raises neither), `cache.evict` |
/// | `name` | none | key of those signals |
/// | `on_error` | none | told when the eviction callback panics |
///
/// With both expiries, the earlier one wins.
#[derive(Clone)]
#[must_use]
pub struct CacheOptions {
    pub(crate) sliding: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) max_size: usize,
    pub(crate) sink: Option<SignalSink>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) on_error: Option<CacheErrorCallback>,
}

/// A callback told about a panicking eviction callback; see [`CacheOptions::on_error`].
pub type CacheErrorCallback = Arc<dyn Fn(&EvictionCallbackFailure) + Send + Sync>;

/// A panic of a cache's eviction callback, as given to [`CacheOptions::on_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvictionCallbackFailure {
    /// Why the entry the callback was told about left the cache.
    pub reason: EvictionReason,
    /// The panic message.
    pub message: String,
}

impl fmt::Debug for CacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheOptions")
            .field("sliding", &self.sliding)
            .field("absolute", &self.absolute)
            .field("max_size", &self.max_size)
            .field("sink", &self.sink)
            .field("name", &self.name)
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            sliding: None,
            absolute: None,
            max_size: 1024,
            sink: None,
            name: None,
            on_error: None,
        }
    }
}

impl CacheOptions {
    /// Expires an entry `ttl` after its last read.
    pub fn sliding(mut self, ttl: Duration) -> Self {
        self.sliding = Some(ttl);
        self
    }

    /// Expires an entry `ttl` after it was computed, however often it is read.
    pub fn absolute(mut self, ttl: Duration) -> Self {
        self.absolute = Some(ttl);
        self
    }

    /// The most values stored at once (at least 1). Computations in flight take a place but
    /// are never evicted; see [`SlidingCache`](super::SlidingCache).
    pub fn max_size(mut self, entries: usize) -> Self {
        self.max_size = entries;
        self
    }

    /// Raises `cache.hit` (a read answered from the cache), `cache.miss` (a read that starts a
    /// computation; one joining a computation already running raises nothing) and
    /// `cache.evict` (header `reason`) into `sink`.
    pub fn signals(mut self, sink: SignalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Names this cache; its signals carry the name as their key.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(Arc::from(name));
        self
    }

    /// Tells `callback` when the eviction callback panics (the panic is caught either way;
    /// every one is also counted in [`CacheStats::callback_failures`] and logged). A panic in
    /// `callback` itself is caught and dropped.
    pub fn on_error(
        mut self,
        callback: impl Fn(&EvictionCallbackFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), CacheConfigError> {
        if self.max_size == 0 {
            return Err(CacheConfigError::ZeroMaxSize);
        }
        if self.sliding.is_some_and(|d| d.is_zero()) || self.absolute.is_some_and(|d| d.is_zero()) {
            return Err(CacheConfigError::ZeroExpiry);
        }
        Ok(())
    }
}

/// A cache that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheConfigError {
    /// `max_size` was 0.
    #[error("cache max_size is 0: allow at least one entry")]
    ZeroMaxSize,
    /// An expiry was zero.
    #[error(
        "cache expiry is zero, so every value would be expired at once: give a positive duration or none"
    )]
    ZeroExpiry,
}

/// Why a value could not be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The factory returned this error (shared by every request that waited for it; errors
    /// are not cached, so the next request tries again).
    Factory(Arc<E>),
    /// The factory panicked with this message.
    Panicked(String),
}

// By hand: the error is shared through an `Arc`, so `E` need not be `Clone`.
impl<E> Clone for CacheError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Factory(e) => Self::Factory(e.clone()),
            Self::Panicked(message) => Self::Panicked(message.clone()),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CacheError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Factory(e) => write!(f, "cache factory failed: {e}"),
            Self::Panicked(message) => write!(f, "cache factory panicked: {message}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CacheError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Factory(e) => Some(e.as_ref()),
            Self::Panicked(_) => None,
        }
    }
}

/// Why an entry left the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvictionReason {
    /// Its sliding or absolute expiry passed: found by a read, a purge or room-making, or
    /// removed by `invalidate`, `clear` or `insert` after its expiry.
    Expired,
    /// The cache was full and it was the least recently read.
    Size,
    /// [`invalidate`](super::SlidingCache::invalidate), [`clear`](super::SlidingCache::clear)
    /// or [`insert`](super::SlidingCache::insert) over it while it was live.
    Explicit,
}

impl EvictionReason {
    /// `expired`, `size` or `explicit`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Size => "size",
            Self::Explicit => "explicit",
        }
    }
}

impl fmt::Display for EvictionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of a [`SlidingCache`](super::SlidingCache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Reads answered from a live entry.
    pub hits: u64,
    /// Reads that started a computation.
    pub misses: u64,
    /// Reads that joined a computation already running for their key.
    pub coalesced: u64,
    /// Computations that failed or panicked (also one whose key an
    /// [`insert`](super::SlidingCache::insert) took over meanwhile: its requests got the
    /// error).
    pub load_failures: u64,
    /// Entries evicted because they expired.
    pub expired: u64,
    /// Values evicted to stay within `max_size`: on a miss, an insert, or a computation
    /// completing into a full cache.
    pub evicted_size: u64,
    /// Entries removed explicitly.
    pub evicted_explicit: u64,
    /// Eviction callbacks that panicked (each caught, logged and given to
    /// [`CacheOptions::on_error`]).
    pub callback_failures: u64,
    /// Entries now (computed values and computations in flight).
    pub len: usize,
}
