//! Store scenarios.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use ephemeral::Lagged;

use super::child::{Kid, pattern};
use super::{Backend, LONG, eventually, next, unique};
use crate::retained::{StoreError, StoreEvent, StoreOptions, clock};

pub(crate) async fn semantics<B: Backend>(b: B) {
    let store = b
        .store(
            &unique("conf.semantics"),
            StoreOptions::default().history(3),
        )
        .await
        .expect("open a store");
    let r1 = store.set("b", b"2", None).await.expect("set");
    let r2 = store.set("a", b"1", None).await.expect("set");
    assert!(r2 > r1, "revisions increase");
    store.set("a", b"one", None).await.expect("set");
    assert_eq!(
        store.get("a").await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(store.get("missing").await.expect("get"), None);
    let entry = store.entry("a").await.expect("entry").expect("present");
    assert_eq!(
        (entry.value(), entry.expires_at(), entry.owner()),
        (&b"one"[..], None, None)
    );
    let keys: Vec<String> = store
        .entries()
        .await
        .expect("entries")
        .iter()
        .map(|e| e.key().to_string())
        .collect();
    assert_eq!(keys, ["a", "b"], "entries sorted by key");
    let history: Vec<Vec<u8>> = store
        .history("a")
        .await
        .expect("history")
        .into_iter()
        .map(crate::retained::Entry::into_value)
        .collect();
    assert_eq!(history, [b"1".to_vec(), b"one".to_vec()]);
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.values, stats.sets), (2, 3));
    assert!(store.delete("a").await.expect("delete"));
    assert!(!store.delete("a").await.expect("delete"), "already gone");
    assert!(store.history("a").await.expect("history").is_empty());
    assert_eq!(store.clear().await.expect("clear"), 1);
    assert!(store.entries().await.expect("entries").is_empty());
    // Bad input: the same typed errors on every backend.
    assert!(matches!(
        store.set("a b", b"v", None).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.get("a*").await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.set("k", b"v", Duration::ZERO).await,
        Err(StoreError::ZeroTtl)
    ));
    assert!(matches!(
        b.store("bad name", StoreOptions::default()).await,
        Err(StoreError::InvalidName { .. })
    ));
    let small = b
        .store(
            &unique("conf.small"),
            StoreOptions::default().max_value_size(4),
        )
        .await
        .expect("open a store");
    assert!(matches!(
        small.set("k", b"12345", None).await,
        Err(StoreError::ValueTooLarge { len: 5, max: 4 })
    ));
}

/// A time to live past what the clock can hold (`Duration::MAX`) never expires; one past
/// what NATS's server can express (10,000 years) is kept with its exact expiry. Neither is
/// refused, neither panics.
pub(crate) async fn ttl_past_the_clock<B: Backend>(b: B) {
    let store = b
        .store(&unique("conf.forever"), StoreOptions::default().history(2))
        .await
        .expect("open a store");
    store
        .set("max", b"v", Duration::MAX)
        .await
        .expect("a set with Duration::MAX");
    let entry = store.entry("max").await.expect("entry").expect("kept");
    assert_eq!((entry.value(), entry.expires_at()), (&b"v"[..], None));
    let millennia = Duration::from_secs(10_000 * 365 * 24 * 3600);
    store
        .set("long", b"w", millennia)
        .await
        .expect("a set with 10,000 years");
    let entry = store.entry("long").await.expect("entry").expect("kept");
    assert_eq!(entry.value(), b"w");
    assert!(
        entry
            .expires_at()
            .is_some_and(|at| at > SystemTime::now() + Duration::from_secs(9_000 * 365 * 24 * 3600)),
        "the exact expiry is kept: {:?}",
        entry.expires_at()
    );
    let keys: Vec<String> = store
        .entries()
        .await
        .expect("entries")
        .iter()
        .map(|e| e.key().to_string())
        .collect();
    assert_eq!(keys, ["long", "max"]);
}

/// A value of exactly the maximum the store reports is accepted however it is set (with a
/// time to live, owned: on NATS, with headers that count against the server's
/// `max_payload`), one byte more is `ValueTooLarge`; so is a room message.
pub(crate) async fn values_at_their_maximum<B: Backend>(b: B) {
    for options in [
        StoreOptions::default(),
        StoreOptions::default().max_value_size(64).history(2),
    ] {
        let store = b
            .store(&unique("conf.max"), options)
            .await
            .expect("open a store");
        let max = store.options().get_max_value_size();
        let at_max = vec![7u8; max];
        let ttl = Duration::from_secs(60);
        store
            .set("plain", &at_max, None)
            .await
            .expect("plain set at the maximum");
        store
            .set("ttl", &at_max, ttl)
            .await
            .expect("set with a time to live at the maximum");
        store
            .set_owned("owned", &at_max, ttl)
            .await
            .expect("owned set with a time to live at the maximum");
        assert_eq!(
            store.get("owned").await.expect("get").map(|v| v.len()),
            Some(max)
        );
        let over = store.set("over", vec![7u8; max + 1], ttl).await;
        assert!(
            matches!(over, Err(StoreError::ValueTooLarge { len, max: m }) if len == max + 1 && m == max),
            "one byte over: {over:?}"
        );
    }
    let room = b
        .room(&unique("conf.max"), crate::retained::RoomOptions::default())
        .await
        .expect("open a room");
    let max = room.options().get_max_message_size();
    room.send(vec![7u8; max])
        .await
        .expect("a message at the maximum");
    let over = room.send(vec![7u8; max + 1]).await;
    assert!(
        matches!(over, Err(StoreError::ValueTooLarge { len, max: m }) if len == max + 1 && m == max),
        "one byte over: {over:?}"
    );
}

/// A value with a time to live starts its key's history over, and its expiry ends the key:
/// no older revision comes back, not even after the backend removed the expired one (on
/// NATS, at its one-second floor; watched for three seconds).
pub(crate) async fn expiry_ends_the_key<B: Backend>(b: B) {
    let store = b
        .store(&unique("conf.expiry"), StoreOptions::default().history(3))
        .await
        .expect("open a store");
    store.set("k", b"old", None).await.expect("set");
    store.set("k", b"older?", None).await.expect("set");
    store
        .set("k", b"brief", Duration::from_millis(300))
        .await
        .expect("set");
    let history: Vec<Vec<u8>> = store
        .history("k")
        .await
        .expect("history")
        .into_iter()
        .map(crate::retained::Entry::into_value)
        .collect();
    assert_eq!(
        history,
        [b"brief".to_vec()],
        "a value with a time to live starts the history over"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    tokio::time::sleep(Duration::from_millis(350)).await;
    while tokio::time::Instant::now() < deadline {
        assert_eq!(store.get("k").await.expect("get"), None, "the key ended");
        assert!(store.entries().await.expect("entries").is_empty());
        assert!(store.history("k").await.expect("history").is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `delete` and `clear` of a value whose time to live ran out (not swept yet): not live,
/// so `false` and not counted; watchers hear `Expired` for it, never `Deleted`, and
/// `stats().deletes` counts only the live value cleared.
pub(crate) async fn delete_of_an_expired_value_is_its_expiry<B: Backend>(b: B) {
    let store = b
        .store(&unique("conf.delexp"), StoreOptions::default())
        .await
        .expect("open a store");
    let mut watch = store.watch("*").await.expect("watch");
    for key in ["gone.d", "gone.c"] {
        store
            .set(key, b"brief", Duration::from_millis(300))
            .await
            .expect("set");
    }
    store.set("live", b"stays", None).await.expect("set");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !store.delete("gone.d").await.expect("delete"),
        "an expired value is not live"
    );
    assert_eq!(
        store.clear().await.expect("clear"),
        1,
        "only `live` was live"
    );
    let mut seen = BTreeSet::new();
    // NATS removes the expired values at its one-second floor: watch past that.
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut watch)).await
    {
        match event.expect("no lag") {
            StoreEvent::Set(_) => {}
            StoreEvent::Deleted { key, .. } => {
                seen.insert(format!("deleted {key}"));
            }
            StoreEvent::Expired { key, .. } => {
                seen.insert(format!("expired {key}"));
            }
        }
    }
    let expected: BTreeSet<String> = ["expired gone.c", "expired gone.d", "deleted live"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(store.stats().await.expect("stats").deletes, 1);
}

/// A set whose value expired before the watcher read it is skipped, though it arrived
/// while the value was live: the next change follows.
pub(crate) async fn watch_skips_a_set_expired_unread<B: Backend>(b: B) {
    let store = b
        .store(&unique("conf.unread"), StoreOptions::default())
        .await
        .expect("open a store");
    let mut watch = store.watch("*").await.expect("watch");
    store
        .set("brief", b"1", Duration::from_millis(300))
        .await
        .expect("set");
    store.set("stay", b"2", None).await.expect("set");
    // Read only after `brief` ran out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut seen = Vec::new();
    // NATS expires `brief` at its one-second floor: watch past that.
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut watch)).await
    {
        seen.push(match event.expect("no lag") {
            StoreEvent::Set(e) => format!("set {}", e.key()),
            StoreEvent::Deleted { key, .. } => format!("deleted {key}"),
            StoreEvent::Expired { key, .. } => format!("expired {key}"),
        });
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("set stay"),
        "the expired set is skipped: {seen:?}"
    );
    assert!(
        !seen.contains(&"set brief".to_owned()),
        "an expired set was handed out: {seen:?}"
    );
}

pub(crate) async fn watch_order<B: Backend>(b: B) {
    let store = b
        .store(&unique("conf.watch"), StoreOptions::default())
        .await
        .expect("open a store");
    let mut watch = store.watch("user.*").await.expect("watch");
    store.set("user.1", b"a", None).await.expect("set");
    store.set("other", b"x", None).await.expect("set");
    store.delete("user.1").await.expect("delete");
    store.set("user.2", b"b", None).await.expect("set");
    let mut seen = Vec::new();
    let mut last = 0;
    for _ in 0..3 {
        let event = next(&mut watch, "a watched change").await.expect("no lag");
        assert!(event.revision() > last, "revision order");
        last = event.revision();
        seen.push(match event {
            StoreEvent::Set(e) => format!("set {}", e.key()),
            StoreEvent::Deleted { key, .. } => format!("deleted {key}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["set user.1", "deleted user.1", "set user.2"]);
}

pub(crate) async fn values_cross_processes<B: Backend>(b: B) {
    let name = unique("conf.values");
    let mut kid = Kid::spawn(&b, "set-values", &[&name, "100"]);
    kid.expect("ready").await;
    let store = b
        .store(&name, StoreOptions::default())
        .await
        .expect("open a store");
    for i in 0..100 {
        let value = store.get(&format!("k{i}")).await.expect("get");
        assert_eq!(
            value,
            Some(format!("v{i}").into_bytes()),
            "k{i} set by the child"
        );
    }
    assert_eq!(store.entries().await.expect("entries").len(), 100);
    store.set("from.parent", b"hello", None).await.expect("set");
    kid.tell("from.parent").await;
    kid.expect("got hello").await;
    kid.finish().await;
}

pub(crate) async fn ttl_across_processes<B: Backend>(b: B) {
    let name = unique("conf.ttl");
    let ttl_ms = 1500;
    let store = b
        .store(&name, StoreOptions::default())
        .await
        .expect("open a store");
    let mut watch = store.watch("t.*").await.expect("watch");
    let mut kid = Kid::spawn(&b, "set-ttl", &[&name, "t.k", &ttl_ms.to_string()]);
    let line = kid.line().await;
    let set_ms: u64 = line
        .strip_prefix("set ")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("the child said {line:?}"));
    // The expiry is at most this: the child's set returned at `set_ms`.
    let expires_by = set_ms + ttl_ms;
    let (mut seen, mut gone) = (false, false);
    while clock::to_ms(SystemTime::now()) < expires_by + 1500 {
        let started = clock::to_ms(SystemTime::now());
        let value = store.get("t.k").await.expect("get");
        if started >= expires_by {
            assert_eq!(
                value,
                None,
                "returned {} ms after its expiry",
                started - expires_by
            );
            gone = true;
        } else {
            seen |= value.is_some();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "read after the expiry");
    // Seen alive, unless this machine is so loaded that no read happened in its life.
    assert!(
        seen || clock::to_ms(SystemTime::now()) > expires_by,
        "never seen alive"
    );
    // A watcher sees it expire. (The set itself is skipped if the watcher reads it only
    // after the expiry: nothing is handed out dead.)
    loop {
        match next(&mut watch, "the expiry").await {
            Ok(StoreEvent::Set(_)) => {}
            Ok(StoreEvent::Expired { key, .. }) => {
                assert_eq!(key.as_str(), "t.k");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(Lagged(n)) => panic!("lagged {n}"),
        }
    }
    kid.finish().await;
}

pub(crate) async fn sigkill_mid_write<B: Backend>(b: B) {
    let name = unique("conf.kill");
    let len = 64 * 1024;
    let mut kid = Kid::spawn(&b, "writer", &[&name, &len.to_string()]);
    kid.expect("ready").await;
    let mut acked = BTreeSet::new();
    while acked.len() < 300 {
        let line = kid.line().await;
        if let Some(i) = line
            .strip_prefix("acked ")
            .and_then(|i| i.parse::<u64>().ok())
        {
            acked.insert(i);
        }
    }
    // Killed while its four tasks keep writing: one of them is almost surely mid-commit.
    kid.kill().await;
    // Acknowledgements already printed before the kill are acknowledgements too.
    while let Some(line) = kid.try_line().await {
        if let Some(i) = line
            .strip_prefix("acked ")
            .and_then(|i| i.parse::<u64>().ok())
        {
            acked.insert(i);
        }
    }
    let store = b
        .store(&name, StoreOptions::default())
        .await
        .expect("the store still opens");
    for i in &acked {
        let value = store.get(&format!("w.{i}")).await.expect("readable");
        assert!(
            value.as_deref() == Some(&pattern(*i, len)[..]),
            "acknowledged w.{i} lost or damaged"
        );
    }
    // Whatever else made it in is whole too: never half a value.
    let entries = store.entries().await.expect("entries");
    assert!(entries.len() >= acked.len());
    for entry in &entries {
        let i: u64 = entry.key().as_str()[2..].parse().expect("a writer key");
        assert!(
            entry.value() == pattern(i, len),
            "{} is damaged",
            entry.key()
        );
    }
    // And it takes writes again, from this process and from another.
    store
        .set("after.kill", b"ok", None)
        .await
        .expect("writable after the kill");
    let mut again = Kid::spawn(&b, "writer", &[&unique("conf.kill2"), "16"]);
    again.expect("ready").await;
    let line = again.line().await;
    assert!(line.starts_with("acked "), "another process writes: {line}");
    again.kill().await;
}

pub(crate) async fn owned_reclaimed<B: Backend>(b: B) {
    let name = unique("conf.owned");
    let store = b
        .store(&name, StoreOptions::default())
        .await
        .expect("open a store");
    let mut watch = store.watch("o.*").await.expect("watch");
    let mut kid = Kid::spawn(&b, "owner", &[&name, "10"]);
    kid.expect("ready").await;
    for i in 0..10 {
        assert!(
            store.get(&format!("o.{i}")).await.expect("get").is_some(),
            "o.{i} while its owner lives"
        );
    }
    let mut sets = 0;
    while sets < 10 {
        if let Ok(StoreEvent::Set(_)) = next(&mut watch, "the owner's sets").await {
            sets += 1;
        }
    }
    kid.kill().await;
    // Removed when asked, and watchers hear of each.
    let gone = eventually(LONG, || {
        let store = store.clone();
        async move {
            for i in 0..10 {
                if !matches!(store.get(&format!("o.{i}")).await, Ok(None)) {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(gone, "the dead owner's values are still returned");
    let mut removed = BTreeSet::new();
    while removed.len() < 10 {
        match next(&mut watch, "the reclaim of the owner's values").await {
            Ok(StoreEvent::Deleted { key, .. } | StoreEvent::Expired { key, .. }) => {
                removed.insert(key.to_string());
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(Lagged(n)) => panic!("lagged {n}"),
        }
    }
    assert_eq!(
        store.get("plain").await.expect("get").as_deref(),
        Some(&b"stays"[..]),
        "not owned: kept"
    );
    assert!(
        store
            .entries()
            .await
            .expect("entries")
            .iter()
            .all(|e| !e.key().starts_with("o."))
    );
}
