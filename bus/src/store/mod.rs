//! The bus backend of [`Store`]: values in the bus's database.

pub(crate) mod ops;
mod watch;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{Lagged, Name, Pattern};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::db::codec::{self, STORE, decode_kv, hist_prefix, kv_key, split_exp_key, split_own_key};
use crate::db::owners::{self, Liveness};
use crate::db::{self, Db, names};
use crate::retained::backend::StoreBackend;
use crate::retained::{
    Entry, Retained, Room, RoomOptions, Store, StoreError, StoreEvent, StoreOptions, StoreStats,
    check_name, clock,
};
use crate::{Bus, DurableOptions, DurableSubscription};

impl Bus {
    /// Opens the store `name` of this bus, creating it with `options` if it does not
    /// exist yet (an existing store keeps the options it was created with).
    ///
    /// The store lives in the bus's database (`<bus directory>/retained/`, see
    /// [`retained`](crate::retained)): every process that opens this bus and this store
    /// sees the same values, and they outlive every process (not a reboot, under
    /// `/dev/shm`). Owned values ([`Store::set_owned`]) belong to this handle's peer.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidName`], or the database could not be opened.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ephemeral_bus::{Bus, BusOptions};
    /// use ephemeral_bus::retained::StoreOptions;
    ///
    /// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-bus-store-{}", std::process::id()));
    /// let bus = Bus::open_with("doc-bus-store", BusOptions::default().dir(&parent)).await?;
    /// let config = bus.store("config", StoreOptions::default().history(3)).await?;
    /// config.set("log.level", b"info", None).await?;
    /// config.set("log.level", b"debug", None).await?;
    /// let history: Vec<_> = config.history("log.level").await?.into_iter().map(|e| e.into_value()).collect();
    /// assert_eq!(history, [b"info".to_vec(), b"debug".to_vec()]);
    /// # drop((config, bus)); let _ = std::fs::remove_dir_all(&parent);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn store(&self, name: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let name = check_name(name)?;
        let db = Db::open_for(self, true).await?.ok_or(StoreError::Closed)?;
        let (id, options) = names::open(&db, STORE, &name, &options).await?;
        Ok(Store::from_backend(Arc::new(BusStore {
            topic: db::kv_topic(id),
            db,
            bus: self.clone(),
            id,
            name,
            options,
            me: self.peer_id(),
        })))
    }
}

impl Retained for Bus {
    async fn store(&self, name: &str, options: StoreOptions) -> Result<Store, StoreError> {
        Bus::store(self, name, options).await
    }

    async fn room(&self, name: &str, options: RoomOptions) -> Result<Room, StoreError> {
        Bus::room(self, name, options).await
    }

    async fn subscribe_durable(
        &self,
        pattern: &str,
        name: &str,
    ) -> Result<DurableSubscription, StoreError> {
        Bus::subscribe_durable(self, pattern, name).await
    }

    async fn subscribe_durable_with(
        &self,
        pattern: &str,
        name: &str,
        options: DurableOptions,
    ) -> Result<DurableSubscription, StoreError> {
        Bus::subscribe_durable_with(self, pattern, name, options).await
    }
}

/// A store of the bus.
pub(crate) struct BusStore {
    pub(crate) db: Arc<Db>,
    pub(crate) bus: Bus,
    pub(crate) id: u32,
    pub(crate) name: Name,
    pub(crate) options: StoreOptions,
    /// This handle's peer id: the owner of the values it sets owned.
    pub(crate) me: u64,
    pub(crate) topic: String,
}

impl fmt::Debug for BusStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusStore")
            .field("name", &self.name.as_str())
            .field("id", &self.id)
            .field("db", &self.db.path)
            .finish_non_exhaustive()
    }
}

/// The most values one write of a clear removes when the database is full.
const CLEAR_STEP: usize = 64;

/// A record read from `kv`, owned.
struct Found {
    revision: u64,
    set_at_ms: u64,
    expires_ms: u64,
    owner: u64,
    value: Vec<u8>,
}

impl Found {
    fn entry(self, key: Name) -> Entry {
        Entry::new(
            key,
            self.value,
            self.revision,
            clock::from_ms(self.set_at_ms),
        )
        .with_expiry((self.expires_ms != 0).then(|| clock::from_ms(self.expires_ms)))
        .with_owner((self.owner != 0).then_some(self.owner))
    }
}

fn corrupt(db: &Db) -> StoreError {
    StoreError::Database {
        path: db.path.clone(),
        op: "read",
        message: "a record could not be decoded: the database is damaged or of another version; remove the directory".into(),
    }
}

impl BusStore {
    /// The live record of `key`: a lookup, here (never waits).
    fn live(&self, key: &str) -> Result<Option<Found>, StoreError> {
        let now = clock::now_ms();
        let found = self.db.read(|txn, t| {
            let Some(r) =
                t.kv.get(txn, codec::KvKey::new(self.id, key).as_bytes())
                    .map_err(self.db.err("read"))?
            else {
                return Ok(None);
            };
            let rec = decode_kv(r).ok_or_else(|| corrupt(&self.db))?;
            // Another process may have set it: this process's sweeper learns of its expiry.
            self.db.sweeper.poke(rec.expires_ms);
            if clock::expired(rec.expires_ms, now) {
                return Ok(None);
            }
            Ok(Some(Found {
                revision: rec.revision,
                set_at_ms: rec.set_at_ms,
                expires_ms: rec.expires_ms,
                owner: rec.owner,
                value: rec.value.to_vec(),
            }))
        })?;
        match found {
            Some(f) if self.owner_gone(f.owner) => {
                self.reclaim_in_background(vec![f.owner]);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// The owner of the value of `key` if it is another peer's and that peer is gone.
    fn dead_owner_of(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let owner = self.db.read(|txn, t| {
            Ok(t.kv
                .get(txn, codec::KvKey::new(self.id, key).as_bytes())
                .map_err(self.db.err("read"))?
                .and_then(decode_kv)
                .map_or(0, |rec| rec.owner))
        })?;
        Ok(self.owner_gone(owner).then_some(owner))
    }

    /// Whether `owner` (0: nobody) is another peer that is gone.
    fn owner_gone(&self, owner: u64) -> bool {
        owner != 0 && owner != self.me && !owners::alive(&self.db.bus_dir, owner)
    }

    /// [`Store::clear`] in a full database: at most [`CLEAR_STEP`] values per write,
    /// fewer (down to one) while even that finds no room.
    async fn clear_in_steps(&self) -> Result<u64, StoreError> {
        let id = self.id;
        let (mut step, mut total) = (CLEAR_STEP, 0);
        loop {
            let now = clock::now_ms();
            match self.db.write(move |w| ops::clear(w, id, now, step)).await {
                Ok((removed, more, changed)) => {
                    ops::ring_all(&self.db, &changed).await;
                    total += removed;
                    if !more {
                        return Ok(total);
                    }
                }
                Err(StoreError::DatabaseFull { .. }) if step > 1 => step /= 2,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the values of `dead` owners without making the caller wait.
    fn reclaim_in_background(&self, dead: Vec<u64>) {
        let db = Arc::clone(&self.db);
        tokio::spawn(async move {
            let _ = reclaim_owners(&db, dead).await;
        });
    }
}

/// Removes the owned values of every owner in `dead`; how many. Rings the stores changed.
pub(crate) async fn reclaim_owners(db: &Db, dead: Vec<u64>) -> Result<u64, StoreError> {
    let mut total = 0;
    for owner in dead {
        let now = clock::now_ms();
        let (removed, changed) = db.write(move |w| ops::reclaim(w, owner, now)).await?;
        ops::ring_all(db, &changed).await;
        total += removed;
    }
    Ok(total)
}

impl StoreBackend for BusStore {
    fn name(&self) -> &Name {
        &self.name
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
        owned: bool,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let now = clock::now_ms();
            let expires = clock::expiry_ms(now, ttl);
            let owner = if owned { self.me } else { 0 };
            let (id, name, options) = (self.id, self.name.clone(), self.options.clone());
            let (key, value) = (Arc::<str>::from(key), Arc::<[u8]>::from(value));
            let write = || {
                let (name, options) = (name.clone(), options.clone());
                let (key, value) = (Arc::clone(&key), Arc::clone(&value));
                self.db.write(move |w| {
                    ops::set(w, id, &name, &options, &key, &value, expires, owner, now)
                })
            };
            let revision = match write().await {
                // Full, counting values whose owner is gone (a set cannot tell liveness
                // inside its write): those are not live (`stats`, `entries` leave them
                // out), so they are reclaimed and the set tried once more.
                Err(StoreError::Full { .. }) if self.reclaim().await? > 0 => write().await?,
                other => other?,
            };
            self.db.sweeper.poke(expires);
            db::ring(&self.bus, &self.topic, revision).await;
            Ok(revision)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move { Ok(self.live(key)?.map(|f| f.value)) })
    }

    fn get_now(&self, key: &str) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        // A read transaction on the memory map: it never waits.
        Some(self.live(key).map(|found| found.map(|f| f.value)))
    }

    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, StoreError>> {
        Box::pin(async move {
            let Some(found) = self.live(key)? else {
                return Ok(None);
            };
            let key = Name::new(key).map_err(|source| StoreError::InvalidKey {
                key: key.to_owned(),
                source,
            })?;
            Ok(Some(found.entry(key)))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // A value whose owner is gone is not live (`get` returns nothing): reclaimed as
            // such (`Deleted(OwnerGone)`, counted in `reclaimed`), and the delete finds
            // no live value. `live` starts that reclaim; it is awaited here.
            if let Some(owner) = self.dead_owner_of(key)? {
                reclaim_owners(&self.db, vec![owner]).await?;
            }
            let now = clock::now_ms();
            let id = self.id;
            let key = key.to_owned();
            let (live, changed) = self
                .db
                .write(move |w| ops::delete(w, id, &key, now))
                .await?;
            ops::ring_all(&self.db, &changed).await;
            Ok(live)
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            // Values whose owner is gone are not live: reclaimed as such first, so the
            // count is of live values and their watchers hear `OwnerGone`.
            self.reclaim().await?;
            let id = self.id;
            let now = clock::now_ms();
            match self
                .db
                .write(move |w| ops::clear(w, id, now, usize::MAX))
                .await
            {
                Ok((removed, _, changed)) => {
                    ops::ring_all(&self.db, &changed).await;
                    Ok(removed)
                }
                // A full database has no room for the pages one big removal writes before it
                // commits (LMDB reuses freed pages only after): a few values at a time, each
                // write freeing room for the next.
                Err(StoreError::DatabaseFull { .. }) => self.clear_in_steps().await,
                Err(e) => Err(e),
            }
        })
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        Box::pin(async move {
            let (id, me) = (self.id, self.me);
            let db = Arc::clone(&self.db);
            let now = clock::now_ms();
            let (entries, dead) = db
                .clone()
                .scan(move |txn, t| {
                    let mut liveness = Liveness::new(&db.bus_dir, me);
                    let mut entries = Vec::new();
                    for item in
                        t.kv.prefix_iter(txn, &codec::id_key(id))
                            .map_err(db.err("read"))?
                    {
                        let (k, r) = item.map_err(db.err("read"))?;
                        let rec = decode_kv(r).ok_or_else(|| corrupt(&db))?;
                        db.sweeper.poke(rec.expires_ms);
                        if clock::expired(rec.expires_ms, now) || !liveness.keeps(rec.owner) {
                            continue;
                        }
                        let key = std::str::from_utf8(k.get(4..).unwrap_or_default())
                            .ok()
                            .and_then(|k| Name::new(k).ok())
                            .ok_or_else(|| corrupt(&db))?;
                        entries.push(
                            Found {
                                revision: rec.revision,
                                set_at_ms: rec.set_at_ms,
                                expires_ms: rec.expires_ms,
                                owner: rec.owner,
                                value: rec.value.to_vec(),
                            }
                            .entry(key),
                        );
                    }
                    Ok((entries, liveness.dead()))
                })
                .await?;
            if !dead.is_empty() {
                reclaim_owners(&self.db, dead).await?;
            }
            Ok(entries)
        })
    }

    fn history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Entry>, StoreError>> {
        Box::pin(async move {
            let name = Name::new(key).map_err(|source| StoreError::InvalidKey {
                key: key.to_owned(),
                source,
            })?;
            if self.options.history <= 1 {
                return Ok(self.live(key)?.map(|f| f.entry(name)).into_iter().collect());
            }
            let now = clock::now_ms();
            // At most `history` (64) records: a bounded read. With the owner of the current
            // value, which decides for the whole key.
            let (current_owner, found): (u64, Vec<Found>) = self.db.read(|txn, t| {
                let current_owner =
                    t.kv.get(txn, codec::KvKey::new(self.id, key).as_bytes())
                        .map_err(self.db.err("read"))?
                        .map(|r| decode_kv(r).ok_or_else(|| corrupt(&self.db)))
                        .transpose()?
                        .map_or(0, |rec| rec.owner);
                let mut found = Vec::new();
                for item in t
                    .hist
                    .prefix_iter(txn, &hist_prefix(self.id, key))
                    .map_err(self.db.err("read history"))?
                {
                    let (_, r) = item.map_err(self.db.err("read history"))?;
                    let rec = decode_kv(r).ok_or_else(|| corrupt(&self.db))?;
                    if !clock::expired(rec.expires_ms, now) {
                        found.push(Found {
                            revision: rec.revision,
                            set_at_ms: rec.set_at_ms,
                            expires_ms: rec.expires_ms,
                            owner: rec.owner,
                            value: rec.value.to_vec(),
                        });
                    }
                }
                Ok((current_owner, found))
            })?;
            // Owned revisions go with their owner, as the value itself does. When the
            // current value's owner is gone the key is (its reclaim removes the key and its
            // whole history), as `get` and `entry` already say: no revision is returned.
            let mut liveness = Liveness::new(&self.db.bus_dir, self.me);
            let entries = if liveness.keeps(current_owner) {
                found
                    .into_iter()
                    .filter(|f| liveness.keeps(f.owner))
                    .map(|f| f.entry(name.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let dead = liveness.dead();
            if !dead.is_empty() {
                self.reclaim_in_background(dead);
            }
            Ok(entries)
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        Box::pin(async move {
            let db = Arc::clone(&self.db);
            let (id, me) = (self.id, self.me);
            let now = clock::now_ms();
            let (stats, dead) = db
                .clone()
                .scan(move |txn, t| {
                    let c = codec::decode_counters(
                        t.counters
                            .get(txn, &codec::id_key(id))
                            .map_err(db.err("read counters"))?,
                    );
                    // Expired values not swept yet are still records: not counted as live.
                    let upto = (now + 1).to_be_bytes();
                    let (mut unswept, mut unswept_bytes) = (0u64, 0u64);
                    for item in t
                        .exp
                        .range(
                            txn,
                            &(
                                std::ops::Bound::Unbounded,
                                std::ops::Bound::Excluded(&upto[..]),
                            ),
                        )
                        .map_err(db.err("read expiries"))?
                    {
                        let (k, _) = item.map_err(db.err("read expiries"))?;
                        if let Some((_, sid, key)) = split_exp_key(k)
                            && sid == id
                        {
                            unswept += 1;
                            if let Some(rec) =
                                t.kv.get(txn, &kv_key(id, key))
                                    .map_err(db.err("read"))?
                                    .and_then(decode_kv)
                            {
                                unswept_bytes += rec.value.len() as u64;
                            }
                        }
                    }
                    // Nor are values whose owner is gone and that no one reclaimed yet: one
                    // liveness check per foreign owner, then that owner's values here.
                    let mut liveness = Liveness::new(&db.bus_dir, me);
                    let (mut orphaned, mut orphaned_bytes) = (0u64, 0u64);
                    for owner in ops::owners(txn, t, &db, me)? {
                        if liveness.keeps(owner) {
                            continue;
                        }
                        let mut prefix = owner.to_be_bytes().to_vec();
                        prefix.extend_from_slice(&id.to_be_bytes());
                        for item in t
                            .own
                            .prefix_iter(txn, &prefix)
                            .map_err(db.err("read owners"))?
                        {
                            let (k, _) = item.map_err(db.err("read owners"))?;
                            let Some((_, _, key)) = split_own_key(k) else {
                                continue;
                            };
                            if let Some(rec) =
                                t.kv.get(txn, &kv_key(id, key))
                                    .map_err(db.err("read"))?
                                    .and_then(decode_kv)
                                // Expired ones are subtracted above already.
                                && rec.owner == owner
                                && !clock::expired(rec.expires_ms, now)
                            {
                                orphaned += 1;
                                orphaned_bytes += rec.value.len() as u64;
                            }
                        }
                    }
                    let stats = StoreStats {
                        values: c[ops::VALUES].saturating_sub(unswept + orphaned),
                        bytes: c[ops::BYTES].saturating_sub(unswept_bytes + orphaned_bytes),
                        revision: c[ops::REV],
                        sets: c[ops::SETS],
                        deletes: c[ops::DELETES],
                        expired: c[ops::EXPIRED],
                        reclaimed: c[ops::RECLAIMED],
                    };
                    Ok((stats, liveness.dead()))
                })
                .await?;
            if !dead.is_empty() {
                self.reclaim_in_background(dead);
            }
            Ok(stats)
        })
    }

    fn watch(
        &self,
        pattern: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<StoreEvent, Lagged>>, StoreError>> {
        Box::pin(watch::watch(self, pattern))
    }

    fn reclaim(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let db = Arc::clone(&self.db);
            let me = self.me;
            let dead = db
                .clone()
                .scan(move |txn, t| {
                    let owners = ops::owners(txn, t, &db, me)?;
                    Ok(owners
                        .into_iter()
                        .filter(|o| !owners::alive(&db.bus_dir, *o))
                        .collect::<Vec<_>>())
                })
                .await?;
            reclaim_owners(&self.db, dead).await
        })
    }
}
