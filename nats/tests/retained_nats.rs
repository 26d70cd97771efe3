//! Retained state on NATS beyond the shared bodies (`tests/retained.rs`): what only the
//! NATS backend has to show — the one-second TTL floor, keys NATS cannot hold as they are,
//! one subscriber per durable subscription, overlapping durable patterns, stored holds.

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_bus::retained::{
    DurableOptions, Retained, RoomOptions, StoreError, StoreEvent, StoreOptions, StoredHolds,
};
use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

const PATIENCE: Duration = Duration::from_secs(20);

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("an item in time")
        .expect("the stream goes on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_below_the_floor_is_honoured_by_reads_and_expired_by_the_server_at_one_second() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("ttl.floor", StoreOptions::default())
        .await
        .expect("store");
    let mut watch = store.watch("*").await.expect("watch");
    let set_at = tokio::time::Instant::now();
    store
        .set("brief", b"x", Duration::from_millis(300))
        .await
        .expect("a sub-second ttl is accepted");
    let entry = store.entry("brief").await.expect("entry");
    assert!(
        entry.is_some() || set_at.elapsed() >= Duration::from_millis(300),
        "alive before its expiry"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The server still holds it (its floor is a second); reads never return it.
    assert_eq!(store.get("brief").await.expect("get"), None);
    assert!(store.entries().await.expect("entries").is_empty());
    assert!(store.history("brief").await.expect("history").is_empty());
    // Watchers hear the expiry when the server removes it: at one second, not before.
    let mut expired_after = None;
    while expired_after.is_none() {
        match next(&mut watch).await.expect("no lag") {
            StoreEvent::Expired { key, .. } => {
                assert_eq!(key.as_str(), "brief");
                expired_after = Some(set_at.elapsed());
            }
            StoreEvent::Set(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let after = expired_after.unwrap_or_default();
    assert!(
        after >= Duration::from_millis(950),
        "expired by the server after {after:?}"
    );
}

/// The server keeps whole seconds of a per-message time to live and drops the rest, so a
/// time to live is sent rounded up: a 1.5 s value is still read at 1.2 s (it used to be
/// removed by the server after one second), is gone just after 1.5 s (reads follow the
/// exact expiry), and watchers hear `Expired` only after the expiry (at 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_past_whole_seconds_is_kept_until_its_exact_expiry() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("ttl.exact", StoreOptions::default())
        .await
        .expect("store");
    let mut watch = store.watch("*").await.expect("watch");
    let ttl = Duration::from_millis(1500);
    let before = tokio::time::Instant::now();
    store.set("k", b"v", ttl).await.expect("set");
    let after = tokio::time::Instant::now();
    // Real time (a server cannot follow tokio's paused clock): 300 ms before the expiry,
    // 200 ms after the whole second the server used to keep.
    tokio::time::sleep_until(before + Duration::from_millis(1200)).await;
    let read = store.get("k").await.expect("get");
    let read_at = before.elapsed();
    assert!(
        read_at < ttl,
        "the read itself came after the expiry ({read_at:?}): too slow to tell"
    );
    assert_eq!(
        read.as_deref(),
        Some(&b"v"[..]),
        "gone after {read_at:?}, before its expiry of {ttl:?}"
    );
    assert_eq!(store.entries().await.expect("entries").len(), 1);
    // Just after the exact expiry: no read returns it, though the server still holds it.
    tokio::time::sleep_until(after + ttl + Duration::from_millis(50)).await;
    assert_eq!(store.get("k").await.expect("get"), None);
    assert!(store.entries().await.expect("entries").is_empty());
    assert!(store.history("k").await.expect("history").is_empty());
    let expired_after = loop {
        match next(&mut watch).await.expect("no lag") {
            StoreEvent::Expired { key, .. } => {
                assert_eq!(key.as_str(), "k");
                break before.elapsed();
            }
            StoreEvent::Set(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(
        expired_after >= ttl,
        "expired by the server after {expired_after:?}, before the expiry of {ttl:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_nats_cannot_hold_round_trip() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("odd keys é", StoreOptions::default().history(3))
        .await;
    // A store name with a space is refused like on the bus.
    assert!(matches!(store, Err(StoreError::InvalidName { .. })));
    let store = nats
        .store("odd.keys:é", StoreOptions::default().history(3))
        .await
        .expect("store");
    let keys = [
        "a:b", "é.x", "a..b", ".lead", "trail.", "x=y", "$v", "a.>.b", "%",
    ];
    for (i, key) in keys.iter().enumerate() {
        store.set(key, i.to_string(), None).await.expect("set");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            store.get(key).await.expect("get"),
            Some(i.to_string().into_bytes()),
            "{key}"
        );
    }
    let mut listed: Vec<String> = store
        .entries()
        .await
        .expect("entries")
        .iter()
        .map(|e| e.key().to_string())
        .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected);
    store.set("a:b", b"again", None).await.expect("set");
    assert_eq!(store.history("a:b").await.expect("history").len(), 2);
    // A second handle (another connection) reads the options the store was created with.
    let other = Nats::connect(&server.url()).await.expect("connect");
    let again = other
        .store("odd.keys:é", StoreOptions::default())
        .await
        .expect("store");
    assert_eq!(again.options().get_history(), 3);
    assert_eq!(store.stats().await.expect("stats").sets, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_subscription_has_one_subscriber_at_a_time() {
    let server = NatsServer::start().await;
    let a = Nats::connect(&server.url()).await.expect("connect");
    let b = Nats::connect(&server.url()).await.expect("connect");
    let first = a
        .subscribe_durable_with("billing.*", "billing", DurableOptions::default())
        .await
        .expect("attach");
    let second = b
        .subscribe_durable_with("billing.*", "billing", DurableOptions::default())
        .await;
    assert!(
        matches!(second, Err(StoreError::InUse { ref name }) if name == "billing"),
        "{second:?}"
    );
    drop(first);
    // Free again once the first is gone (at once for a handle dropped in the same
    // process, within a heartbeat stall for one on another connection).
    let third = b
        .subscribe_durable_with("billing.*", "billing", DurableOptions::default())
        .await
        .expect("attach after the first left");
    // A pattern overlapping another durable subscription's cannot be kept apart by
    // JetStream: refused with a message that says so.
    let overlap = a
        .subscribe_durable_with("billing.>", "audit", DurableOptions::default())
        .await;
    match overlap {
        Err(StoreError::Backend { message, .. }) => {
            assert!(message.contains("overlaps"), "{message}");
        }
        other => panic!("overlap accepted: {other:?}"),
    }
    third.remove().await.expect("remove");
}

/// What a room and a durable subscription with a max age past what JetStream carries
/// (about 292 years; `Duration::MAX`) do: accepted, the age reported as asked, messages
/// kept. Run on both backends (they must refuse, or accept, the same inputs).
async fn far_max_ages_keep_messages<R: Retained, F: std::future::Future<Output = ()>>(
    backend: &R,
    publish: impl Fn(&'static str) -> F,
) {
    let three_centuries = Duration::from_secs(300 * 365 * 24 * 3600);
    for (i, age) in [Duration::MAX, three_centuries].into_iter().enumerate() {
        let options = RoomOptions::default().max_age(age);
        let room = backend
            .room(&format!("far.{i}"), options.clone())
            .await
            .unwrap_or_else(|e| panic!("a room kept {age:?}: {e}"));
        assert_eq!(room.options().get_max_age(), options.get_max_age());
        room.send(b"kept").await.expect("send");
        let mut join = room.join().await.expect("join");
        assert_eq!(next(&mut join).await.expect("no lag").payload(), b"kept");
        let again = backend
            .room(&format!("far.{i}"), RoomOptions::default())
            .await
            .expect("open again");
        assert_eq!(again.options().get_max_age(), options.get_max_age());

        let pattern = if i == 0 { "far0.*" } else { "far1.*" };
        let mut sub = backend
            .subscribe_durable_with(
                pattern,
                &format!("far-{i}"),
                DurableOptions::default().max_age(age),
            )
            .await
            .unwrap_or_else(|e| panic!("a durable subscription kept {age:?}: {e}"));
        publish(if i == 0 { "far0.x" } else { "far1.x" }).await;
        assert_eq!(next(&mut sub).await.expect("no lag").payload(), b"far");
        sub.remove().await.expect("remove");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ages_past_what_jetstream_carries_keep_messages_on_both_backends() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    far_max_ages_keep_messages(&nats, |topic| {
        let nats = nats.clone();
        async move {
            nats.publish(topic, "far").await.expect("publish");
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bus =
        ephemeral_bus::Bus::open_with("far", ephemeral_bus::BusOptions::default().dir(dir.path()))
            .await
            .expect("open a bus");
    far_max_ages_keep_messages(&bus, |topic| {
        let bus = bus.clone();
        async move {
            bus.publish(topic, "far").await.expect("publish");
        }
    })
    .await;
}

/// The key of a durable subscription's saved position (FNV-1a of its name, as the crate
/// names it).
fn floor_key(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("floor.{hash:016x}")
}

/// `ack_sequence(u64::MAX)` acknowledges everything kept so far, as on the bus, and nothing
/// published later; it used to overflow (a panic, or 0 in release) after saving
/// `u64::MAX`, and every later attach overflowed on that saved position too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_past_the_end_acknowledges_what_is_kept() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let mut sub = nats
        .subscribe_durable_with("acks.*", "acks", DurableOptions::default())
        .await
        .expect("attach");
    nats.publish("acks.a", "1").await.expect("publish");
    nats.publish("acks.a", "2").await.expect("publish");
    assert_eq!(next(&mut sub).await.expect("no lag").payload(), b"1");
    // Past what was delivered (message 2 is kept, not delivered yet) and past the end.
    sub.ack_sequence(u64::MAX)
        .await
        .expect("everything kept is acknowledged");
    drop(sub);
    let mut again = nats
        .subscribe_durable_with("acks.*", "acks", DurableOptions::default())
        .await
        .expect("attach again");
    nats.publish("acks.a", "after").await.expect("publish");
    assert_eq!(
        next(&mut again).await.expect("no lag").payload(),
        b"after",
        "nothing acknowledged comes back, and what came later is kept"
    );
    drop(again);
    // A position saved at u64::MAX (by an older version): attaching reads it as the
    // stream's end.
    let durables = nats
        .jetstream()
        .get_key_value("EPHEMERAL_DURABLES")
        .await
        .expect("the durables bucket");
    durables
        .put(floor_key("acks"), u64::MAX.to_string().into())
        .await
        .expect("save a position at u64::MAX");
    let mut last = nats
        .subscribe_durable_with("acks.*", "acks", DurableOptions::default())
        .await
        .expect("attach over a position at u64::MAX");
    nats.publish("acks.a", "later").await.expect("publish");
    assert_eq!(next(&mut last).await.expect("no lag").payload(), b"later");
    last.ack_sequence(u64::MAX).await.expect("ack");
    last.remove().await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_holds_travel_through_a_nats_store() {
    let server = NatsServer::start().await;
    let a = Nats::connect(&server.url()).await.expect("connect");
    let b = Nats::connect(&server.url()).await.expect("connect");
    let sink_a = SignalSink::default();
    let kept = StoredHolds::start(
        &sink_a,
        a.store("holds", StoreOptions::default())
            .await
            .expect("store"),
        "circuit.*",
    )
    .await
    .expect("start");
    let open = sink_a.hold("circuit.open").expect("hold");
    let sink_b = SignalSink::default();
    let _mirrored = StoredHolds::start(
        &sink_b,
        b.store("holds", StoreOptions::default())
            .await
            .expect("store"),
        "circuit.*",
    )
    .await
    .expect("start");
    let mut held = sink_b.watch("circuit.open");
    tokio::time::timeout(PATIENCE, held.wait_for_match())
        .await
        .expect("the hold of the other connection is mirrored");
    drop(open);
    drop(kept);
    let released = async {
        while sink_b.has_signal("circuit.open") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, released)
        .await
        .expect("released when its holder lets go");
}

/// The server's max_payload (1 MiB by default) counts headers: the maximum in effect is the
/// options' less what the headers may take, told by `options()`, and a value of the full
/// mebibyte is `ValueTooLarge` naming what to do, never an untyped backend error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_max_payload_bounds_values_with_their_headers() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    assert_eq!(nats.max_payload(), 1024 * 1024, "the server's default");
    let store = nats
        .store("sizes", StoreOptions::default())
        .await
        .expect("open a store");
    let max = store.options().get_max_value_size();
    assert_eq!(max, 1024 * 1024 - 134, "as the options' docs say");
    store
        .set_owned("k", vec![1u8; max], Duration::from_secs(60))
        .await
        .expect("the maximum in effect, with every header");
    let error = store
        .set("k", vec![1u8; 1024 * 1024], Duration::from_secs(60))
        .await
        .expect_err("a full mebibyte");
    assert!(
        matches!(error, StoreError::ValueTooLarge { len, max: m } if len == 1024 * 1024 && m == max),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_payload"), "{error}");
    // Reopened: the same maximum, not one the headers' room was taken from twice.
    let again = nats
        .store("sizes", StoreOptions::default())
        .await
        .expect("open again");
    assert_eq!(again.options().get_max_value_size(), max);
    let room = nats
        .room("sizes", RoomOptions::default())
        .await
        .expect("open a room");
    assert_eq!(room.options().get_max_message_size(), 1024 * 1024 - 48);
    let error = room
        .send(vec![1u8; 1024 * 1024])
        .await
        .expect_err("a full mebibyte");
    assert!(
        matches!(error, StoreError::ValueTooLarge { .. }),
        "{error:?}"
    );
}

/// A server whose JetStream storage is full refuses writes with `StorageFull`, which says
/// what to do (the bus says `DatabaseFull`), not an untyped backend error; clearing the room
/// that takes the storage lets writes through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_jetstream_is_storage_full_and_a_clear_makes_room() {
    let server =
        NatsServer::start_with_config("jetstream { max_file_store: 2MB, max_memory_store: 2MB }")
            .await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let room = nats
        .room("big", RoomOptions::default())
        .await
        .expect("open a room");
    let mut sent = 0;
    let full = loop {
        match room.send(vec![1u8; 100_000]).await {
            Ok(_) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100, "2 MB of storage took {sent} messages of 100 kB");
    };
    assert!(sent > 0, "the first message fits: {full:?}");
    assert!(
        matches!(
            &full,
            StoreError::StorageFull {
                backend: "nats",
                op: "send to a room",
                ..
            }
        ),
        "{full:?}"
    );
    let message = full.to_string();
    assert!(
        message.contains("Room::clear") && message.contains("max_file_store"),
        "{message}"
    );
    let store = nats
        .store("values", StoreOptions::default())
        .await
        .expect("open a store");
    let error = store
        .set("k", vec![1u8; 100_000], Duration::from_secs(60))
        .await
        .expect_err("no storage left");
    assert!(
        matches!(
            error,
            StoreError::StorageFull {
                op: "set a value",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(room.clear().await.expect("clear the room"), sent);
    store
        .set("k", vec![1u8; 100_000], Duration::from_secs(60))
        .await
        .expect("room again once the room is cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_with_a_smaller_max_payload_bounds_sets_by_its_own() {
    let conf_dir = tempfile::tempdir().expect("a temporary directory");
    let conf = conf_dir.path().join("nats.conf");
    std::fs::write(&conf, "max_payload: 1048576\n").expect("write the config");
    let conf_arg = conf.to_str().expect("a UTF-8 path");
    let mut server = NatsServer::start_with(&["-c", conf_arg]).await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("shrunk", StoreOptions::default())
        .await
        .expect("open a store");
    assert_eq!(store.options().get_max_value_size(), 1024 * 1024 - 134);
    // The same server, restarted with a 64 KiB limit: the store, opened for 1 MiB, keeps
    // working, and a value is checked against the limit of the server it is sent to.
    std::fs::write(&conf, "max_payload: 65536\n").expect("rewrite the config");
    server.restart().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while nats.max_payload() != 65536 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never saw the new server's limit (still {})",
            nats.max_payload()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = store
        .set("k", vec![1u8; 100_000], Duration::from_secs(60))
        .await
        .expect_err("larger than the new server takes");
    let StoreError::ValueTooLarge { len, max } = error else {
        panic!("{error:?}");
    };
    assert_eq!(len, 100_000);
    assert!(
        (65536 - 200..65536).contains(&max),
        "the new limit less this set's headers: {max}"
    );
    store
        .set("k", vec![1u8; max], Duration::from_secs(60))
        .await
        .expect("the most that fits now");
    assert_eq!(
        store.get("k").await.expect("get").map(|v| v.len()),
        Some(max),
        "stored whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_stores_rooms_and_durables_say_to_enable_it() {
    // An account of its own without JetStream (the server has it; this account does not).
    let conf_dir = tempfile::tempdir().expect("a temporary directory");
    let conf = conf_dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        "accounts: { PLAIN: { users: [ { user: plain, password: plain } ] } }\n",
    )
    .expect("write the config");
    let server = NatsServer::start_with(&["-c", conf.to_str().expect("a UTF-8 path")]).await;
    let url = format!("nats://plain:plain@127.0.0.1:{}", server.port());
    let nats = Nats::connect(&url).await.expect("connect");
    let store = nats.store("s", StoreOptions::default()).await.map(|_| ());
    let room = nats.room("r", RoomOptions::default()).await.map(|_| ());
    let durable = nats
        .subscribe_durable_with("orders.*", "d", DurableOptions::default())
        .await
        .map(|_| ());
    for (what, result) in [("store", store), ("room", room), ("durable", durable)] {
        let error = result.expect_err(what);
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::Backend { .. })
                && text.contains("JetStream is not enabled")
                && text.contains("`-js`")
                && !text.contains("plain:plain"),
            "{what}: {text}"
        );
    }
}

/// Attaching without bounds (`subscribe_durable`, as the README's bus example does) keeps
/// the bounds an existing subscription was given, on both backends: the same call moves
/// from the bus to NATS unchanged.
async fn attaching_without_bounds_keeps_them<R: Retained, F: std::future::Future<Output = ()>>(
    backend: &R,
    publish: impl Fn(String) -> F,
) {
    let bounds = DurableOptions::default()
        .max_messages(3)
        .max_bytes(1 << 20)
        .max_age(Duration::from_millis(50));
    let first = backend
        .subscribe_durable_with("kept.*", "kept", bounds.clone())
        .await
        .expect("create with bounds");
    drop(first);
    let again = backend
        .subscribe_durable("kept.*", "kept")
        .await
        .expect("attach without bounds");
    assert_eq!(again.options(), &bounds, "the bounds it was given are kept");
    drop(again);
    for i in 0..5 {
        publish(format!("kept.{i}")).await;
    }
    // Let the 50 ms age pass: the subscription keeps its age, so all five are gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish("kept.fresh".to_owned()).await;
    let mut sub = backend
        .subscribe_durable("kept.*", "kept")
        .await
        .expect("attach again");
    assert_eq!(sub.options(), &bounds);
    let mut lagged = 0;
    loop {
        match next(&mut sub).await {
            Err(gap) => lagged += gap.0,
            Ok(message) => {
                assert_eq!(message.topic().as_str(), "kept.fresh");
                break;
            }
        }
    }
    assert_eq!(lagged, 5, "the five older than the kept age were dropped");
    sub.remove().await.expect("remove");

    let fresh = backend
        .subscribe_durable("fresh.*", "fresh")
        .await
        .expect("a new one without bounds");
    assert_eq!(fresh.options(), &DurableOptions::default());
    fresh.remove().await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_without_bounds_keeps_them_on_both_backends() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    attaching_without_bounds_keeps_them(&nats, |topic| {
        let nats = nats.clone();
        async move {
            nats.publish(&topic, "x").await.expect("publish");
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bus =
        ephemeral_bus::Bus::open_with("kept", ephemeral_bus::BusOptions::default().dir(dir.path()))
            .await
            .expect("open a bus");
    attaching_without_bounds_keeps_them(&bus, |topic| {
        let bus = bus.clone();
        async move {
            bus.publish(&topic, "x").await.expect("publish");
        }
    })
    .await;
}

/// An owned value whose owner goes (here its connection is dropped; a killed process is
/// the same: its liveness key is no longer refreshed) is removed within seconds while a
/// watch is open, and the watcher hears `Deleted { cause: OwnerGone }` without reading
/// the key, as on the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_hears_an_owned_value_go_with_its_owner() {
    let server = NatsServer::start().await;
    let watcher = Nats::connect(&server.url()).await.expect("connect");
    let store = watcher
        .store("owned.watch", StoreOptions::default())
        .await
        .expect("store");
    let mut watch = store.watch("worker.*").await.expect("watch");
    {
        let owner = Nats::connect(&server.url()).await.expect("connect");
        let theirs = owner
            .store("owned.watch", StoreOptions::default())
            .await
            .expect("store");
        theirs
            .set_owned("worker.7", b"busy", None)
            .await
            .expect("set owned");
        assert!(matches!(
            next(&mut watch).await.expect("no lag"),
            StoreEvent::Set(entry) if entry.key().as_str() == "worker.7"
        ));
    } // The owner goes: its liveness key lapses within seconds.
    match next(&mut watch).await.expect("no lag") {
        StoreEvent::Deleted { key, cause, .. } => {
            assert_eq!(key.as_str(), "worker.7");
            assert_eq!(cause, ephemeral_bus::retained::Removal::OwnerGone);
        }
        other => panic!("expected the owned value's removal, got {other:?}"),
    }
    assert_eq!(store.get("worker.7").await.expect("get"), None);
}

/// A value whose owner is gone is not live: `delete` removes it as reclaimed and answers
/// `false`, `clear` removes such values as reclaimed and does not count them (as `get`
/// and `stats` already see it; the bus does the same, `bus/tests/retained.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_clear_count_a_dead_owners_values_as_reclaimed() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("owned.gone", StoreOptions::default())
        .await
        .expect("store");
    store.set("mine", b"plain", None).await.expect("set");
    {
        let owner = Nats::connect(&server.url()).await.expect("connect");
        let theirs = owner
            .store("owned.gone", StoreOptions::default())
            .await
            .expect("store");
        for key in ["probe", "victim", "c.1", "c.2"] {
            theirs
                .set_owned(key, b"busy", None)
                .await
                .expect("set owned");
        }
    } // The owner goes: its liveness key lapses within seconds.
    // Its death as a read of `probe` sees it (that read reclaims `probe` alone).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store.get("probe").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner never died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Before: `true` (and counted in `deletes`) for a value `get` no longer returned.
    assert!(!store.delete("victim").await.expect("delete"), "not live");
    // Before: 3, the dead owner's two values counted as live ones cleared.
    assert_eq!(
        store.clear().await.expect("clear"),
        1,
        "only `mine` was live"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.deletes, stats.reclaimed), (1, 4), "{stats:?}");
}

/// Stops `server` and waits until `nats` noticed the connection is down.
async fn stop_and_wait_until_noticed(server: &mut NatsServer, nats: &Nats) {
    server.stop().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while nats.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With the server down, a store's calls fail saying the connection is down and what to
/// do, and opening a store fails at once saying so, rather than a bare "timed out" after
/// every JetStream request's own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_store_errors_say_the_connection_is_down() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("down", StoreOptions::default())
        .await
        .expect("store");
    store.set("k", b"v", None).await.expect("set while up");
    stop_and_wait_until_noticed(&mut server, &nats).await;
    let set = store
        .set("k", b"w", None)
        .await
        .expect_err("set while down");
    let get = store.get("k").await.expect_err("get while down");
    let open = nats
        .store("down.other", StoreOptions::default())
        .await
        .map(|_| ())
        .expect_err("open while down");
    for (what, error) in [("set", set), ("get", get), ("open", open)] {
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::Backend { .. })
                && text.contains("not connected to the NATS server")
                && text.contains("nats.offline"),
            "{what}: {text}"
        );
        // Said once (`get` used to say it twice: once from `entry`, once more itself).
        assert_eq!(
            text.matches("not connected to the NATS server").count(),
            1,
            "{what}: {text}"
        );
    }
}

/// A durable subscription's `ack` and `remove` with the server down say the connection is
/// down and what to do, as a store's and a room's calls do (they gave the client's bare
/// error: "timed out" or "no responders").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_durable_errors_say_the_connection_is_down() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let mut sub = nats
        .subscribe_durable_with("down.*", "down", DurableOptions::default())
        .await
        .expect("attach");
    nats.publish("down.a", "1").await.expect("publish");
    let message = next(&mut sub).await.expect("no lag");
    stop_and_wait_until_noticed(&mut server, &nats).await;
    let ack = sub.ack(&message).await.expect_err("ack while down");
    let remove = sub.remove().await.expect_err("remove while down");
    for (what, error) in [("ack", ack), ("remove", remove)] {
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::Backend { .. })
                && text.contains("not connected to the NATS server")
                && text.contains("nats.offline"),
            "{what}: {text}"
        );
    }
}

/// A room's `send` and `join` with the server down say the connection is down and what to
/// do, as a store's calls do (they gave the client's bare error).
#[tokio::test]
async fn with_the_server_down_room_errors_say_the_connection_is_down() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let room = nats
        .room("down", RoomOptions::default())
        .await
        .expect("room");
    room.send(b"while up").await.expect("send while up");
    stop_and_wait_until_noticed(&mut server, &nats).await;
    let send = room.send(b"while down").await.expect_err("send while down");
    let join = room.join().await.map(|_| ()).expect_err("join while down");
    for (what, error) in [("send", send), ("join", join)] {
        let text = error.to_string();
        assert!(
            text.contains("not connected to the NATS server") && text.contains("nats.offline"),
            "{what}: {text}"
        );
    }
}

/// After a server restart a store watch, a room join and a durable subscription deliver again
/// as soon as the server is back, each message once and in order: each is made again from
/// the next message owed when the connection returns. (They waited for async-nats's ordered
/// consumer to notice: 15 s for the watch, 4 s for the others. The bound below is a
/// thousand times what they take now.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_deliver_again_soon_after_a_server_restart() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    let store = nats
        .store("again", StoreOptions::default())
        .await
        .expect("store");
    let room = nats
        .room("again", RoomOptions::default())
        .await
        .expect("room");
    let mut watch = store.watch("k.*").await.expect("watch");
    let mut joined = room.join().await.expect("join");
    let mut durable = nats
        .subscribe_durable_with("again.*", "again", DurableOptions::default())
        .await
        .expect("durable");
    store.set("k.a", b"0", None).await.expect("set");
    room.send(b"0").await.expect("send");
    nats.publish("again.a", "0").await.expect("publish");
    assert!(matches!(next(&mut watch).await, Ok(StoreEvent::Set(_))));
    assert_eq!(next(&mut joined).await.expect("no lag").payload(), b"0");
    assert_eq!(next(&mut durable).await.expect("no lag").payload(), b"0");

    server.restart().await;
    let started = tokio::time::Instant::now();
    let deadline = started + PATIENCE;
    for i in 1..=5 {
        let text = i.to_string();
        // The server may still be recovering its streams: each write is tried until taken.
        while store.set("k.a", text.as_bytes(), None).await.is_err()
            || room.send(text.as_bytes()).await.is_err()
            || nats.publish("again.a", text.clone()).await.is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "writes refused");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let payloads = |stream: Vec<Vec<u8>>| {
        stream
            .into_iter()
            .map(|p| String::from_utf8(p).expect("text"))
            .collect::<Vec<_>>()
    };
    let mut room_got = Vec::new();
    let mut durable_got = Vec::new();
    while room_got.len() < 5 {
        room_got.push(next(&mut joined).await.expect("no lag").payload().to_vec());
    }
    while durable_got.len() < 5 {
        durable_got.push(next(&mut durable).await.expect("no lag").payload().to_vec());
    }
    // A store keeps a key's last value only: the watch may skip a value replaced before it
    // was pulled, never go back, and ends at the last.
    let mut watched = Vec::new();
    while watched.last().map(String::as_str) != Some("5") {
        match next(&mut watch).await {
            Ok(StoreEvent::Set(entry)) => {
                watched.push(String::from_utf8(entry.value().to_vec()).expect("text"));
            }
            other => panic!("expected a set, got {other:?}"),
        }
    }
    let waited = started.elapsed();
    assert_eq!(payloads(room_got), ["1", "2", "3", "4", "5"]);
    assert_eq!(payloads(durable_got), ["1", "2", "3", "4", "5"]);
    assert!(
        watched.windows(2).all(|w| w[0] < w[1]),
        "in order, once each: {watched:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the readers took {waited:?} after the restart"
    );
}
