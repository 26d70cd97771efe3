//! Whether the owner of an owned value is alive: by the lock its bus peer holds.
//!
//! The owner of a value is the peer id of the bus handle that set it. A live peer holds an
//! exclusive lock on `<bus dir>/<peer>.peer` for its whole life, and the kernel releases it
//! however the process ends, so a peer whose lock can be taken (or whose file is gone:
//! the bus removes a dead peer's files) is dead. Pids are never used: they are reused.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::Path;

use crate::dir;

/// Whether `owner` is alive now (`true` when it cannot be told: a value is never taken
/// for orphaned on an error).
pub(crate) fn alive(bus_dir: &Path, owner: u64) -> bool {
    let file = match File::open(dir::peer_lock_path(bus_dir, owner)) {
        Ok(file) => file,
        // Gone: the bus removes a dead peer's files (a live peer keeps its lock file).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        // Out of descriptors, say: this reader cannot tell, and a live owner's values
        // must not be removed for every process because of it.
        Err(_) => return true,
    };
    match file.try_lock() {
        // Taken: nobody held it. Dropping the file releases it again at once.
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => true,
    }
}

/// Liveness answers for one scan, so each owner is checked once.
#[derive(Debug)]
pub(crate) struct Liveness<'a> {
    bus_dir: &'a Path,
    me: u64,
    known: HashMap<u64, bool>,
}

impl<'a> Liveness<'a> {
    /// For a reader that is peer `me` (always alive to itself).
    pub(crate) fn new(bus_dir: &'a Path, me: u64) -> Self {
        Self {
            bus_dir,
            me,
            known: HashMap::new(),
        }
    }

    /// Whether a value with owner `owner` (0: not owned) is still owned by someone alive.
    pub(crate) fn keeps(&mut self, owner: u64) -> bool {
        if owner == 0 || owner == self.me {
            return true;
        }
        let dir = self.bus_dir;
        *self.known.entry(owner).or_insert_with(|| alive(dir, owner))
    }

    /// The owners found dead.
    pub(crate) fn dead(&self) -> Vec<u64> {
        self.known
            .iter()
            .filter(|(_, alive)| !**alive)
            .map(|(owner, _)| *owner)
            .collect()
    }
}

/// Starts, once per owner, a thread that waits on `owner`'s lock and, the moment the owner
/// dies (the kernel releases its lock), removes its values, so watchers see
/// `Deleted(OwnerGone)` without anyone asking. The thread is parked in the kernel until
/// then: one per live foreign owner, started only for watched stores.
pub(crate) fn wait_for_death(db: &std::sync::Arc<super::Db>, owner: u64) {
    if owner == 0 {
        return;
    }
    {
        let mut waiting = super::lock(&db.owner_waiters);
        if !waiting.insert(owner) {
            return;
        }
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        super::lock(&db.owner_waiters).remove(&owner);
        return;
    };
    let weak = std::sync::Arc::downgrade(db);
    let path = dir::peer_lock_path(&db.bus_dir, owner);
    let spawned = std::thread::Builder::new()
        .name("ephemeral-owner".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // Blocks until the owner's process ends (or at once if it is gone already).
            // Dead only when its lock was taken or its file is gone; when this thread
            // cannot tell (no descriptor left, a failed lock), its values stay, and the
            // owner is watched again when a watcher here next sees one of them.
            let dead = match File::open(&path) {
                // Released at once, so the bus's own check sees the peer dead too.
                Ok(file) => file.lock().is_ok(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            let Some(db) = weak.upgrade() else { return };
            super::lock(&db.owner_waiters).remove(&owner);
            if !dead {
                return;
            }
            // The reclaim runs as a task on the runtime (its own stack, a panic caught by the
            // runtime); this small-stack thread only waits for it.
            let reclaim =
                handle.spawn(async move { crate::store::reclaim_owners(&db, vec![owner]).await });
            drop(handle.block_on(reclaim));
        });
    if spawned.is_err() {
        super::lock(&db.owner_waiters).remove(&owner);
    }
}
