//! What a reading stream (a room joiner, a durable subscriber, a store watcher) does when a
//! read of the database fails, and how it waits once it has caught up.
//!
//! A caught-up stream waits for a notice on the bus (the writer rings one after each
//! commit), and reads the database again after [`RECHECK`] even if none came. A notice is
//! only a wake-up: it is lost when its writer exits or is killed between its commit and the
//! moment its socket queue reaches the reader, or when it is dropped for a reader that stayed
//! full. The database stays the one truth, so a lost notice delays what the stream delivers
//! by at most [`RECHECK`]; it never loses it.
//!
//! The streams' items are `Result<_, Lagged>`: there is no error item. A failed read is
//! therefore retried, with a growing pause (10 ms, doubling, at most 1 s), and logged as a
//! `tracing` warning each time; a read that still fails after [`MAX_FAILURES`] attempts in a
//! row (about 1.3 s of pauses) ends the stream, logged as a `tracing` error with the database's
//! message. A stream never ends on a read error without both.

use std::time::Duration;

use futures::StreamExt;

use super::StoreError;
use crate::Subscription;

/// How long a caught-up reading stream waits for a notice before it reads the database
/// again anyway: the most a lost notice delays a message.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// Failed reads in a row after which a stream gives up.
pub(crate) const MAX_FAILURES: u32 = 8;

/// The waiting side of one reading stream: its notices, and its read failures in a row.
/// The stream's loop is: hand out what it has; else `read` (after [`check`](Self::check)),
/// and let [`after`](Self::after) say whether to read again or end.
pub(crate) struct Follow {
    notices: Subscription,
    /// What the stream is and its name, for logs.
    what: &'static str,
    name: String,
    failures: u32,
}

impl Follow {
    pub(crate) fn new(what: &'static str, name: impl Into<String>, notices: Subscription) -> Self {
        Self {
            notices,
            what,
            name: name.into(),
            failures: 0,
        }
    }

    /// The injected failure of tests, before a read.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        check(&self.name)
    }

    /// After a read that went through `Ok(n)` records: at once when it found some; when it
    /// found none, on a notice (or a lag report of notices: either says "read again") or
    /// after [`RECHECK`]; after a failure, once its pause is over. `None`: the stream ends
    /// (the bus closed the notices, or [`MAX_FAILURES`] reads in a row failed).
    pub(crate) async fn after(&mut self, read: Result<usize, StoreError>) -> Option<()> {
        match read {
            Ok(n) => {
                self.failures = 0;
                if n > 0 {
                    return Some(());
                }
                match tokio::time::timeout(RECHECK, self.notices.next()).await {
                    Ok(None) => None,
                    Ok(Some(_)) | Err(_) => Some(()),
                }
            }
            Err(error) => self.failed(&error).await.then_some(()),
        }
    }

    /// A read failed: waits and returns `true` to retry, or logs the end and returns
    /// `false` once [`MAX_FAILURES`] reads in a row failed.
    async fn failed(&mut self, error: &StoreError) -> bool {
        let (what, name) = (self.what, &self.name);
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            tracing::error!(
                target: "ephemeral_bus::retained",
                %error, failures = self.failures,
                "{what} `{name}` ends: its reads of the retained-state database keep failing"
            );
            return false;
        }
        tracing::warn!(
            target: "ephemeral_bus::retained",
            %error, failures = self.failures,
            "{what} `{name}`: a read of the retained-state database failed; retrying"
        );
        let pause =
            Duration::from_millis(10 << (self.failures - 1).min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
        true
    }
}

/// A failed read, or the injected failure of tests.
pub(crate) fn check(name: &str) -> Result<(), StoreError> {
    #[cfg(test)]
    if inject::take(name) {
        return Err(StoreError::Database {
            path: std::path::PathBuf::from("injected"),
            op: "read (injected by a test)",
            message: "injected failure".to_owned(),
        });
    }
    let _ = name;
    Ok(())
}

/// Test hooks: read failures to inject per stream name (rooms, durable subscriptions,
/// stores), and notices to drop per bus name.
#[cfg(test)]
pub(crate) mod inject {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    static FAILURES: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
    static MUTED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

    /// Whether the notices of the bus named `bus` are dropped before they are sent.
    pub(crate) fn muted(bus: &str) -> bool {
        MUTED
            .lock()
            .ok()
            .is_some_and(|m| m.as_ref().is_some_and(|m| m.contains(bus)))
    }

    /// Drops every notice of the bus named `bus` from now on, as if each writer died right
    /// after its commit.
    pub(crate) fn mute_notices(bus: &str) {
        if let Ok(mut m) = MUTED.lock() {
            m.get_or_insert_with(HashSet::new).insert(bus.to_owned());
        }
    }

    /// The next `n` reads of the stream named `name` fail.
    pub(crate) fn fail_reads(name: &str, n: u32) {
        if let Ok(mut map) = FAILURES.lock() {
            map.get_or_insert_with(HashMap::new)
                .insert(name.to_owned(), n);
        }
    }

    /// Whether this read of `name` is to fail (counting it down).
    pub(crate) fn take(name: &str) -> bool {
        let Ok(mut map) = FAILURES.lock() else {
            return false;
        };
        match map.as_mut().and_then(|m| m.get_mut(name)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Every reading stream of the bus, its notices lost: what was written still arrives, by
/// the periodic check. Real time (the bus is real sockets and a real database), with a
/// bound of ten times [`RECHECK`].
#[cfg(test)]
mod lost_notices {
    use std::future::Future;
    use std::time::Duration;

    use futures::{Stream, StreamExt};

    use super::{RECHECK, inject};
    use crate::retained::{RoomOptions, StoreEvent, StoreOptions};
    use crate::{Bus, BusOptions};

    async fn muted_bus(name: &str, dir: &std::path::Path) -> Bus {
        inject::mute_notices(name);
        Bus::open_with(name, BusOptions::default().dir(dir))
            .await
            .expect("open a bus")
    }

    async fn within<S: Stream + Unpin>(stream: &mut S, what: &str) -> S::Item {
        tokio::time::timeout(RECHECK * 10, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing within {:?}", RECHECK * 10))
            .unwrap_or_else(|| panic!("{what}: the stream ended"))
    }

    /// Reads the first item of `stream` on a task of its own, started (and given time to
    /// read what is there and wait) before `write` runs: what `write` writes is then
    /// reached only by a notice or by the periodic check.
    async fn first_after<S, W>(mut stream: S, what: &'static str, write: W) -> S::Item
    where
        S: Stream + Unpin + Send + 'static,
        S::Item: Send + 'static,
        W: Future<Output = ()>,
    {
        let reader = tokio::spawn(async move { within(&mut stream, what).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        write.await;
        reader.await.expect("the reading task")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_room_joiner_gets_a_message_whose_notice_was_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = muted_bus("lost-notices-room", dir.path()).await;
        let room = bus
            .room("quiet.room", RoomOptions::default())
            .await
            .expect("room");
        let joined = room.join().await.expect("join");
        let m = first_after(joined, "the joiner", async {
            room.send(b"unannounced").await.expect("send");
        })
        .await
        .expect("no lag");
        assert_eq!((m.sequence(), m.payload()), (1, &b"unannounced"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_subscriber_gets_a_message_whose_notice_was_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = muted_bus("lost-notices-durable", dir.path()).await;
        let sub = bus
            .subscribe_durable("quiet.topic.*", "quiet.sub")
            .await
            .expect("subscribe");
        let m = first_after(sub, "the durable subscriber", async {
            bus.publish("quiet.topic.a", b"unannounced")
                .await
                .expect("publish");
        })
        .await
        .expect("no lag");
        assert_eq!(m.payload(), b"unannounced");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_watch_sees_a_change_whose_notice_was_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = muted_bus("lost-notices-store", dir.path()).await;
        let store = bus
            .store("quiet.store", StoreOptions::default())
            .await
            .expect("store");
        let watch = store.watch("*").await.expect("watch");
        let first = first_after(watch, "the watch", async {
            store.set("k", b"unannounced", None).await.expect("set");
        });
        match first.await.expect("no lag") {
            StoreEvent::Set(entry) => {
                assert_eq!(
                    (entry.key().as_str(), entry.value()),
                    ("k", &b"unannounced"[..])
                );
            }
            other => panic!("expected the set, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_watch_retries_failed_reads_and_ends_only_when_they_keep_failing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = Bus::open_with("watch-failures", BusOptions::default().dir(dir.path()))
            .await
            .expect("open a bus");
        let store = bus
            .store("retry.store", StoreOptions::default())
            .await
            .expect("store");
        let mut watch = store.watch("*").await.expect("watch");
        inject::fail_reads("retry.store", super::MAX_FAILURES - 1);
        store.set("k", b"kept", None).await.expect("set");
        match within(&mut watch, "the watch").await.expect("no lag") {
            StoreEvent::Set(entry) => assert_eq!(entry.value(), b"kept"),
            other => panic!("expected the set, got {other:?}"),
        }
        let mut again = store.watch("*").await.expect("watch");
        inject::fail_reads("retry.store", u32::MAX);
        store.set("k", b"unread", None).await.expect("set");
        let end = tokio::time::timeout(Duration::from_secs(20), again.next())
            .await
            .expect("ends in time");
        assert!(end.is_none(), "{end:?}");
        inject::fail_reads("retry.store", 0);
    }
}
