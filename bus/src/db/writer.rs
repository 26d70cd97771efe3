//! The database's own thread: every write of this process, committed in batches.
//!
//! Writes from many tasks queue here; the thread takes everything queued (up to
//! [`MAX_BATCH`]) and runs it in one transaction, so one commit serves them all (group
//! commit), then answers each. A write that fails aborts the batch; each write of it is
//! then run again alone, so one bad write never fails the others. A panicking write is
//! caught and reported as an error; the thread carries on.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use heed::{Env, RwTxn};
use tokio::sync::{mpsc, oneshot};

use super::{Tables, db_error};
use crate::retained::StoreError;

/// Writes queued before `write` waits for room.
pub(crate) const QUEUE: usize = 4096;

/// The most writes committed together.
const MAX_BATCH: usize = 256;

/// What a write sees: its transaction and the tables.
pub(crate) struct Write<'a, 'e> {
    pub(crate) txn: &'a mut RwTxn<'e>,
    pub(crate) t: &'a Tables,
    pub(crate) path: &'a Path,
}

impl<'a> Write<'a, '_> {
    /// Maps a database error of operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(heed::Error) -> StoreError + 'a {
        db_error(self.path, op)
    }
}

/// One queued write.
pub(crate) trait Job: Send {
    /// Runs the write in `w` (again, after an abort, in a fresh transaction).
    fn apply(&mut self, w: &mut Write<'_, '_>) -> Result<(), StoreError>;
    /// Answers the caller: `Ok` once committed.
    fn finish(self: Box<Self>, result: Result<(), StoreError>);
}

struct FnJob<F, T> {
    f: F,
    out: Option<T>,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for FnJob<F, T>
where
    F: FnMut(&mut Write<'_, '_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn apply(&mut self, w: &mut Write<'_, '_>) -> Result<(), StoreError> {
        self.out = Some((self.f)(w)?);
        Ok(())
    }

    fn finish(self: Box<Self>, result: Result<(), StoreError>) {
        let this = *self;
        let answer = result.and_then(|()| this.out.ok_or(StoreError::Closed));
        // The caller may have stopped waiting (its future was dropped): nothing to tell.
        let _ = this.tx.send(answer);
    }
}

/// A job running `f`, and where its answer arrives.
pub(crate) fn job<F, T>(f: F) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnMut(&mut Write<'_, '_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    (Box::new(FnJob { f, out: None, tx }), rx)
}

/// Starts the thread; it ends when every sender is dropped (the database was dropped).
pub(crate) fn spawn(
    env: Env,
    t: Tables,
    path: PathBuf,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("ephemeral-db".into())
        .spawn(move || {
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                run(&env, &t, &path, &mut batch);
            }
        })
        .map_err(StoreError::io("ephemeral-db thread"))?;
    Ok(())
}

/// Runs `batch` in one transaction; on failure, each job alone. Empties `batch`.
fn run(env: &Env, t: &Tables, path: &Path, batch: &mut Vec<Box<dyn Job>>) {
    match commit(env, t, path, batch) {
        Ok(()) => {
            for job in batch.drain(..) {
                job.finish(Ok(()));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.pop() {
                job.finish(Err(e));
            }
        }
        Err(_) => {
            for mut job in batch.drain(..) {
                let result = commit(env, t, path, std::slice::from_mut(&mut job));
                job.finish(result);
            }
        }
    }
}

fn commit(env: &Env, t: &Tables, path: &Path, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut txn = env.write_txn().map_err(db_error(path, "begin write"))?;
    let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut w = Write {
            txn: &mut txn,
            t,
            path,
        };
        jobs.iter_mut().try_for_each(|job| job.apply(&mut w))
    }));
    match applied {
        Ok(Ok(())) => txn.commit().map_err(db_error(path, "commit")),
        Ok(Err(e)) => {
            txn.abort();
            Err(e)
        }
        Err(panic) => {
            txn.abort();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a write panicked".to_owned());
            Err(StoreError::Database {
                path: path.to_path_buf(),
                op: "write",
                message,
            })
        }
    }
}
