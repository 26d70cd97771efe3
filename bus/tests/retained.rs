//! Retained state on the bus, in one process: stores, rooms, durable subscriptions and
//! stored holds. (Across processes: `retained_processes.rs`, the shared bodies.)

mod support;

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_bus::retained::{
    DurableOptions, Removal, RoomOptions, StoreError, StoreEvent, StoreOptions, StoredHolds,
};
use ephemeral_bus::{Bus, BusError, Lagged, Outgoing};
use futures::StreamExt;

async fn open(dir: &tempfile::TempDir) -> Bus {
    support::open(dir.path(), "retained").await
}

/// A fresh directory where buses live by default: in memory (`/dev/shm`), where a commit
/// costs no disk flush.
fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

/// The next item of a stream, or a failure after a generous bound.
async fn next<S: futures::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream went on")
}

#[tokio::test]
async fn set_get_delete_clear_entries_and_stats() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("cache", StoreOptions::default()).await.unwrap();
    assert_eq!(store.set("b", b"2", None).await.unwrap(), 1);
    assert_eq!(store.set("a", b"1", None).await.unwrap(), 2);
    assert_eq!(store.set("a", b"one", None).await.unwrap(), 3);
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
    let entry = store.entry("a").await.unwrap().unwrap();
    assert_eq!(
        (entry.revision(), entry.expires_at(), entry.owner()),
        (3, None, None)
    );
    let keys: Vec<String> = store
        .entries()
        .await
        .unwrap()
        .iter()
        .map(|e| e.key().to_string())
        .collect();
    assert_eq!(keys, ["a", "b"], "sorted by key");
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.values, stats.bytes, stats.sets, stats.revision),
        (2, 4, 3, 3)
    );

    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap(), "already gone");
    assert_eq!(store.get("a").await.unwrap(), None);
    store.set("c", b"3", None).await.unwrap();
    assert_eq!(store.clear().await.unwrap(), 2);
    assert!(store.entries().await.unwrap().is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.values, stats.bytes, stats.deletes), (0, 0, 3));

    // Another store of the same bus is another namespace; the same store opened again
    // (another handle) sees the same values.
    let other = bus.store("other", StoreOptions::default()).await.unwrap();
    other.set("a", b"x", None).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    let again = bus.store("other", StoreOptions::default()).await.unwrap();
    assert_eq!(again.get("a").await.unwrap().as_deref(), Some(&b"x"[..]));
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let dir = tempdir();
    let bus = open(&dir).await;
    assert!(matches!(
        bus.store("bad name", StoreOptions::default()).await,
        Err(StoreError::InvalidName { .. })
    ));
    let err = bus.room("", RoomOptions::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }));
    assert_eq!(
        err.to_string(),
        "invalid name ``: the name is empty: give one such as `user.42` (the naming rule of signal names applies)"
    );
    let store = bus
        .store(
            "small",
            StoreOptions::default().max_value_size(4).max_values(2),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("").await.unwrap_err().to_string(),
        "invalid key ``: the key is empty: give one such as `user.42` (the naming rule of signal names applies)"
    );
    for key in ["", "a b", "a*", "a,b", "x.+.y"] {
        let err = store.set(key, b"v", None).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey { .. }), "{key:?}");
        // Said of the key, not of a signal name (the rule's own subject).
        let text = err.to_string();
        assert!(
            text.contains(": the key ") && !text.contains("signal name "),
            "{key:?}: {text}"
        );
        assert!(matches!(
            store.get(key).await,
            Err(StoreError::InvalidKey { .. })
        ));
    }
    let err = store.set("k", b"12345", None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::ValueTooLarge { len: 5, max: 4 }),
        "{err}"
    );
    assert!(matches!(
        store.set("k", b"v", Duration::ZERO).await,
        Err(StoreError::ZeroTtl)
    ));
    store.set("a", b"1", None).await.unwrap();
    store.set("b", b"2", None).await.unwrap();
    let full = store.set("c", b"3", None).await.unwrap_err();
    assert!(matches!(full, StoreError::Full { max: 2, .. }), "{full}");
    assert!(
        full.to_string().contains("max_values"),
        "says what to do: {full}"
    );
    store
        .set("a", b"11", None)
        .await
        .expect("an existing key can be updated when full");
    assert_eq!(
        store.stats().await.unwrap().values,
        2,
        "nothing of the refused sets was written"
    );
    // The options of an existing store are the ones it was created with.
    let reopened = bus.store("small", StoreOptions::default()).await.unwrap();
    assert_eq!(reopened.options().get_max_values(), 2);
    // Error messages: lowercase, no trailing period.
    for e in [err, full, StoreError::ZeroTtl] {
        let text = e.to_string();
        assert!(
            text.chars().next().unwrap().is_lowercase() && !text.ends_with('.'),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_watch_on_a_pattern_that_matches_no_key_is_refused() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("w", StoreOptions::default()).await.unwrap();
    for pattern in ["", "a b", " , "] {
        match store.watch(pattern).await {
            Err(StoreError::EmptyPattern { pattern: given }) => assert_eq!(given, pattern),
            other => panic!("watch({pattern:?}) must be refused, got {other:?}"),
        }
    }
    // As a durable subscription refuses it.
    assert!(matches!(
        bus.subscribe_durable("a b", "d").await,
        Err(StoreError::EmptyPattern { .. })
    ));
    assert!(
        store.watch("a b,a.*").await.is_ok(),
        "one alternative can match"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_value_is_never_returned_and_watchers_see_it_expire() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus
        .store("ttl", StoreOptions::default().history(4))
        .await
        .unwrap();
    let mut watch = store.watch("session.*").await.unwrap();
    store.set("keep", b"k", None).await.unwrap();
    // The last wait for the database thread: from here the sweeper sleeps until the
    // expiry, and a wait for that thread would let the paused clock jump there.
    store
        .set("session.a", b"a", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        matches!(watch.next().await, Some(Ok(StoreEvent::Set(e))) if e.key().as_str() == "session.a")
    );
    // The checks below read in place: the clock moves only by `advance`.
    tokio::time::advance(Duration::from_millis(4_990)).await;
    assert_eq!(
        store.get("session.a").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(store.history("session.a").await.unwrap().len(), 1);
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(
        store.get("session.a").await.unwrap(),
        None,
        "at its expiry: gone"
    );
    assert_eq!(store.entry("session.a").await.unwrap(), None);
    assert!(store.history("session.a").await.unwrap().is_empty());
    let entries = store.entries().await.unwrap();
    assert_eq!(entries.len(), 1, "only `keep`: {entries:?}");
    // The sweeper removes it and the watcher hears of it; `keep` does not match the watch.
    // (No timeout here: with the clock paused, a timeout would fire while the runtime
    // waits for the database thread.)
    match watch.next().await.expect("the watch goes on") {
        Ok(StoreEvent::Expired { key, .. }) => assert_eq!(key.as_str(), "session.a"),
        other => panic!("expected the expiry, got {other:?}"),
    }
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.values, stats.expired), (1, 1));
}

/// Setting a key whose value expired but was not swept yet logs and counts that expiry
/// first, as the sweep would have: watchers hear `Expired` before the new `Set`, and
/// `stats().expired` counts it (the overwrite used to replace the dead value silently:
/// no `Expired`, `expired: 0`).
#[tokio::test]
async fn setting_a_key_whose_value_expired_unswept_reports_the_expiry_first() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus
        .store("overwrite", StoreOptions::default())
        .await
        .unwrap();
    let mut watch = store.watch("*").await.unwrap();
    store
        .set("k", b"old", Duration::from_millis(50))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await, Ok(StoreEvent::Set(e)) if e.value() == b"old"));
    // The value's time runs out while this (current-thread) runtime is blocked, so the
    // sweeper task cannot run before the next set reaches the database: the set finds the
    // value expired and unswept. (The paused clock cannot do this: `advance` yields, and
    // the sweeper would run first.)
    std::thread::sleep(Duration::from_millis(100));
    let revision = store.set("k", b"new", None).await.unwrap();
    match next(&mut watch).await {
        Ok(StoreEvent::Expired { key, revision: r }) => {
            assert_eq!((key.as_str(), r), ("k", revision - 1));
        }
        other => panic!("expected the old value's expiry first, got {other:?}"),
    }
    assert!(matches!(next(&mut watch).await, Ok(StoreEvent::Set(e)) if e.value() == b"new"));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.values, stats.sets, stats.expired), (1, 2, 1));
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"new"[..]));
}

#[tokio::test(start_paused = true)]
async fn a_watcher_never_hands_out_a_value_that_expired_while_it_waited() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("dead", StoreOptions::default()).await.unwrap();
    let mut watch = store.watch("*").await.unwrap();
    store.set("a", b"1", None).await.unwrap();
    store.set("b", b"2", Duration::from_secs(5)).await.unwrap();
    // One read takes both changes; `b` expires before it is handed out.
    assert!(matches!(watch.next().await, Some(Ok(StoreEvent::Set(e))) if e.key().as_str() == "a"));
    tokio::time::advance(Duration::from_secs(10)).await;
    // No timeout: with the clock paused, it would fire while the runtime waits for the
    // database thread.
    match watch.next().await.expect("the watch goes on") {
        Ok(StoreEvent::Expired { key, revision }) => {
            assert_eq!((key.as_str(), revision), ("b", 3), "the set was skipped");
        }
        other => panic!("expected b's expiry, not its dead value: {other:?}"),
    }
}

#[tokio::test]
async fn history_is_bounded_and_deleted_with_its_key() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus
        .store("config", StoreOptions::default().history(3))
        .await
        .unwrap();
    for v in 1..=5u8 {
        store.set("level", [v], None).await.unwrap();
    }
    let history: Vec<u8> = store
        .history("level")
        .await
        .unwrap()
        .iter()
        .map(|e| e.value()[0])
        .collect();
    assert_eq!(history, [3, 4, 5], "the last three, oldest first");
    store.delete("level").await.unwrap();
    assert!(store.history("level").await.unwrap().is_empty());
    store.set("level", [9], None).await.unwrap();
    assert_eq!(
        store.history("level").await.unwrap().len(),
        1,
        "a fresh history"
    );
    // With the default of one, the history is the current value.
    let plain = bus.store("plain", StoreOptions::default()).await.unwrap();
    plain.set("k", b"1", None).await.unwrap();
    plain.set("k", b"2", None).await.unwrap();
    let h = plain.history("k").await.unwrap();
    assert_eq!((h.len(), h[0].value()), (1, &b"2"[..]));
}

#[tokio::test]
async fn watch_sees_every_change_in_order_and_only_matching_keys() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("w", StoreOptions::default()).await.unwrap();
    store.set("before", b"0", None).await.unwrap();
    let mut watch = store.watch("user.*").await.unwrap();
    store.set("user.1", b"a", None).await.unwrap();
    store.set("other", b"x", None).await.unwrap();
    store.delete("user.1").await.unwrap();
    store.set("user.2", b"b", None).await.unwrap();
    // `before` (revision 6), `other` (7), then `user.2` (8): by key.
    store.clear().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(match next(&mut watch).await.unwrap() {
            StoreEvent::Set(e) => format!("set {} {}", e.key(), e.revision()),
            StoreEvent::Deleted {
                key,
                revision,
                cause,
            } => format!("deleted {key} {revision} {cause:?}"),
            StoreEvent::Expired { key, .. } => format!("expired {key}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "set user.1 2",
            "deleted user.1 4 Deleted",
            "set user.2 5",
            "deleted user.2 8 Cleared"
        ]
    );
}

#[tokio::test]
async fn a_watcher_far_behind_is_told_how_many_it_missed() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("busy", StoreOptions::default()).await.unwrap();
    let mut watch = store.watch("*").await.unwrap();
    // A multiple of the trim step (64): the log then holds exactly the last 4,096.
    let writes = 4096 + 128;
    let sets: Vec<_> = (0..writes)
        .map(|i| store.set("k", i.to_string(), None))
        .collect();
    for set in sets {
        set.await.unwrap();
    }
    let (mut lagged, mut events) = (0, 0);
    while events + lagged < writes {
        match next(&mut watch).await {
            Ok(_) => events += 1,
            Err(Lagged(n)) => lagged += n,
        }
    }
    assert_eq!(lagged, 128, "the log keeps the last 4,096 changes");
    assert_eq!(events, 4096);
}

#[tokio::test]
async fn a_lag_counts_the_stores_changes_skipped_to_any_key() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("lagf", StoreOptions::default()).await.unwrap();
    let mut watch = store.watch("a.*").await.unwrap();
    let writes = 5000u64;
    for i in 0..writes {
        store.set("b.x", i.to_le_bytes(), None).await.unwrap();
    }
    store.set("a.1", b"only", None).await.unwrap();
    // None of the skipped changes matched `a.*`: the lag counts them all the same
    // (trimmed from the store's log, they can no longer be matched).
    let Err(Lagged(n)) = next(&mut watch).await else {
        panic!("the watcher fell behind the log's 4,096 changes");
    };
    assert!(
        (writes - 4096 - 64..=writes - 4096).contains(&n),
        "the store's skipped changes: {n}"
    );
    match next(&mut watch).await {
        Ok(StoreEvent::Set(e)) => assert_eq!(e.key().as_str(), "a.1"),
        other => panic!("expected the one matching change, got {other:?}"),
    }
}

#[tokio::test]
async fn big_values_set_over_and_over_never_fill_the_database() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("big", StoreOptions::default()).await.unwrap();
    let max = store.options().get_max_value_size();
    let mut watch = store.watch("*").await.unwrap();
    // Two GiB through one key of a 1 GiB database: only the current value and the log's
    // bounded tail are kept.
    let sets = 2048u64;
    for i in 0..sets {
        if let Err(e) = store.set("k", vec![i as u8; max], None).await {
            panic!("set #{i} of one key: {e}");
        }
    }
    // The watcher that read nothing is told how many changes it missed, then gets the
    // newest ones, each with its whole value.
    let (mut lagged, mut got) = (0, Vec::new());
    while got.last() != Some(&sets) {
        match next(&mut watch).await {
            Err(Lagged(n)) => {
                assert!(got.is_empty(), "the lag comes first");
                lagged += n;
            }
            Ok(StoreEvent::Set(e)) => {
                assert_eq!(e.value().len(), max);
                assert_eq!(e.value()[0], (e.revision() - 1) as u8);
                got.push(e.revision());
            }
            Ok(other) => panic!("only sets: {other:?}"),
        }
    }
    assert!(!got.is_empty() && got.len() < 64, "a bounded tail: {got:?}");
    assert_eq!(lagged + got.len() as u64, sets);
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    // Deleting frees the space: 700 MiB of values, deleted, then 700 MiB more fit again
    // (1.4 GiB through a 1 GiB database).
    assert!(store.delete("k").await.unwrap());
    let fill = bus.store("fill", StoreOptions::default()).await.unwrap();
    for round in ["a", "b"] {
        for i in 0..700 {
            if let Err(e) = fill.set(&format!("{round}{i}"), vec![1u8; max], None).await {
                panic!("round {round}, value #{i}: {e}");
            }
        }
        assert_eq!(fill.clear().await.unwrap(), 700);
    }
    // Other stores, rooms and durable subscriptions still have room.
    store.set("small", b"x", None).await.unwrap();
    let room = bus.room("after", RoomOptions::default()).await.unwrap();
    room.send(vec![0u8; max]).await.unwrap();
}

#[tokio::test]
async fn owned_values_go_with_the_handle_that_set_them() {
    let dir = tempdir();
    let reader = open(&dir).await;
    let store = reader
        .store("presence", StoreOptions::default())
        .await
        .unwrap();
    let mut watch = store.watch("*").await.unwrap();
    {
        // Another peer of the bus (in this process: another handle, its own lock file).
        let writer = open(&dir).await;
        let theirs = writer
            .store("presence", StoreOptions::default())
            .await
            .unwrap();
        theirs.set_owned("worker.1", b"busy", None).await.unwrap();
        theirs.set("plain", b"stays", None).await.unwrap();
        let entry = store
            .entry("worker.1")
            .await
            .unwrap()
            .expect("visible while the owner lives");
        assert_eq!(entry.owner(), Some(writer.peer_id()));
        assert!(matches!(next(&mut watch).await, Ok(StoreEvent::Set(_))));
        assert!(matches!(next(&mut watch).await, Ok(StoreEvent::Set(_))));
        // The writer's own owned value is visible to itself, too.
        assert!(theirs.get("worker.1").await.unwrap().is_some());
    }
    // The writer's last handle is gone: its peer lock with it. The watcher hears at once.
    match next(&mut watch).await {
        Ok(StoreEvent::Deleted { key, cause, .. }) => {
            assert_eq!((key.as_str(), cause), ("worker.1", Removal::OwnerGone));
        }
        other => panic!("expected the owner's value reclaimed, got {other:?}"),
    }
    assert_eq!(store.get("worker.1").await.unwrap(), None);
    assert_eq!(
        store.get("plain").await.unwrap().as_deref(),
        Some(&b"stays"[..])
    );
    assert_eq!(store.stats().await.unwrap().reclaimed, 1);
    assert_eq!(store.reclaim().await.unwrap(), 0, "nothing left to reclaim");
}

#[tokio::test]
async fn history_returns_nothing_once_the_current_values_owner_is_gone() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus
        .store("h", StoreOptions::default().history(3))
        .await
        .unwrap();
    {
        let other = open(&dir).await;
        let theirs = other.store("h", StoreOptions::default()).await.unwrap();
        store.set("o", b"plain-old", None).await.unwrap();
        theirs.set_owned("o", b"owned-new", None).await.unwrap();
        assert_eq!(store.history("o").await.unwrap().len(), 2);
    }
    // Wait for the owner's death as `get` sees it. `get` then only starts the reclaim
    // (in the background: on this single-threaded runtime it waits for the next await),
    // so `history` below reads the key as the owner left it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.get("o").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the owner never died");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.entry("o").await.unwrap(), None);
    let history = store.history("o").await.unwrap();
    assert!(
        history.is_empty(),
        "no revision of a key whose current owner is gone: {:?}",
        history.iter().map(|e| e.value_str()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn stats_count_only_live_values_even_before_a_dead_owners_are_reclaimed() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("st", StoreOptions::default()).await.unwrap();
    store.set("mine", b"12345", None).await.unwrap();
    let gone = {
        let other = open(&dir).await;
        let theirs = other.store("st", StoreOptions::default()).await.unwrap();
        theirs.set_owned("theirs", b"xyz", None).await.unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.values, stats.bytes), (2, 8), "while its owner lives");
        other.peer_id()
    };
    // The owner's lock file goes when it has left the bus: dead from then on. Nothing that
    // reclaims (get, entries, a watcher) has looked at the store.
    let lock = bus.dir().join(format!("{gone:016x}.peer"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock.exists() {
        assert!(std::time::Instant::now() < deadline, "the owner never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.values, stats.bytes),
        (1, 5),
        "the dead owner's value is not live"
    );
    assert_eq!(store.entries().await.unwrap().len(), 1);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.values, stats.bytes), (1, 5), "and after its reclaim");
}

#[tokio::test]
async fn a_full_store_makes_room_by_reclaiming_the_values_of_dead_owners() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus
        .store("fullowned", StoreOptions::default().max_values(2))
        .await
        .unwrap();
    let gone = {
        let other = open(&dir).await;
        let theirs = other
            .store("fullowned", StoreOptions::default())
            .await
            .unwrap();
        theirs.set_owned("a", b"1", None).await.unwrap();
        theirs.set_owned("b", b"2", None).await.unwrap();
        other.peer_id()
    };
    // The owner has left the bus: its two values are not live any more. Nothing that
    // reclaims (get, entries, stats, a watcher) has looked at the store.
    let lock = bus.dir().join(format!("{gone:016x}.peer"));
    assert!(
        support::eventually(Duration::from_secs(10), || !lock.exists()).await,
        "the owner never left"
    );
    // Before: `Full` ("holds its maximum of 2 values") for a store with no live value.
    store
        .set("c", b"3", None)
        .await
        .expect("a store holding only a dead owner's values is not full");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.values, stats.reclaimed), (1, 2));
    assert_eq!(store.get("c").await.unwrap().as_deref(), Some(&b"3"[..]));
}

#[tokio::test]
async fn delete_and_clear_count_a_dead_owners_values_as_reclaimed() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("gone", StoreOptions::default()).await.unwrap();
    store.set("mine", b"plain", None).await.unwrap();
    let gone = {
        let other = open(&dir).await;
        let theirs = other.store("gone", StoreOptions::default()).await.unwrap();
        for key in ["victim", "c.1", "c.2"] {
            theirs.set_owned(key, b"busy", None).await.unwrap();
        }
        other.peer_id()
    };
    let lock = bus.dir().join(format!("{gone:016x}.peer"));
    assert!(
        support::eventually(Duration::from_secs(10), || !lock.exists()).await,
        "the owner never left"
    );
    let mut watch = store.watch("*").await.unwrap();
    // Before: `true` (counted in `deletes`, watchers told `Deleted`) for a value `get`
    // does not return.
    assert!(!store.delete("victim").await.unwrap(), "not live");
    // Before: 3, the dead owner's two other values counted as live ones cleared.
    assert_eq!(store.clear().await.unwrap(), 1, "only `mine` was live");
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.deletes, stats.reclaimed), (1, 3), "{stats:?}");
    let mut causes = std::collections::BTreeMap::new();
    while causes.len() < 4 {
        match next(&mut watch).await {
            Ok(StoreEvent::Deleted { key, cause, .. }) => {
                causes.insert(key.to_string(), cause);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(causes.remove("mine"), Some(Removal::Cleared));
    assert!(
        causes.values().all(|c| *c == Removal::OwnerGone),
        "{causes:?}"
    );
}

/// The database's 1 GiB map filled with big values: `DatabaseFull` says "clear or delete
/// values", and `clear` must then work (one transaction removing them all has no room for
/// the pages it writes before it commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_can_be_cleared() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let store = bus.store("filled", StoreOptions::default()).await.unwrap();
    let value = vec![7u8; (1 << 20) - 100];
    let mut stored = 0u64;
    let full = loop {
        match store.set(&format!("k{stored}"), &value, None).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 2000, "1 GiB never filled");
    };
    assert!(matches!(full, StoreError::DatabaseFull { .. }), "{full}");
    assert!(full.to_string().contains("clear or delete"), "{full}");
    // Before: `DatabaseFull` again.
    assert_eq!(store.clear().await.expect("a full database clears"), stored);
    assert!(store.entries().await.unwrap().is_empty());
    store.set("again", &value, None).await.expect("room again");
}

/// A durable subscription whose backlog filled the database: acknowledging it, or removing
/// the subscription, must work (each one removal too big for one transaction when full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_backlog_that_filled_the_database_can_be_acknowledged_or_removed() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let options = DurableOptions::default()
        .max_bytes(4 << 30)
        .max_messages(100_000);
    let payload = vec![7u8; (1 << 20) - 200];
    let fill = || async {
        let mut kept = 0u32;
        loop {
            match bus.publish("backlog.x", payload.clone()).await {
                Ok(_) => kept += 1,
                Err(e) => {
                    assert!(e.to_string().contains("acknowledge or remove"), "{e}");
                    break;
                }
            }
            assert!(kept < 2000, "1 GiB never filled");
        }
    };
    let sub = bus
        .subscribe_durable_with("backlog.*", "backlog", options)
        .await
        .unwrap();
    fill().await;
    // Before: `DatabaseFull` for both.
    sub.ack_sequence(u64::MAX)
        .await
        .expect("a full database's backlog can be acknowledged");
    fill().await;
    sub.remove()
        .await
        .expect("a full database's subscription can be removed");
    bus.publish("backlog.x", payload.clone())
        .await
        .expect("nothing kept any more");
}

/// A room at its count bound in a full database: its trim was part of the send's one
/// transaction, which had no room, so every send failed with `DatabaseFull`, for good (no
/// API removed a room's messages either). Now a send trims to the room's bounds first, a
/// few messages per write, and a room whose bounds hold more than the database can be
/// cleared (also a few per write), and is then sent to again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_in_a_full_database_trims_to_its_bounds_or_is_cleared() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let payload = vec![7u8; (1 << 20) - 100];
    let ring = bus
        .room("ring", RoomOptions::default().max_messages(4))
        .await
        .unwrap();
    for _ in 0..4 {
        ring.send(&payload).await.unwrap();
    }
    // The rest of the database: a room whose count bound holds more than the database.
    let big = bus
        .room("big", RoomOptions::default().max_messages(100_000))
        .await
        .unwrap();
    let mut kept = 0u64;
    let full = loop {
        match big.send(&payload).await {
            Ok(_) => kept += 1,
            Err(e) => break e,
        }
        assert!(kept < 2000, "1 GiB never filled");
    };
    assert!(matches!(full, StoreError::DatabaseFull { .. }), "{full}");
    assert!(full.to_string().contains("Room::clear"), "{full}");
    // Before: `DatabaseFull`, on every send.
    for seq in 5..=12 {
        assert_eq!(
            ring.send(&payload)
                .await
                .expect("a room at its bounds makes its own room"),
            seq
        );
    }
    let mut joined = ring.join().await.unwrap();
    for seq in 9..=12 {
        assert_eq!(
            next(&mut joined).await.unwrap().sequence(),
            seq,
            "the last four"
        );
    }
    // A room within its bounds is not emptied because the database is full.
    let still = big.send(&payload).await.unwrap_err();
    assert!(matches!(still, StoreError::DatabaseFull { .. }), "{still}");
    assert_eq!(
        big.clear().await.expect("a full database's room clears"),
        kept
    );
    assert_eq!(
        big.send(&payload).await.unwrap(),
        kept + 1,
        "sequences carry on"
    );
    let mut late = big.join().await.unwrap();
    assert_eq!(next(&mut late).await.unwrap().sequence(), kept + 1);
}

#[tokio::test]
async fn a_room_gives_history_then_live_and_reports_what_its_bound_dropped() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let room = bus
        .room("chat", RoomOptions::default().max_messages(3))
        .await
        .unwrap();
    for i in 1..=5 {
        assert_eq!(room.send(format!("m{i}")).await.unwrap(), i);
    }
    let mut late = room.join().await.unwrap();
    let history: Vec<String> = [
        next(&mut late).await.unwrap(),
        next(&mut late).await.unwrap(),
        next(&mut late).await.unwrap(),
    ]
    .iter()
    .map(|m| m.payload_str().unwrap().to_owned())
    .collect();
    assert_eq!(
        history,
        ["m3", "m4", "m5"],
        "the bound, without a lag report: they were gone before"
    );
    room.send(b"m6").await.unwrap();
    let live = next(&mut late).await.unwrap();
    assert_eq!((live.sequence(), live.payload()), (6, &b"m6"[..]));
    assert_eq!(live.sender(), bus.peer_id());
    // A joiner that does not read while the room moves on loses the oldest, and is told.
    for i in 7..=12 {
        room.send(format!("m{i}")).await.unwrap();
    }
    assert_eq!(next(&mut late).await, Err(Lagged(3)));
    assert_eq!(next(&mut late).await.unwrap().sequence(), 10);
    let err = bus
        .room("tiny", RoomOptions::default().max_message_size(2))
        .await
        .unwrap()
        .send(b"abc")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ValueTooLarge { len: 3, max: 2 }));
}

#[tokio::test(start_paused = true)]
async fn a_room_drops_messages_older_than_its_age() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let room = bus
        .room(
            "news",
            RoomOptions::default().max_age(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    room.send(b"old").await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    room.send(b"new").await.unwrap();
    let mut joined = room.join().await.unwrap();
    let first = next(&mut joined).await.unwrap();
    assert_eq!(
        first.payload(),
        b"new",
        "the old one is past the room's age"
    );
}

#[tokio::test]
async fn a_joiner_starts_when_join_returns_and_is_told_what_the_count_bound_dropped() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let room = bus
        .room("count", RoomOptions::default().max_messages(3))
        .await
        .unwrap();
    room.send(b"h1").await.unwrap();
    let mut joined = room.join().await.unwrap();
    // Sent after `join` returned, before the joiner reads anything: the room keeps the
    // last three, so h1 and live0..live2 are dropped unread.
    for i in 0..6 {
        room.send(format!("live{i}")).await.unwrap();
    }
    assert_eq!(next(&mut joined).await, Err(Lagged(4)));
    for i in 3..6 {
        let m = next(&mut joined).await.unwrap();
        assert_eq!(m.payload_str(), Some(format!("live{i}").as_str()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_joiner_starts_when_join_returns_and_is_told_what_the_age_bound_dropped() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let room = bus
        .room(
            "age",
            RoomOptions::default().max_age(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    room.send(b"history").await.unwrap();
    let mut joined = room.join().await.unwrap();
    room.send(b"sent-after-join").await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    room.send(b"later").await.unwrap();
    // Both were kept when `join` returned; both aged out before the joiner read them.
    assert_eq!(next(&mut joined).await, Err(Lagged(2)));
    let m = next(&mut joined).await.unwrap();
    assert_eq!((m.payload(), m.sequence()), (&b"later"[..], 3));
}

#[tokio::test]
async fn a_durable_subscriber_gets_what_was_published_while_away_until_acknowledged() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let sub = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    assert!(matches!(
        bus.subscribe_durable("orders.*", "billing").await,
        Err(StoreError::InUse { .. })
    ));
    drop(sub);
    let publisher = open(&dir).await;
    for i in 0..10 {
        let reached = publisher
            .publish("orders.created", format!("{i}"))
            .await
            .unwrap();
        assert_eq!(reached, 1, "kept for the absent subscriber counts");
    }
    publisher
        .publish("payments.done", b"not matching")
        .await
        .unwrap();
    publisher
        .publish_with(
            Outgoing::new("orders.paid")
                .unwrap()
                .payload(b"with headers")
                .header("attempt", 2),
        )
        .await
        .unwrap();
    let mut sub = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..11 {
        got.push(next(&mut sub).await.unwrap());
    }
    let payloads: Vec<&str> = got.iter().map(|m| m.payload_str().unwrap()).collect();
    assert_eq!(
        &payloads[..10],
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    assert_eq!(got[10].topic().as_str(), "orders.paid");
    assert_eq!(got[10].headers().len(), 1);
    assert_eq!(got[10].origin(), ephemeral_bus::process_origin());
    // Acknowledge the first five; the rest come again to the next subscriber.
    sub.ack(&got[4]).await.unwrap();
    drop(sub);
    let mut again = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    assert_eq!(
        next(&mut again).await.unwrap().payload(),
        b"5",
        "at least once, from the first unacknowledged"
    );
    again.ack_sequence(u64::MAX).await.unwrap();
    drop(again);
    let mut last = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    publisher.publish("orders.created", b"after").await.unwrap();
    assert_eq!(
        next(&mut last).await.unwrap().payload(),
        b"after",
        "nothing acknowledged comes back"
    );
    last.remove().await.unwrap();
    assert_eq!(
        publisher.publish("orders.created", b"x").await.unwrap(),
        0,
        "no longer kept"
    );
}

/// A publish refused for its size or its headers keeps nothing for durable subscribers: it
/// used to be kept before the check, so the absent subscriber got a message whose publisher
/// had been told it failed.
#[tokio::test]
async fn a_refused_publish_keeps_nothing_for_durable_subscribers() {
    let dir = tempdir();
    let bus = Bus::open_with("retained", support::options(dir.path()).max_payload(1024))
        .await
        .unwrap();
    drop(bus.subscribe_durable("orders.*", "billing").await.unwrap());
    let too_big = bus
        .publish_with(
            Outgoing::new("orders.created")
                .unwrap()
                .payload(vec![7u8; 2048]),
        )
        .await;
    assert!(
        matches!(too_big, Err(BusError::PayloadTooLarge { .. })),
        "{too_big:?}"
    );
    let long_key = "k".repeat(10_000);
    let bad_headers = bus
        .publish_with(
            Outgoing::new("orders.created")
                .unwrap()
                .payload(b"ok")
                .header(&long_key, 1),
        )
        .await;
    assert!(
        matches!(bad_headers, Err(BusError::HeadersTooLarge { .. })),
        "{bad_headers:?}"
    );
    bus.publish("orders.created", b"kept").await.unwrap();
    let mut sub = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    assert_eq!(
        next(&mut sub).await.unwrap().payload(),
        b"kept",
        "the refused publishes left nothing before it"
    );
}

#[tokio::test]
async fn durable_overflow_drops_the_oldest_and_says_so() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let options = DurableOptions::default().max_messages(100);
    drop(
        bus.subscribe_durable_with("load.*", "slow", options.clone())
            .await
            .unwrap(),
    );
    for i in 0..1000u32 {
        bus.publish("load.item", i.to_le_bytes()).await.unwrap();
    }
    let mut sub = bus
        .subscribe_durable_with("load.*", "slow", options)
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await, Err(Lagged(900)));
    for i in 900..1000u32 {
        assert_eq!(next(&mut sub).await.unwrap().payload(), i.to_le_bytes());
    }
    // Bytes bound: each record is about 100 bytes here; 1 KiB keeps the newest few.
    let small = DurableOptions::default().max_bytes(1024);
    drop(
        bus.subscribe_durable_with("bytes.*", "bytes", small.clone())
            .await
            .unwrap(),
    );
    for i in 0..50u32 {
        bus.publish("bytes.x", [i as u8; 40]).await.unwrap();
    }
    let mut sub = bus
        .subscribe_durable_with("bytes.*", "bytes", small)
        .await
        .unwrap();
    let Err(Lagged(dropped)) = next(&mut sub).await else {
        panic!("the bytes bound must drop and report");
    };
    let mut kept = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        assert_eq!(
            m.payload()[0] as u64,
            dropped + kept,
            "in order after the gap"
        );
        kept += 1;
    }
    assert_eq!(dropped + kept, 50);
    assert!((1..50).contains(&kept), "kept {kept}");
}

#[tokio::test]
async fn an_attach_refused_as_in_use_changes_nothing() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let mut attached = bus.subscribe_durable("orders.*", "billing").await.unwrap();
    let refused = bus
        .subscribe_durable_with(
            "other.*",
            "billing",
            DurableOptions::default().max_messages(1),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::InUse { ref name }) if name == "billing"),
        "{refused:?}"
    );
    // A new handle (as a new process would) reads the registry from the database.
    let publisher = open(&dir).await;
    for i in 0..3 {
        publisher
            .publish("orders.x", format!("o{i}"))
            .await
            .unwrap();
        publisher.publish("other.x", format!("x{i}")).await.unwrap();
    }
    publisher.publish("orders.x", b"end").await.unwrap();
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("orders.x:end") {
        got.push(match next(&mut attached).await {
            Ok(m) => format!("{}:{}", m.topic(), m.payload_str().unwrap()),
            Err(Lagged(n)) => format!("Lagged({n})"),
        });
    }
    assert_eq!(
        got,
        ["orders.x:o0", "orders.x:o1", "orders.x:o2", "orders.x:end"],
        "the attached subscriber's pattern and bounds are its own"
    );
    assert_eq!(attached.options(), &DurableOptions::default());
}

#[tokio::test]
async fn subscribe_durable_keeps_the_bounds_of_an_existing_subscription() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let two = DurableOptions::default().max_messages(2);
    drop(
        bus.subscribe_durable_with("o.*", "small", two.clone())
            .await
            .unwrap(),
    );
    // Back with the plain call: the bounds it was created with stay.
    let sub = bus.subscribe_durable("o.*", "small").await.unwrap();
    assert_eq!(sub.options(), &two);
    drop(sub);
    for i in 0..5 {
        bus.publish("o.x", format!("{i}")).await.unwrap();
    }
    let mut sub = bus.subscribe_durable("o.*", "small").await.unwrap();
    assert_eq!(
        next(&mut sub).await,
        Err(Lagged(3)),
        "the bound of two held"
    );
    for i in 3..5 {
        assert_eq!(
            next(&mut sub).await.unwrap().payload_str(),
            Some(i.to_string().as_str())
        );
    }
    drop(sub);
    // `subscribe_durable_with` still changes them; a new one gets the defaults.
    let sub = bus
        .subscribe_durable_with("o.*", "small", DurableOptions::default().max_messages(7))
        .await
        .unwrap();
    assert_eq!(sub.options().get_max_messages(), 7);
    drop(sub);
    let sub = bus.subscribe_durable("o.*", "small").await.unwrap();
    assert_eq!(sub.options().get_max_messages(), 7);
    let fresh = bus.subscribe_durable("n.*", "fresh").await.unwrap();
    assert_eq!(fresh.options(), &DurableOptions::default());
}

#[tokio::test]
async fn a_message_whose_own_ttl_ran_out_while_kept_is_skipped_and_counted() {
    let dir = tempdir();
    let bus = open(&dir).await;
    drop(bus.subscribe_durable("alerts.*", "pager").await.unwrap());
    bus.publish_with(
        Outgoing::new("alerts.cpu")
            .unwrap()
            .payload(b"stale")
            .ttl(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    bus.publish("alerts.disk", b"fresh").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut sub = bus.subscribe_durable("alerts.*", "pager").await.unwrap();
    assert_eq!(next(&mut sub).await.unwrap().payload(), b"fresh");
    assert_eq!(sub.expired(), 1);
}

#[tokio::test]
async fn internal_topics_are_never_kept_and_a_failing_capture_is_an_error() {
    let dir = tempdir();
    let bus = open(&dir).await;
    drop(bus.subscribe_durable("*", "everything").await.unwrap());
    // A store's own change notices (internal topics) must not be kept, or they would
    // feed themselves.
    let store = bus.store("s", StoreOptions::default()).await.unwrap();
    store.set("k", b"v", None).await.unwrap();
    bus.publish("user.topic", b"1").await.unwrap();
    let mut sub = bus.subscribe_durable("*", "everything").await.unwrap();
    assert_eq!(next(&mut sub).await.unwrap().topic().as_str(), "user.topic");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), sub.next())
            .await
            .is_err()
    );
    // The error type a failing capture gives (it names the durable subscription's cause).
    let err = BusError::Retained(Box::new(StoreError::ZeroTtl));
    assert!(err.to_string().starts_with("the message could not be kept"));
}

#[tokio::test]
async fn a_publisher_that_opened_before_the_subscription_keeps_for_it() {
    let dir = tempdir();
    // Opened before the bus has any database at all.
    let publisher = open(&dir).await;
    let subscriber = open(&dir).await;
    drop(
        subscriber
            .subscribe_durable("jobs.*", "worker")
            .await
            .unwrap(),
    );
    // No delay: `subscribe_durable` returned after every handle re-read the registry.
    assert_eq!(publisher.publish("jobs.new", b"1").await.unwrap(), 1);
    let mut sub = subscriber
        .subscribe_durable("jobs.*", "worker")
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.unwrap().payload(), b"1");
    // Re-pointing the pattern reaches publishers too.
    drop(sub);
    drop(
        subscriber
            .subscribe_durable("tasks.*", "worker")
            .await
            .unwrap(),
    );
    assert_eq!(publisher.publish("jobs.new", b"2").await.unwrap(), 0);
    assert_eq!(publisher.publish("tasks.new", b"3").await.unwrap(), 1);
}

#[tokio::test]
async fn stored_holds_show_a_restarted_process_what_is_held_elsewhere() {
    let dir = tempdir();
    let holder_bus = open(&dir).await;
    let holder = SignalSink::default();
    let holds = holder_bus
        .store("holds", StoreOptions::default())
        .await
        .unwrap();
    let _kept = StoredHolds::start(&holder, holds, "circuit.*,maintenance.*")
        .await
        .unwrap();
    let open_circuit = holder.hold("circuit.open").unwrap();
    let _ignored = holder.hold("other.thing").unwrap();

    // "Restarted": a fresh bus handle and sink start after the hold exists.
    let bus = open(&dir).await;
    let sink = SignalSink::default();
    let store = bus.store("holds", StoreOptions::default()).await.unwrap();
    let _mirror = StoredHolds::start(&sink, store.clone(), "circuit.*,maintenance.*")
        .await
        .unwrap();
    let mut circuit = sink.watch("circuit.open");
    tokio::time::timeout(Duration::from_secs(10), circuit.wait_for_match())
        .await
        .expect("the hold held elsewhere is seen at start");
    assert!(!sink.has_signal("other.*"), "outside the holder's pattern");
    let mirrored = sink.latest("circuit.open").unwrap();
    assert!(mirrored.is_held());
    assert!(
        mirrored
            .header(ephemeral_bus::retained::HOLDER_HEADER)
            .is_some()
    );
    // Not written back: one value in the store, the holder's.
    assert_eq!(store.entries().await.unwrap().len(), 1);

    // Released there: released here.
    open_circuit.release();
    tokio::time::timeout(Duration::from_secs(10), circuit.wait_until_clear())
        .await
        .expect("the release reaches the mirror");

    // Held again, then the holder stops keeping its holds: they leave the store.
    let again = holder.hold("maintenance.db").unwrap();
    let mut maintenance = sink.watch("maintenance.*");
    tokio::time::timeout(Duration::from_secs(10), maintenance.wait_for_match())
        .await
        .expect("mirrored");
    drop(_kept);
    tokio::time::timeout(Duration::from_secs(10), maintenance.wait_until_clear())
        .await
        .expect("a stopped holder's holds are deleted from the store");
    assert!(again.signal().is_held(), "still held where it is held");
}

/// The retained state's own traffic (change notices, the durable registry's sync and its
/// answers) is the bus's business: a subscription to every topic never sees it, and the
/// bus's statistics list the subscriptions the user made, not the bus's own listeners.
#[tokio::test]
async fn retained_traffic_stays_out_of_user_subscriptions_and_stats() {
    let dir = tempdir();
    let bus = open(&dir).await;
    let other = open(&dir).await;
    let mut everything = bus.subscribe("*").await.unwrap();
    let store = bus.store("cache", StoreOptions::default()).await.unwrap();
    store.set("a", b"1", None).await.unwrap();
    let durable = other
        .subscribe_durable("orders.*", "billing")
        .await
        .unwrap();
    drop(durable);
    other.publish("orders.created", b"kept").await.unwrap();
    bus.publish("user.topic", b"mine").await.unwrap();
    // Two publishers: no order between them.
    let mut topics = Vec::new();
    for _ in 0..2 {
        topics.push(next(&mut everything).await.unwrap().topic().to_string());
    }
    topics.sort();
    assert_eq!(
        topics,
        ["orders.created", "user.topic"],
        "only the users' messages"
    );
    other.flush().await;
    bus.flush().await;
    assert!(everything.try_recv().is_none(), "nothing else arrived");
    let patterns: Vec<String> = bus
        .stats()
        .subscriptions
        .iter()
        .map(|s| s.pattern.clone())
        .collect();
    assert_eq!(patterns, ["*"], "only the user's subscription is listed");
}
