//! `Store`: named values with a time to live, shared by processes (the bus) or machines (NATS).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use ephemeral::{Lagged, Name, Pattern};
use futures::stream::BoxStream;
use futures_core::Stream;

use super::backend::StoreBackend;
use super::{StoreError, check_key};

/// The most revisions a store keeps per key (the NATS key-value limit, kept on every backend).
pub const MAX_HISTORY: u8 = 64;

/// Options of a [`Store`], fixed when the store is created.
///
/// Opening an existing store keeps the options it was created with
/// ([`Store::options`] tells them); the ones passed are used only to create it.
///
/// # Examples
///
/// ```
/// use ephemeral_bus::retained::StoreOptions;
///
/// let options = StoreOptions::default().history(5).max_values(10_000);
/// assert_eq!(options.get_history(), 5);
/// assert_eq!(StoreOptions::default().history(200).get_history(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[must_use]
pub struct StoreOptions {
    pub(crate) history: u8,
    pub(crate) max_value_size: usize,
    pub(crate) max_values: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            history: 1,
            max_value_size: 1024 * 1024,
            max_values: 100_000,
        }
    }
}

impl StoreOptions {
    /// How many revisions to keep per key for [`Store::history`] (default 1: only the
    /// current value; clamped to 1..=64).
    ///
    /// A value set with a time to live starts its key's history over: when it expires the
    /// key is gone, and no older revision comes back (JetStream removes only the expired
    /// message, so on NATS the one before it would otherwise become the value again).
    pub fn history(mut self, revisions: u8) -> Self {
        self.history = revisions.clamp(1, MAX_HISTORY);
        self
    }

    /// The largest value accepted, in bytes (default 1 MiB); larger is
    /// [`StoreError::ValueTooLarge`].
    ///
    /// On NATS the server's `max_payload` (1 MiB by default) counts a value's headers too
    /// (its time to live, its owner: at most 134 bytes), so the maximum in effect is the
    /// lower of this and `max_payload` less 134 bytes: 1,048,442 bytes with both at their
    /// defaults. [`Store::options`] tells the maximum in effect; raise `max_payload` on the
    /// server to store values of a full mebibyte.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// The most values the store holds (default 100,000). Setting a *new* key beyond it is
    /// [`StoreError::Full`]; existing keys can still be updated. Expired values and values
    /// whose owner is gone do not count: on the bus, a set that finds the store full removes
    /// them first (on NATS the bound is not enforced, see [`retained`](super)). Zero is
    /// taken as one.
    pub fn max_values(mut self, values: u64) -> Self {
        self.max_values = values.max(1);
        self
    }

    /// Revisions kept per key.
    #[must_use]
    pub fn get_history(&self) -> u8 {
        self.history
    }

    /// The largest value accepted, in bytes.
    #[must_use]
    pub fn get_max_value_size(&self) -> usize {
        self.max_value_size
    }

    /// The most values the store holds.
    #[must_use]
    pub fn get_max_values(&self) -> u64 {
        self.max_values
    }
}

/// One value of a store, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    key: Name,
    value: Vec<u8>,
    revision: u64,
    set_at: SystemTime,
    expires_at: Option<SystemTime>,
    owner: Option<u64>,
}

impl Entry {
    /// An entry (for backends): `key` set to `value` at `set_at` as revision `revision`.
    #[must_use]
    pub fn new(key: Name, value: Vec<u8>, revision: u64, set_at: SystemTime) -> Self {
        Self {
            key,
            value,
            revision,
            set_at,
            expires_at: None,
            owner: None,
        }
    }

    /// The same entry expiring at `at` (for backends).
    #[must_use]
    pub fn with_expiry(mut self, at: Option<SystemTime>) -> Self {
        self.expires_at = at;
        self
    }

    /// The same entry owned by `owner` (for backends).
    #[must_use]
    pub fn with_owner(mut self, owner: Option<u64>) -> Self {
        self.owner = owner;
        self
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &Name {
        &self.key
    }

    /// The value bytes.
    #[must_use]
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as UTF-8 text, if it is.
    #[must_use]
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The value, taken out.
    #[must_use]
    pub fn into_value(self) -> Vec<u8> {
        self.value
    }

    /// The store-wide revision of this set (increasing with every change to the store).
    #[must_use]
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// When it was set, on the wall clock.
    #[must_use]
    pub fn set_at(&self) -> SystemTime {
        self.set_at
    }

    /// When it expires, on the wall clock; `None` if it never does.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The owner of an owned value (on the bus, the peer id of the handle that set it).
    #[must_use]
    pub fn owner(&self) -> Option<u64> {
        self.owner
    }
}

/// Why a value was removed, in a [`StoreEvent::Deleted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// [`Store::delete`].
    Deleted,
    /// [`Store::clear`].
    Cleared,
    /// It was an owned value and its owner is gone.
    OwnerGone,
}

/// One change to a store, from [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// A value was set.
    Set(Entry),
    /// A value was removed before its time.
    Deleted {
        /// The key.
        key: Name,
        /// The revision of the removal.
        revision: u64,
        /// Why.
        cause: Removal,
    },
    /// A value reached the end of its time to live.
    Expired {
        /// The key.
        key: Name,
        /// The revision of the expiry.
        revision: u64,
    },
}

impl StoreEvent {
    /// The key changed.
    #[must_use]
    pub fn key(&self) -> &Name {
        match self {
            StoreEvent::Set(entry) => entry.key(),
            StoreEvent::Deleted { key, .. } | StoreEvent::Expired { key, .. } => key,
        }
    }

    /// The revision of the change.
    #[must_use]
    pub fn revision(&self) -> u64 {
        match self {
            StoreEvent::Set(entry) => entry.revision(),
            StoreEvent::Deleted { revision, .. } | StoreEvent::Expired { revision, .. } => {
                *revision
            }
        }
    }
}

/// A store's counters, store-wide (every process's changes), from [`Store::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Live values now: neither expired nor owned by an owner that is gone, whether or not
    /// they were swept or reclaimed yet (as [`Store::entries`] would list them).
    pub values: u64,
    /// Bytes of the live values now (values only, not keys), counted as `values` is.
    pub bytes: u64,
    /// The latest revision.
    pub revision: u64,
    /// Sets so far.
    pub sets: u64,
    /// Values removed by `delete` and `clear` so far.
    pub deletes: u64,
    /// Values that expired so far.
    pub expired: u64,
    /// Owned values removed because their owner was gone, so far.
    pub reclaimed: u64,
}

/// Named values with a time to live, shared by every process of a bus, or by every
/// machine of a NATS cluster (the type does not depend on the backend).
///
/// * **Time to live.** `set(key, value, ttl)` with `ttl: None` keeps the value until it is
///   deleted; with a duration it expires then, on the wall clock (times cross processes;
///   in tests, the wall clock follows tokio's paused clock). An expired value is never
///   returned by [`get`](Self::get), [`entries`](Self::entries) or
///   [`history`](Self::history), even before it is swept; watchers see
///   [`StoreEvent::Expired`] when a process that has the store open sweeps it (at the
///   expiry, when one does), or when the key is set again before that sweep: on the bus
///   that set logs (and counts in [`StoreStats::expired`]) the expiry first, then the new
///   value. The bus keeps millisecond precision. On NATS, JetStream's
///   per-message time to live is whole seconds with a floor of one: any time to live is
///   accepted, reads return the value until its exact expiry and never after, and the
///   server removes it (watchers see `Expired`) at the time to live rounded up to whole
///   seconds (one at the least), so never before its expiry. An expiry ends the key: a
///   value set with a time to live starts its key's [`history`](StoreOptions::history)
///   over, so no older revision comes back once it is gone.
/// * **Owned values.** [`set_owned`](Self::set_owned) ties a value to the life of the
///   connection that set it: on the bus, to its peer, whose liveness is the lock it holds
///   (never its pid). A value whose owner is gone is never returned, and is removed when
///   anyone asks ([`get`](Self::get), [`entries`](Self::entries), [`reclaim`](Self::reclaim))
///   or when a watcher of the store notices the owner go.
/// * **Bounds.** At most [`max_values`](StoreOptions::max_values) values of at most
///   [`max_value_size`](StoreOptions::max_value_size) bytes, and
///   [`history`](StoreOptions::history) revisions per key; a watcher more than 4,096 changes
///   behind is told [`Lagged`]. On the bus the changes wait for watchers in a log that keeps
///   the last 4,096 changes of each store and at most 16 MiB of them (the newest change is
///   always kept): with big values a watcher may fall fewer changes behind (about 16 sets of
///   1 MiB values) before it is told `Lagged`, and the log never holds more than about
///   16 MiB of a store's values, so deleting values frees their space.
/// * **Crashes.** A set that returned `Ok` is in the database; a process killed in the
///   middle of a write leaves the previous value, never half of the new one.
///
/// `Store` is a cheap `Clone`. See [`Bus::store`](crate::Bus::store) for where the bus keeps it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ephemeral_bus::{Bus, BusOptions};
/// use ephemeral_bus::retained::StoreOptions;
///
/// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-store-{}", std::process::id()));
/// # let options = BusOptions::default().dir(&parent);
/// let bus = Bus::open_with("doc-store", options).await?;
/// let cache = bus.store("prices", StoreOptions::default()).await?;
///
/// cache.set("sku.42", b"9.99", Duration::from_secs(60)).await?;
/// assert_eq!(cache.get("sku.42").await?.as_deref(), Some(&b"9.99"[..]));
///
/// assert!(cache.delete("sku.42").await?);
/// assert_eq!(cache.get("sku.42").await?, None);
/// # drop((cache, bus)); let _ = std::fs::remove_dir_all(&parent);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn StoreBackend>,
}

impl Store {
    /// A store served by `backend` (for backend implementations).
    #[must_use]
    pub fn from_backend(backend: Arc<dyn StoreBackend>) -> Self {
        Self { backend }
    }

    /// The store's name.
    #[must_use]
    pub fn name(&self) -> &Name {
        self.backend.name()
    }

    /// The options in effect (those it was created with).
    pub fn options(&self) -> &StoreOptions {
        self.backend.options()
    }

    /// Sets `key` to `value`, for `ttl` (`None`: until deleted); returns the new revision.
    ///
    /// Pass a `Duration` or `None`: `set("k", b"v", Duration::from_secs(5))`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`], [`StoreError::ValueTooLarge`], [`StoreError::ZeroTtl`],
    /// [`StoreError::Full`] for a new key in a full store, or a backend failure.
    pub async fn set(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Option<Duration>>,
    ) -> Result<u64, StoreError> {
        self.set_inner(key, value.as_ref(), ttl.into(), false).await
    }

    /// Like [`set`](Self::set), and the value goes away with this connection: when the
    /// process dies (or the last handle of its bus is dropped), the value is no longer
    /// returned and is removed.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub async fn set_owned(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: impl Into<Option<Duration>>,
    ) -> Result<u64, StoreError> {
        self.set_inner(key, value.as_ref(), ttl.into(), true).await
    }

    async fn set_inner(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        owned: bool,
    ) -> Result<u64, StoreError> {
        check_key(key)?;
        let max = self.options().max_value_size;
        if value.len() > max {
            return Err(StoreError::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(StoreError::ZeroTtl);
        }
        self.backend.set(key, value, ttl, owned).await
    }

    /// The live value of `key`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`], or a backend failure.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        if let Some(answer) = self.backend.get_now(key) {
            return answer;
        }
        self.backend.get(key).await
    }

    /// The live entry of `key` (value, revision, times, owner), if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`], or a backend failure.
    pub async fn entry(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        self.backend.entry(key).await
    }

    /// Deletes `key` and its history; whether a live value was there.
    ///
    /// A value that expired, or whose owner is gone, is not live (`get` returns nothing
    /// for it): it is removed all the same, as what it is (watchers see
    /// [`StoreEvent::Expired`], or [`StoreEvent::Deleted`] with [`Removal::OwnerGone`],
    /// counted in [`StoreStats::expired`] or [`StoreStats::reclaimed`]), and the answer is
    /// `false`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`], or a backend failure.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        self.backend.delete(key).await
    }

    /// Deletes every value; returns how many live values were removed.
    ///
    /// Expired values and values whose owner is gone are removed as what they are (as
    /// [`delete`](Self::delete) says) and not counted.
    ///
    /// On the bus a clear is one transaction, except in a full database
    /// ([`StoreError::DatabaseFull`]), where one transaction has no room to remove much: it
    /// then removes the values a few at a time, each step freeing room for the next, so a
    /// clear works when the database is full (a set racing it may then survive it).
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        self.backend.clear().await
    }

    /// Every live entry, sorted by key (never an expired one, nor one whose owner is gone).
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.backend.entries().await
    }

    /// The kept revisions of `key` (up to [`StoreOptions::history`]), oldest first, each
    /// still live; empty once the key is deleted or expired, and once the owner of its
    /// current value is gone (as [`get`](Self::get) and [`entry`](Self::entry) return
    /// nothing then: the reclaim removes the key with its whole history).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidKey`], or a backend failure.
    pub async fn history(&self, key: &str) -> Result<Vec<Entry>, StoreError> {
        check_key(key)?;
        self.backend.history(key).await
    }

    /// The store's counters.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.backend.stats().await
    }

    /// The changes to keys matching `pattern` from now on: sets, deletions, expiries.
    ///
    /// Changes arrive in revision order. A watcher that falls too far behind gets
    /// `Err(Lagged(n))` for the `n` changes it missed, then carries on. On the bus, `n`
    /// counts the changes of the whole store it skipped, to any key: the store keeps one
    /// log of changes, and what was trimmed from it can no longer be matched against the
    /// pattern, so `n` is at least the number of matching changes missed (it can be more:
    /// a lag is reported even when none of the skipped changes matched). On NATS, `n`
    /// counts only matching changes. A set whose value's
    /// time to live ran out before the watch hands it out (when the watcher reads it, also
    /// after the backend fetched it) is skipped (a value is never handed out dead): the
    /// key's next change follows, its `Expired`, or the set or deletion that replaced it
    /// first (the revisions show the gap).
    ///
    /// # Errors
    ///
    /// [`StoreError::EmptyPattern`] for a pattern that matches no key (empty, or every
    /// alternative blank or holding whitespace or a control character: `""`, `"a b"`), as
    /// a durable subscription refuses it; or a backend failure.
    pub async fn watch(&self, pattern: &str) -> Result<StoreWatch, StoreError> {
        let compiled = Pattern::new(pattern);
        if compiled.is_empty() {
            return Err(StoreError::EmptyPattern {
                pattern: pattern.to_owned(),
            });
        }
        let pattern = compiled;
        let events = self.backend.watch(pattern.clone()).await?;
        Ok(StoreWatch { pattern, events })
    }

    /// Removes now the owned values whose owner is gone; returns how many.
    ///
    /// # Errors
    ///
    /// A backend failure.
    pub async fn reclaim(&self) -> Result<u64, StoreError> {
        self.backend.reclaim().await
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The changes of a store matching a pattern, from [`Store::watch`]: a
/// `Stream<Item = Result<StoreEvent, Lagged>>`. Dropping it stops watching.
///
/// It ends when its backend closes. On the bus, a failed read of the database is retried
/// with a growing pause and logged as a `tracing` warning; after 8 failures in a row the
/// watch ends, logged as a `tracing` error — never silently. A caught-up watch also reads
/// the store's log again every second without a notice, so a writer that exits right after
/// its `set` delays the change by up to a second, never loses it ([`Bus::flush`](crate::Bus::flush)
/// before exiting sends the notice on its way).
#[must_use = "a watch does nothing unless polled"]
pub struct StoreWatch {
    pattern: Pattern,
    events: BoxStream<'static, Result<StoreEvent, Lagged>>,
}

impl StoreWatch {
    /// The pattern watched.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

impl Stream for StoreWatch {
    type Item = Result<StoreEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for StoreWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreWatch")
            .field("pattern", &self.pattern.as_str())
            .finish_non_exhaustive()
    }
}
