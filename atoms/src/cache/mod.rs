//! A sliding cache: values computed on demand, once per key, with sliding and absolute
//! expiry and a max size.
//!
//! See [`SlidingCache`]. In short: concurrent requests for one key share one factory call,
//! an expired value is never returned, a full cache evicts the least recently read value,
//! and every eviction is reported with its [`EvictionReason`] (expired, size, explicit) to a
//! callback and as a `cache.evict` signal.
//!
//! # Comparison with a plain `HashMap` behind a lock
//!
//! A map answers "is it there"; this cache also answers "is it still fresh", computes the
//! missing value without a thundering herd, and never stores more values than its bound.

mod options;
mod sliding;
mod table;

pub use options::{
    CacheConfigError, CacheError, CacheErrorCallback, CacheOptions, CacheStats,
    EvictionCallbackFailure, EvictionReason,
};
pub use sliding::SlidingCache;
