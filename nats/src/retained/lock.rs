//! A lock in a KV bucket whose liveness is its heartbeat, never a pid or a clock.
//!
//! The holder rewrites its key every [`BEAT`] (a compare-and-set on the revision it last
//! wrote). Another would-be holder takes the lock over only after watching the key's
//! revision stand still for [`STALE_AFTER`]: the holder stopped beating, so it is dead or
//! gone. No clocks are compared, so machines need not agree on the time. A handle of this
//! process that was dropped is known gone at once (a process-wide table of live holders).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use ephemeral_bus::retained::StoreError;

use super::OrFail;

/// How often a holder rewrites its key.
const BEAT: Duration = Duration::from_millis(250);
/// How long a key's revision must stand still before its holder counts as gone.
const STALE_AFTER: Duration = Duration::from_millis(1000);
/// How long an attach waits for a lock held by someone alive before giving up.
const WAIT: Duration = Duration::from_millis(1600);

/// This process's id in holder names.
fn process() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(crate::sequence::random_id)
}

/// The holders of this process that are alive.
fn live() -> &'static Mutex<HashSet<u64>> {
    static LIVE: OnceLock<Mutex<HashSet<u64>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

fn is_live(holder: u64) -> bool {
    live().lock().map_or(true, |set| set.contains(&holder))
}

/// A held lock: released when dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    holder: u64,
    beat: tokio::task::JoinHandle<()>,
    /// The revision last written (shared with the heartbeat task).
    revision: std::sync::Arc<AtomicU64>,
    kv: kv::Store,
    key: String,
}

impl Lock {
    /// Takes the lock `key` of `kv`, waiting for a gone holder's lock to go stale.
    ///
    /// Returns `Ok(None)` when a live holder keeps it.
    pub(crate) async fn take(kv: &kv::Store, key: &str) -> Result<Option<Lock>, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: a counter handing out numbers.
        let holder = NEXT.fetch_add(1, Ordering::Relaxed);
        let value = Bytes::from(format!("{:016x}-{holder}", process()));
        let started = tokio::time::Instant::now();
        let mut watched: Option<(u64, tokio::time::Instant)> = None;
        let revision = loop {
            let entry = kv.entry(key).await.or_fail("read a lock")?;
            let current = entry.filter(|e| e.operation == kv::Operation::Put);
            let attempt = match current {
                None => kv.create(key, value.clone()).await.ok(),
                Some(entry) => {
                    let text = String::from_utf8_lossy(&entry.value).into_owned();
                    let ours_and_gone = text
                        .split_once('-')
                        .and_then(|(p, h)| {
                            Some((u64::from_str_radix(p, 16).ok()?, h.parse::<u64>().ok()?))
                        })
                        .is_some_and(|(p, h)| p == process() && !is_live(h));
                    let now = tokio::time::Instant::now();
                    let still = match watched {
                        Some((rev, since)) if rev == entry.revision => now - since,
                        _ => {
                            watched = Some((entry.revision, now));
                            Duration::ZERO
                        }
                    };
                    if ours_and_gone || still >= STALE_AFTER {
                        kv.update(key, value.clone(), entry.revision).await.ok()
                    } else {
                        None
                    }
                }
            };
            if let Some(revision) = attempt {
                break revision;
            }
            if started.elapsed() >= WAIT {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Ok(mut set) = live().lock() {
            set.insert(holder);
        }
        let (beat_kv, beat_key) = (kv.clone(), key.to_owned());
        let shared = std::sync::Arc::new(AtomicU64::new(revision));
        let written = std::sync::Arc::clone(&shared);
        let beat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(BEAT).await;
                // Relaxed: only this task writes it; the drop reads it after aborting us,
                // and a stale read only makes the release a no-op.
                let last = written.load(Ordering::Relaxed);
                // Lost (taken over after a stall) or the server is away: keep trying with
                // the revision last written; a takeover makes that fail for good.
                if let Ok(next) = beat_kv.update(&beat_key, value.clone(), last).await {
                    written.store(next, Ordering::Relaxed);
                }
            }
        });
        Ok(Some(Lock {
            holder,
            beat,
            revision: shared,
            kv: kv.clone(),
            key: key.to_owned(),
        }))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.beat.abort();
        if let Ok(mut set) = live().lock() {
            set.remove(&self.holder);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Only if still ours: a holder that took over since is left alone.
            let (kv, key) = (self.kv.clone(), self.key.clone());
            let revision = self.revision.load(Ordering::Relaxed);
            runtime.spawn(async move {
                let _ = kv.delete_expect_revision(&key, Some(revision)).await;
            });
        }
    }
}
