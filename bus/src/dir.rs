//! The bus directory: creation, the owner check, the bus lock, peer lock files and reclaim.
//!
//! Layout of `<parent>/ephemeral-<name>/` (mode 700):
//!
//! * `.lock`: the bus lock. Opening, reclaiming and closing take it, so they never interleave.
//! * `<peer>.peer`: held locked (`flock`) by its peer for the peer's whole life. The kernel
//!   releases the lock when the process dies however it dies, so a peer whose lock can be taken
//!   is dead: its files are leftovers, and whoever notices removes them. Pids are never used
//!   (they are reused).
//! * `<peer>.sock`: the peer's listening Unix socket.
//!
//! The last peer to leave removes the lock file and the directory.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::BusError;

const BUS_LOCK: &str = ".lock";
const PEER_EXT: &str = "peer";
const SOCK_EXT: &str = "sock";

/// This process's effective uid: the one the kernel checks file access against, and so the
/// one that must own the bus directory.
pub(crate) fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Creates the bus directory if needed (mode 700) and checks, explicitly, that it is a real
/// directory owned by this uid and closed to group and others. Root passes no permission
/// check by itself, which is why this is done by hand.
///
/// Missing parent directories are created mode 700 too: they were made for this user's
/// buses, and a bus name travels in their listing. Existing parents are left as they are.
pub(crate) fn prepare(path: &Path) -> Result<(), BusError> {
    if let Some(parent) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(BusError::io(parent))?;
    }
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(BusError::io(path)(e)),
    }
    check_owner(path)
}

pub(crate) fn check_owner(path: &Path) -> Result<(), BusError> {
    let meta = fs::symlink_metadata(path).map_err(BusError::io(path))?;
    if !meta.is_dir() {
        return Err(BusError::io(path)(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a directory (symbolic links are refused): remove it",
        )));
    }
    let me = my_uid();
    if meta.uid() != me {
        return Err(BusError::NotOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(BusError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// The bus lock, held while the guard lives.
#[derive(Debug)]
pub(crate) struct BusLock {
    _file: File,
}

/// How long to wait for the bus lock. It is held only for file operations, so a longer
/// wait means its holder is stopped (SIGSTOP) or stuck; we give up rather than hang.
pub(crate) const BUS_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the bus lock, creating (and checking) the directory if needed, waiting at most
/// [`BUS_LOCK_WAIT`]. Blocking: call it from a blocking thread. Retries when the last peer
/// removed the directory or the lock file between our open and our lock.
pub(crate) fn lock_bus(path: &Path) -> Result<BusLock, BusError> {
    lock(path, true)?.ok_or_else(|| {
        BusError::io(path)(std::io::Error::new(
            ErrorKind::NotFound,
            "the bus directory vanished while it was being created",
        ))
    })
}

/// Takes the bus lock only if the bus still exists (`None` when the last peer removed it):
/// tidying up must never bring a removed bus directory back.
pub(crate) fn lock_existing_bus(path: &Path) -> Result<Option<BusLock>, BusError> {
    lock(path, false)
}

fn lock(path: &Path, create: bool) -> Result<Option<BusLock>, BusError> {
    let lock_path = path.join(BUS_LOCK);
    let deadline = std::time::Instant::now() + BUS_LOCK_WAIT;
    loop {
        let opened = if create {
            prepare(path)?;
            create_private(&lock_path)
        } else {
            OpenOptions::new().read(true).write(true).open(&lock_path)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && create => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BusError::io(&lock_path)(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                if std::time::Instant::now() >= deadline {
                    return Err(BusError::io(&lock_path)(std::io::Error::new(
                        ErrorKind::TimedOut,
                        "the bus lock stayed held for 5 s: a peer holding it is stopped or stuck; resume or kill it",
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            Err(TryLockError::Error(e)) => return Err(BusError::io(&lock_path)(e)),
        }
        // The file we locked must still be the one at the path: a leaving peer may have
        // unlinked it while we waited, and a lock on an unlinked file serialises nothing.
        let held = file.metadata().map_err(BusError::io(&lock_path))?;
        match fs::metadata(&lock_path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                return Ok(Some(BusLock { _file: file }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(BusError::io(&lock_path)(e)),
        }
    }
}

pub(crate) fn peer_lock_path(dir: &Path, peer: u64) -> PathBuf {
    dir.join(format!("{peer:016x}.{PEER_EXT}"))
}

/// The longest bus directory whose sockets (`<dir>/<16 hex digits>.sock`) fit a Unix
/// socket address (108 bytes with the final NUL, on Linux).
pub(crate) const MAX_DIR_LEN: usize = 107 - "/0123456789abcdef.sock".len();

/// Refuses a bus directory too long for its sockets, before anything is created.
pub(crate) fn check_len(dir: &Path) -> Result<(), BusError> {
    let len = dir.as_os_str().len();
    if len > MAX_DIR_LEN {
        return Err(BusError::PathTooLong {
            path: dir.to_path_buf(),
            len,
            max: MAX_DIR_LEN,
        });
    }
    Ok(())
}

pub(crate) fn socket_path(dir: &Path, peer: u64) -> PathBuf {
    dir.join(format!("{peer:016x}.{SOCK_EXT}"))
}

/// Creates and locks this peer's lock file. Call with the bus lock held.
pub(crate) fn create_peer_lock(dir: &Path, peer: u64) -> Result<File, BusError> {
    let path = peer_lock_path(dir, peer);
    let file = create_private(&path).map_err(BusError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(BusError::io(&path)(std::io::Error::new(
            ErrorKind::AlreadyExists,
            "peer id already in use",
        ))),
        Err(TryLockError::Error(e)) => Err(BusError::io(&path)(e)),
    }
}

/// Removes the files of every dead peer (one whose lock can be taken) and returns the ids of
/// the live ones, `me` excluded. Call with the bus lock held.
pub(crate) fn reclaim(dir: &Path, me: Option<u64>) -> Result<Vec<u64>, BusError> {
    let mut live = Vec::new();
    let entries = fs::read_dir(dir).map_err(BusError::io(dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(peer) = peer_id_of(&path, PEER_EXT) else {
            continue;
        };
        if Some(peer) == me {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => {
                // Dead: the socket first, then the lock file, so a half-reclaimed peer is
                // still recognised (and finished) by the next one.
                let _ = fs::remove_file(socket_path(dir, peer));
                let _ = fs::remove_file(&path);
            }
            Err(_) => live.push(peer),
        }
    }
    // Sockets whose lock file is gone (a reclaim interrupted between the two removals).
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Some(peer) = peer_id_of(&path, SOCK_EXT)
                && Some(peer) != me
                && !peer_lock_path(dir, peer).exists()
            {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(live)
}

fn peer_id_of(path: &Path, ext: &str) -> Option<u64> {
    if path.extension()? != ext {
        return None;
    }
    u64::from_str_radix(path.file_stem()?.to_str()?, 16).ok()
}

/// Removes this peer's files and, when no live peer is left, the bus lock file and the
/// directory. Blocking; takes the bus lock itself.
pub(crate) fn leave(dir: &Path, me: u64, peer_lock: File) {
    let Ok(guard) = lock_bus(dir) else {
        // Without the bus lock, removing our own files is still safe (nobody else removes a
        // live peer's files); the directory is left for the next peer to tidy.
        let _ = fs::remove_file(socket_path(dir, me));
        let _ = fs::remove_file(peer_lock_path(dir, me));
        return;
    };
    let _ = fs::remove_file(socket_path(dir, me));
    let _ = fs::remove_file(peer_lock_path(dir, me));
    drop(peer_lock);
    if let Ok(live) = reclaim(dir, None)
        && live.is_empty()
    {
        let _ = fs::remove_file(dir.join(BUS_LOCK));
        // Fails, and so keeps the directory, if someone put other files there.
        let _ = fs::remove_dir(dir);
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_uid_owns_the_files_this_process_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("mine");
        create_private(&file).unwrap();
        assert_eq!(fs::metadata(&file).unwrap().uid(), my_uid());
    }
}
