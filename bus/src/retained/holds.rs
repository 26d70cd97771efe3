//! `StoredHolds`: a signal sink's holds kept in a store, so they outlive a restart.

use std::collections::HashMap;
use std::fmt;

use ephemeral::{HeaderValue, Hold, Name, SignalSink};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Store, StoreError, StoreEvent};

/// The header a hold mirrored from a store carries: the owner that holds it (an `Int`;
/// on the bus, the holder's peer id). Holds carrying it are never written back.
pub const HOLDER_HEADER: &str = "retained.holder";

/// The header bridges put on signals they carry (`bus.via`): such holds are mirrored by
/// their own process, not written to the store a second time.
const BRIDGED: &str = crate::VIA_HEADER;

/// How a hold travels in the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Stored {
    name: String,
    key: Option<String>,
    payload: Option<Vec<u8>>,
}

/// A sink's holds kept in a store: the holds of this process go in, as owned values; the
/// holds in the store from other live processes come out, as holds in this sink.
///
/// A process that starts (or restarts) with `StoredHolds` sees at once which conditions
/// are held elsewhere — `circuit.open`, `maintenance.db` — and keeps seeing them until
/// their holder releases them or dies: an owned value goes with its owner (its lock, not
/// its pid), and a watched store hears of the death at once. Use a store of its own for
/// the holds; every key in it is managed here.
///
/// Only holds matching `pattern` travel, both ways. Holds that came in (they carry
/// [`HOLDER_HEADER`]) or by a bus bridge never go back out. Dropping
/// `StoredHolds` stops it: this process's holds are deleted from the store and the
/// mirrored holds are released.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
/// use ephemeral_bus::{Bus, BusOptions};
/// use ephemeral_bus::retained::{StoreOptions, StoredHolds};
///
/// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-holds-{}", std::process::id()));
/// let bus = Bus::open_with("doc-holds", BusOptions::default().dir(&parent)).await?;
/// let holds = bus.store("holds", StoreOptions::default()).await?;
///
/// // One process holds a condition...
/// let a = SignalSink::default();
/// let _kept = StoredHolds::start(&a, holds.clone(), "circuit.*").await?;
/// let _open = a.hold("circuit.open")?;
///
/// // ...another (here: a second sink) starts later and sees it held.
/// let b = SignalSink::default();
/// let _mirrored = StoredHolds::start(&b, holds, "circuit.*").await?;
/// let mut held = b.watch("circuit.open");
/// held.wait_for_match().await;
/// # drop((_kept, _mirrored, bus)); let _ = std::fs::remove_dir_all(&parent);
/// # Ok(())
/// # }
/// ```
#[must_use = "holds are kept in the store only while this lives"]
pub struct StoredHolds {
    store: Name,
    pattern: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl StoredHolds {
    /// Starts keeping the holds of `sink` matching `pattern` in `store`, and mirroring the
    /// holds other processes keep there into `sink`. Returns once the holds already in the
    /// store are mirrored.
    ///
    /// # Errors
    ///
    /// A store failure while reading what is there.
    pub async fn start(sink: &SignalSink, store: Store, pattern: &str) -> Result<Self, StoreError> {
        // Watch first, then read: a change in between is in the watch.
        let events = store.watch("*").await?;
        let mut sync = Sync {
            sink: sink.clone(),
            store: store.clone(),
            pattern: pattern.to_owned(),
            instance: format!("h{:016x}", crate::process_origin() ^ next_instance()),
            filter: ephemeral::Pattern::new(pattern),
            written: HashMap::new(),
            mirrored: HashMap::new(),
        };
        sync.resync().await?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sync.run(events, stopped));
        Ok(Self {
            store: store.name().clone(),
            pattern: pattern.to_owned(),
            stop: Some(stop),
            task,
        })
    }
}

fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    // Relaxed: only uniqueness matters.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .rotate_left(32)
}

impl Drop for StoredHolds {
    fn drop(&mut self) {
        // The task deletes this process's holds from the store, then ends; if the runtime
        // is gone it cannot, and the values go with their owner anyway.
        if let Some(stop) = self.stop.take()
            && stop.send(()).is_err()
        {
            self.task.abort();
        }
    }
}

impl fmt::Debug for StoredHolds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredHolds")
            .field("store", &self.store.as_str())
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

struct Sync {
    sink: SignalSink,
    store: Store,
    pattern: String,
    filter: ephemeral::Pattern,
    /// The key prefix of this instance's values.
    instance: String,
    /// Local holds written: local sequence -> key.
    written: HashMap<u64, String>,
    /// Holds mirrored from the store: key -> hold.
    mirrored: HashMap<String, Hold>,
}

impl Sync {
    fn ours(&self, key: &str) -> bool {
        key.strip_prefix(self.instance.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Mirrors exactly what the store holds now.
    async fn resync(&mut self) -> Result<(), StoreError> {
        let entries = self.store.entries().await?;
        let keep: Vec<String> = entries.iter().map(|e| e.key().to_string()).collect();
        self.mirrored.retain(|k, _| keep.contains(k));
        for entry in entries {
            self.mirror(entry.key(), entry.value(), entry.owner());
        }
        Ok(())
    }

    fn mirror(&mut self, key: &Name, value: &[u8], owner: Option<u64>) {
        if self.ours(key) {
            return;
        }
        let Ok(stored) = serde_json::from_slice::<Stored>(value) else {
            return;
        };
        if !self.filter.matches(&stored.name) {
            return;
        }
        let Ok(mut signal) = ephemeral::Signal::build(&stored.name) else {
            return;
        };
        let holder = i64::from_ne_bytes(owner.unwrap_or(0).to_ne_bytes());
        signal = signal.header(HOLDER_HEADER, HeaderValue::Int(holder));
        if let Some(k) = stored.key {
            signal = signal.key(k);
        }
        if let Some(p) = stored.payload {
            signal = signal.payload(p);
        }
        // A sink at its bound of holds refuses: that hold is not mirrored (the sink counts
        // its refusals), rather than dropping one of its own.
        if let Ok(hold) = self.sink.hold_with(signal) {
            self.mirrored.insert(key.to_string(), hold);
        }
    }

    /// Writes new local holds, deletes released ones.
    async fn push_local(&mut self) {
        let live: Vec<_> = self
            .sink
            .holds(&self.pattern)
            .into_iter()
            .filter(|s| s.header(HOLDER_HEADER).is_none() && s.header(BRIDGED).is_none())
            .collect();
        for signal in &live {
            if self.written.contains_key(&signal.sequence()) {
                continue;
            }
            let key = format!("{}.{}", self.instance, signal.sequence());
            let stored = Stored {
                name: signal.name().to_string(),
                key: signal.key().map(str::to_owned),
                payload: signal.payload().map(<[u8]>::to_vec),
            };
            let Ok(value) = serde_json::to_vec(&stored) else {
                continue;
            };
            if self.store.set_owned(&key, value, None).await.is_ok() {
                self.written.insert(signal.sequence(), key);
            }
        }
        let gone: Vec<u64> = self
            .written
            .keys()
            .filter(|seq| !live.iter().any(|s| s.sequence() == **seq))
            .copied()
            .collect();
        for seq in gone {
            if let Some(key) = self.written.remove(&seq) {
                let _ = self.store.delete(&key).await;
            }
        }
    }

    async fn run(mut self, mut events: super::StoreWatch, mut stopped: oneshot::Receiver<()>) {
        // Holds alone: a raise of the pattern changes nothing here.
        let mut local = self.sink.watch_holds(&self.pattern);
        loop {
            self.push_local().await;
            tokio::select! {
                () = local.changed() => {}
                event = events.next() => match event {
                    Some(Ok(StoreEvent::Set(entry))) => {
                        let (key, owner) = (entry.key().clone(), entry.owner());
                        self.mirror(&key, entry.value(), owner);
                    }
                    Some(Ok(StoreEvent::Deleted { key, .. } | StoreEvent::Expired { key, .. })) => {
                        self.mirrored.remove(key.as_str());
                    }
                    // Missed changes: read the whole store again.
                    Some(Err(_)) => {
                        let _ = self.resync().await;
                    }
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
        for key in std::mem::take(&mut self.written).into_values() {
            let _ = self.store.delete(&key).await;
        }
        self.mirrored.clear();
    }
}
