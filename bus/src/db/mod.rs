//! The retained-state database of a bus: LMDB in `<bus directory>/retained/`.
//!
//! One [`Db`] per bus directory per process (a process-wide table hands every handle of
//! the same bus the same one: LMDB must not be opened twice by one process). Reads run
//! in place ([`Db::read`]: a read transaction is a few memory reads of the map and never
//! waits) or, for scans, on a blocking thread ([`Db::scan`]); every write runs on the
//! database's own thread ([`Db::write`]), which commits what many tasks queued in one
//! transaction and answers each only after the commit.

pub(crate) mod codec;
pub(crate) mod names;
mod open;
pub(crate) mod owners;
pub(crate) mod sweep;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use heed::types::Bytes;
use heed::{Database, Env, RoTxn};

use crate::bus::BusHandle;
use crate::retained::StoreError;
use crate::{Bus, dir};

pub(crate) use open::MAP_SIZE;
pub(crate) use writer::Write;

/// The layout version (see [`codec`]); a database of another version is refused.
pub(crate) const FORMAT: u32 = 1;

/// The directory of the database inside the bus directory.
pub(crate) const DIR: &str = "retained";

/// The prefix of every internal topic of retained state: change notices that wake
/// watchers, joiners and durable subscribers, and the durable registry's sync. The one
/// place it is named, so it can follow the bus's internal namespace.
pub(crate) const TOPIC_PREFIX: &str = "_retained";

/// Whether `topic` is one of the bus's own (never kept for a durable subscription): those
/// starting with `_` (requests, replies, state, these notices).
pub(crate) fn is_internal(topic: &str) -> bool {
    topic.starts_with('_')
}

/// The notice topic of a store's changes.
pub(crate) fn kv_topic(id: u32) -> String {
    format!("{TOPIC_PREFIX}.kv.{id}")
}

/// The notice topic of a room's messages.
pub(crate) fn room_topic(id: u32) -> String {
    format!("{TOPIC_PREFIX}.room.{id}")
}

/// The notice topic of a durable subscription's messages.
pub(crate) fn durable_topic(id: u32) -> String {
    format!("{TOPIC_PREFIX}.durable.{id}")
}

/// Listens to the notices [`ring`] sends on `topic`: the bus's own broadcasts, which no user
/// subscription sees. One buffered notice is enough (each says "up to here"; the reader
/// then reads the database), so older ones are dropped.
pub(crate) async fn notices(bus: &Bus, topic: &str) -> crate::Subscription {
    bus.listen_internal(
        topic,
        ephemeral::Buffer::Bounded(std::num::NonZeroUsize::MIN),
        ephemeral::Overflow::DropOldest,
    )
    .await
}

/// Tells whoever listens on `topic` that something up to `seq` is in the database. The
/// database is the truth and a notice only wakes readers, so a failure to publish is not
/// an error of the write that was already committed.
pub(crate) async fn ring(bus: &Bus, topic: &str, seq: u64) {
    #[cfg(test)]
    if crate::retained::retry::inject::muted(bus.name()) {
        return;
    }
    let _ = bus.broadcast(topic, seq.to_le_bytes()).await;
}

/// The tables, all bytes to bytes (layouts in [`codec`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tables {
    pub(crate) names: Database<Bytes, Bytes>,
    pub(crate) counters: Database<Bytes, Bytes>,
    pub(crate) kv: Database<Bytes, Bytes>,
    pub(crate) hist: Database<Bytes, Bytes>,
    pub(crate) exp: Database<Bytes, Bytes>,
    pub(crate) own: Database<Bytes, Bytes>,
    pub(crate) log: Database<Bytes, Bytes>,
    pub(crate) msg: Database<Bytes, Bytes>,
}

/// The database of one bus, shared by every handle of that bus in this process.
pub(crate) struct Db {
    pub(crate) path: PathBuf,
    pub(crate) bus_dir: PathBuf,
    env: Env,
    pub(crate) t: Tables,
    jobs: tokio::sync::mpsc::Sender<Box<dyn writer::Job>>,
    /// Bus handles of this process on this bus, to publish change notices from background
    /// tasks (the sweeper). Weak: the database never keeps a bus open.
    buses: Mutex<Vec<Weak<BusHandle>>>,
    pub(crate) sweeper: sweep::Sweeper,
    /// Owners a thread waits on (see [`owners::wait_for_death`]).
    pub(crate) owner_waiters: Mutex<std::collections::HashSet<u64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The databases open in this process, by directory.
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<Db>>>> = Mutex::new(None);

impl Db {
    /// Opens the database of the bus in `bus_dir` (or returns the one this process has
    /// open). With `create` false, `None` when the bus has no database yet. Blocking.
    pub(crate) fn open(bus_dir: &Path, create: bool) -> Result<Option<Arc<Db>>, StoreError> {
        let path = bus_dir.join(DIR);
        let mut open = lock(&OPEN);
        let table = open.get_or_insert_with(HashMap::new);
        table.retain(|_, db| db.strong_count() > 0);
        if let Some(db) = table.get(&path).and_then(Weak::upgrade) {
            return Ok(Some(db));
        }
        if !create && !path.join("data.mdb").exists() {
            return Ok(None);
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&path)(e)),
        }
        dir::check_owner(&path)?;
        let env = match open::open_env(&path) {
            // A database of this path that was just dropped: its thread is closing it.
            Err(heed::Error::EnvAlreadyOpened) => {
                let canonical = std::fs::canonicalize(&path).map_err(StoreError::io(&path))?;
                if let Some(closing) = heed::env_closing_event(&canonical) {
                    closing.wait_timeout(std::time::Duration::from_secs(5));
                }
                open::open_env(&path)
            }
            other => other,
        }
        .map_err(db_error(&path, "open"))?;
        let t = create_tables(&env, &path)?;
        // Reader slots left by processes that died inside a read: freed, so that the pages
        // they pinned can be reused.
        let _ = env.clear_stale_readers();
        let (jobs, rx) = tokio::sync::mpsc::channel(writer::QUEUE);
        writer::spawn(env.clone(), t, path.clone(), rx)?;
        let db = Arc::new(Db {
            path: path.clone(),
            bus_dir: bus_dir.to_path_buf(),
            env,
            t,
            jobs,
            buses: Mutex::new(Vec::new()),
            sweeper: sweep::Sweeper::default(),
            owner_waiters: Mutex::new(std::collections::HashSet::new()),
        });
        table.insert(path, Arc::downgrade(&db));
        Ok(Some(db))
    }

    /// [`open`](Self::open) from async code, for `bus`: on a blocking thread, then
    /// remembers the bus for notices and starts the sweeper.
    pub(crate) async fn open_for(bus: &Bus, create: bool) -> Result<Option<Arc<Db>>, StoreError> {
        let dir = bus.dir().to_path_buf();
        let db = tokio::task::spawn_blocking(move || Db::open(&dir, create))
            .await
            .map_err(|_| StoreError::Closed)??;
        if let Some(db) = &db {
            db.add_bus(bus);
            sweep::start(db);
        }
        Ok(db)
    }

    fn add_bus(&self, bus: &Bus) {
        let mut buses = lock(&self.buses);
        buses.retain(|b| b.strong_count() > 0);
        if !buses
            .iter()
            .any(|b| std::ptr::eq(b.as_ptr(), Arc::as_ptr(&bus.handle)))
        {
            buses.push(Arc::downgrade(&bus.handle));
        }
    }

    /// A live bus handle of this process on this bus, if any.
    pub(crate) fn bus(&self) -> Option<Bus> {
        lock(&self.buses)
            .iter()
            .find_map(Weak::upgrade)
            .map(|handle| Bus { handle })
    }

    /// Runs `f` in a read transaction, here: for bounded work only (a lookup, a bounded
    /// batch), which costs a few memory reads and never waits.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&RoTxn<'_>, &Tables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.env.read_txn().map_err(db_error(&self.path, "read"))?;
        f(&txn, &self.t)
    }

    /// Runs `f` in a read transaction on a blocking thread: for scans of unbounded size.
    pub(crate) async fn scan<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&RoTxn<'_>, &Tables) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || db.read(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in a write transaction on the database's thread and returns its result
    /// once the transaction is committed. `f` may run more than once (when another write of
    /// the same batch fails, each is retried alone), each time in a fresh transaction.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Write<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, rx) = writer::job(f);
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `f` as a write now, without waiting for it: the write is in line before
    /// any write this process queues afterwards (the queue is first in, first out), even
    /// if the caller is dropped at once. Its failure is logged as a `tracing` warning
    /// naming `what`. Must be called within a tokio runtime (to log, and to wait for room
    /// when the queue is full).
    pub(crate) fn write_detached<F>(&self, what: &'static str, f: F)
    where
        F: FnMut(&mut Write<'_, '_>) -> Result<(), StoreError> + Send + 'static,
    {
        let (job, rx) = writer::job(f);
        let path = self.path.clone();
        let log = async move {
            if let Ok(Err(e)) = rx.await {
                tracing::warn!(database = %path.display(), "{what} failed: {e}");
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime: queued if there is room, else given up (and so not logged).
            let _ = self.jobs.try_send(job);
            return;
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                runtime.spawn(log);
            }
            // A full queue: in line as soon as there is room (after writes queued since,
            // the one case where order is not kept).
            Err(tokio::sync::mpsc::error::TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                runtime.spawn(async move {
                    if jobs.send(job).await.is_ok() {
                        log.await;
                    }
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Maps a database error of operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(heed::Error) -> StoreError + '_ {
        db_error(&self.path, op)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.sweeper.close();
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Maps a database error: a full map and i/o errors get their own variants.
///
/// The path is copied only when there is an error: reads build this on every call.
pub(crate) fn db_error<'p>(
    path: &'p Path,
    op: &'static str,
) -> impl FnOnce(heed::Error) -> StoreError + 'p {
    move |e| {
        let path = path.to_path_buf();
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::DatabaseFull {
                path,
                max: MAP_SIZE,
            },
            heed::Error::Io(source) => StoreError::Io { path, source },
            other => StoreError::Database {
                path,
                op,
                message: other.to_string(),
            },
        }
    }
}

/// The tables, created if missing, and the format checked (written when new).
fn create_tables(env: &Env, path: &Path) -> Result<Tables, StoreError> {
    let err = |op| db_error(path, op);
    let mut txn = env.write_txn().map_err(err("create tables"))?;
    let mut table = |name: &str| {
        env.create_database::<Bytes, Bytes>(&mut txn, Some(name))
            .map_err(err("create tables"))
    };
    let t = Tables {
        names: table("names")?,
        counters: table("counters")?,
        kv: table("kv")?,
        hist: table("hist")?,
        exp: table("exp")?,
        own: table("own")?,
        log: table("log")?,
        msg: table("msg")?,
    };
    let found = t
        .names
        .get(&txn, b"\0format")
        .map_err(err("read format"))?
        .map(|r| {
            r.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        });
    match found {
        None => {
            t.names
                .put(&mut txn, b"\0format", &FORMAT.to_le_bytes())
                .map_err(err("write format"))?;
        }
        Some(Some(FORMAT)) => {}
        Some(other) => {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                found: other.unwrap_or(0),
                expected: FORMAT,
            });
        }
    }
    txn.commit().map_err(err("create tables"))?;
    Ok(t)
}
