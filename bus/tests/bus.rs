//! Two or more `Bus` handles in one process: each is a separate peer with its own sockets,
//! so everything here crosses real Unix sockets.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_bus::{Buffer, Bus, BusError, Lagged, Outgoing, Overflow};
use futures::StreamExt;
use support::{eventually, files_in, open, options};

const LONG: Duration = Duration::from_secs(10);

async fn next(sub: &mut ephemeral_bus::Subscription) -> Result<ephemeral_bus::Message, Lagged> {
    tokio::time::timeout(LONG, sub.next())
        .await
        .expect("a message within the bound")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_matching_subscribers_in_other_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    assert_eq!(a.peers(), 1);
    assert_eq!(b.peers(), 1);
    let mut news = b.subscribe("news.+").await.unwrap();
    let mut all = b.subscribe("*").await.unwrap();

    assert_eq!(a.publish("news.sports", b"goal").await.unwrap(), 2);
    assert_eq!(a.publish("news.sports.eu", b"x").await.unwrap(), 1);
    assert_eq!(a.publish("weather", b"rain").await.unwrap(), 1);

    let m = next(&mut news).await.unwrap();
    assert_eq!(
        (m.topic().as_str(), m.payload()),
        ("news.sports", &b"goal"[..])
    );
    let topics: Vec<String> = [
        next(&mut all).await.unwrap(),
        next(&mut all).await.unwrap(),
        next(&mut all).await.unwrap(),
    ]
    .iter()
    .map(|m| m.topic().to_string())
    .collect();
    assert_eq!(topics, ["news.sports", "news.sports.eu", "weather"]);
    assert!(news.try_recv().is_none());

    // Per-topic counters on both ends, and per-subscription delivery counters.
    let published: Vec<(String, u64)> = a
        .stats()
        .topics
        .into_iter()
        .map(|t| (t.topic, t.published))
        .collect();
    assert_eq!(
        published,
        [("news.sports", 1), ("news.sports.eu", 1), ("weather", 1)].map(|(t, n)| (t.to_owned(), n))
    );
    let received: u64 = b.stats().topics.iter().map(|t| t.received).sum();
    assert_eq!(received, 3);
    assert_eq!(news.stats().delivered, 1);
    assert_eq!(all.stats().dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_ttl_and_ids_travel() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b.subscribe("orders.*").await.unwrap();
    let out = Outgoing::new("orders.created")
        .unwrap()
        .payload(b"42")
        .header("attempt", 3)
        .header("region", "eu")
        .ttl(Duration::from_secs(5));
    a.publish_with(out.clone()).await.unwrap();
    a.publish_with(out).await.unwrap();
    let first = next(&mut sub).await.unwrap();
    let second = next(&mut sub).await.unwrap();
    assert_eq!(first.header("attempt").unwrap().to_string(), "3");
    assert_eq!(first.header("region").unwrap().to_string(), "eu");
    // The time left when handed out: the 5 s sent, less the moment on the way.
    let ttl = first.ttl().unwrap();
    assert!(
        ttl <= Duration::from_secs(5) && ttl > Duration::from_secs(4),
        "{ttl:?}"
    );
    assert_eq!(first.origin(), ephemeral_bus::process_origin());
    assert_eq!(second.id(), first.id() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_publisher_order_with_two_publishers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let c = open(tmp.path(), "t").await;
    let mut sub = c.subscribe("n").await.unwrap();
    let n = 5_000u32;
    let pa = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..n {
                a.publish("n", [b"a".as_slice(), &i.to_le_bytes()].concat())
                    .await
                    .unwrap();
            }
        })
    };
    let pb = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..n {
                b.publish("n", [b"b".as_slice(), &i.to_le_bytes()].concat())
                    .await
                    .unwrap();
            }
        })
    };
    let mut expect = [0u32; 2];
    for _ in 0..2 * n {
        let m = next(&mut sub).await.unwrap();
        let who = usize::from(m.payload()[0] == b'b');
        let i = u32::from_le_bytes(m.payload()[1..5].try_into().unwrap());
        assert_eq!(i, expect[who], "out of order from publisher {who}");
        expect[who] += 1;
    }
    assert_eq!(expect, [n, n]);
    pa.await.unwrap();
    pb.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_limit_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = Bus::open_with("t", options(tmp.path()).max_payload(16))
        .await
        .unwrap();
    let err = bus.publish("big", [0u8; 17]).await.unwrap_err();
    assert!(
        matches!(err, BusError::PayloadTooLarge { len: 17, max: 16 }),
        "{err}"
    );
    assert!(err.to_string().contains("max_payload"));
    assert!(matches!(
        bus.publish("bad topic", b"").await,
        Err(BusError::Name(_))
    ));
}

/// What a frame carries arrives whole in another process's handle; what it cannot carry is
/// refused when published, never cut on the way (the publishing handle's own subscribers
/// used to get it whole while the others got it cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_at_the_frame_limits_arrive_whole_and_beyond_them_are_refused() {
    use ephemeral_bus::{MAX_HEADER_KEY, MAX_HEADER_STR, MAX_HEADERS};
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b.subscribe("h.*").await.unwrap();
    let long_key = "k".repeat(MAX_HEADER_KEY);
    let long_text = "s".repeat(MAX_HEADER_STR);
    let mut out = Outgoing::new("h.max")
        .unwrap()
        .header(&long_key, 1)
        .header("text", long_text.as_str());
    for i in 2..MAX_HEADERS {
        out = out.header(&format!("n{i}"), i as i64);
    }
    a.publish_with(out).await.expect("at every limit");
    let got = next(&mut sub).await.unwrap();
    assert_eq!(got.headers().len(), MAX_HEADERS);
    assert_eq!(got.header(&long_key).unwrap().to_string(), "1");
    assert_eq!(got.header("text").unwrap().to_string(), long_text);

    let over = [
        Outgoing::new("h.key")
            .unwrap()
            .header(&"k".repeat(MAX_HEADER_KEY + 1), 1),
        Outgoing::new("h.text")
            .unwrap()
            .header("text", "s".repeat(MAX_HEADER_STR + 1).as_str()),
        (0..=MAX_HEADERS).fold(Outgoing::new("h.many").unwrap(), |o, i| {
            o.header(&format!("n{i}"), 0)
        }),
    ];
    for (out, (len, max)) in over.into_iter().zip([
        (MAX_HEADER_KEY + 1, MAX_HEADER_KEY),
        (MAX_HEADER_STR + 1, MAX_HEADER_STR),
        (MAX_HEADERS + 1, MAX_HEADERS),
    ]) {
        let err = a.publish_with(out).await.unwrap_err();
        assert!(
            matches!(&err, BusError::HeadersTooLarge { len: l, max: m, .. } if *l == len && *m == max),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("fewer or shorter headers"),
            "{err}"
        );
    }
    // Nothing of the refused ones arrived.
    a.publish("h.end", b"").await.unwrap();
    assert_eq!(next(&mut sub).await.unwrap().topic(), "h.end");
}

/// Headers each within their limits but together larger than a frame keeps for them: it
/// said "payload of 2400324 bytes is larger than the bus maximum of 2097152 bytes" for a
/// 5-byte payload (PayloadTooLarge, with the frame's size and limit); the headers are what
/// to cut, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_too_large_together_are_refused_as_headers_not_as_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b.subscribe("h.*").await.unwrap();
    let value = "v".repeat(60_000);
    let out = (0..40).fold(Outgoing::new("h.big").unwrap().payload(b"small"), |o, i| {
        o.header(&format!("k{i}"), value.as_str())
    });
    let err = a.publish_with(out).await.unwrap_err();
    match &err {
        BusError::HeadersTooLarge { what, len, max } => {
            assert_eq!(what, "the encoded size of the headers");
            assert!(*len > 40 * 60_000 && *len < 40 * 60_100, "{err}");
            assert!(*max > 1_000_000 && *max < 1024 * 1024 * 2, "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("fewer or shorter headers"),
        "{err}"
    );
    // Nothing of it arrived.
    a.publish("h.end", b"").await.unwrap();
    assert_eq!(next(&mut sub).await.unwrap().topic(), "h.end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_subscriber_reports_lag_and_keeps_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b
        .subscribe_with("x", Buffer::bounded(4).unwrap(), Overflow::DropOldest)
        .await
        .unwrap();
    for i in 0..10u8 {
        a.publish("x", [i]).await.unwrap();
    }
    // All ten arrive at b (some dropped there): wait until the counters say so.
    assert!(eventually(LONG, || sub.stats().delivered == 10).await);
    assert_eq!(next(&mut sub).await, Err(Lagged(6)));
    let rest: Vec<u8> = (0..4)
        .map(|_| sub.try_recv().unwrap().unwrap().payload()[0])
        .collect();
    assert_eq!(rest, [6, 7, 8, 9]);
    assert_eq!(sub.stats().dropped, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_wait_subscriber_bounds_the_publisher_and_sees_lag() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Bus::open_with(
        "t",
        options(tmp.path())
            .peer_queue_bytes(1024)
            .send_timeout(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let b = open(tmp.path(), "t").await;
    let mut sub = b
        .subscribe_with("x", Buffer::bounded(8).unwrap(), Overflow::Wait)
        .await
        .unwrap();
    // Nobody reads `sub`: b's buffer fills, then the socket, then a's queue. Every publish
    // must still return (bounded by the send timeout), and the excess is counted.
    let payload = [7u8; 1024];
    let mut reached = 0;
    for _ in 0..2_000 {
        reached += tokio::time::timeout(LONG, a.publish("x", payload))
            .await
            .expect("publish is bounded")
            .unwrap();
    }
    assert!(
        reached < 2_000,
        "everything fitted; the test did not fill the pipe"
    );
    assert_eq!(a.stats().dropped_sends as usize, 2_000 - reached);
    // The reader catches up: every message that was queued, and a lag report for the rest
    // (sent by a's writer once b reads again), so nothing is missed silently.
    let dropped = (2_000 - reached) as u64;
    let (mut got, mut lagged) = (0usize, 0u64);
    while got < reached || lagged < dropped {
        match next(&mut sub).await {
            Ok(_) => got += 1,
            Err(Lagged(n)) => lagged += n,
        }
    }
    assert_eq!((got, lagged), (reached, dropped));
    assert_eq!(sub.stats().dropped, dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_form_survives_a_panicking_callback() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _task = a
        .subscribe_fn("cb.*", move |item| {
            let m = item.unwrap();
            if m.payload() == b"boom" {
                panic!("callback panic, on purpose");
            }
            tx.send(m.payload().to_vec()).unwrap();
        })
        .await
        .unwrap();
    a.publish("cb.one", b"1").await.unwrap();
    a.publish("cb.two", b"boom").await.unwrap();
    a.publish("cb.three", b"3").await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), b"1");
    assert_eq!(rx.recv().await.unwrap(), b"3");
    assert_eq!(a.stats().callback_panics, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_routing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let sub = b.subscribe("x").await.unwrap();
    assert_eq!(a.publish("x", b"").await.unwrap(), 1);
    drop(sub);
    assert!(eventually(LONG, || a.stats().peers == 1).await);
    let mut reached = 1;
    for _ in 0..500 {
        reached = a.publish("x", b"").await.unwrap();
        if reached == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reached, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_peer_out_removes_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let dir = a.dir().to_path_buf();
    let mut files = files_in(&dir);
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}"); // .lock, 2 × (.peer, .sock)
    drop(a);
    assert_eq!(files_in(&dir).len(), 3);
    drop(b);
    assert!(!dir.exists(), "left behind: {:?}", files_in(&dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_parent_directories_are_created_private() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("a").join("b");
    let bus = Bus::open_with("t", options(&parent)).await.unwrap();
    for dir in [
        tmp.path().join("a"),
        parent.clone(),
        bus.dir().to_path_buf(),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    // An existing parent keeps its mode.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _other = Bus::open_with("t", options(&shared)).await.unwrap();
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_open_to_others_or_owned_by_another_uid_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ephemeral-t");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Bus::open_with("t", options(tmp.path())).await.unwrap_err();
    assert!(
        matches!(err, BusError::Permissions { mode: 0o777, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 700"));

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    match std::os::unix::fs::chown(&dir, Some(65534), Some(65534)) {
        Ok(()) => {
            let err = Bus::open_with("t", options(tmp.path())).await.unwrap_err();
            assert!(
                matches!(err, BusError::NotOwner { owner: 65534, .. }),
                "{err}"
            );
        }
        // Not root: chown to another uid is not permitted, so that half cannot run here.
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_sinks_share_signals_with_their_remaining_ttl_and_no_echo() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let sink_a = SignalSink::default();
    let sink_b = SignalSink::default();
    let bridge_a = a.bridge(&sink_a, "error.*").await.unwrap();
    let bridge_b = b.bridge(&sink_b, "error.*").await.unwrap();

    sink_a
        .raise_with(
            ephemeral::Signal::build("error.db")
                .unwrap()
                .key("orders")
                .expires_in(Duration::from_millis(300)),
        )
        .unwrap();
    sink_a.raise("info.started").unwrap();
    assert!(eventually(LONG, || sink_b.has_signal("error.db")).await);
    let got = sink_b.latest("error.db").unwrap();
    assert_eq!(got.key(), Some("orders"));
    assert!(
        got.remaining(tokio::time::Instant::now(), sink_b.max_age()) <= Duration::from_millis(300)
    );
    assert!(!sink_b.has_signal("info.*"));
    // It expires on time in b too.
    assert!(eventually(LONG, || !sink_b.has_signal("error.db")).await);
    // No echo: a saw its own signal exactly once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink_a.count("error.*"), 0); // expired in a as well
    assert_eq!(bridge_a.published(), 1);
    assert_eq!(bridge_b.raised(), 1);
    assert_eq!(bridge_b.published(), 0);
    assert_eq!(bridge_a.raised(), 0);
}

/// A pattern that matches no name would bridge nothing, silently: refused, as over NATS (it
/// was accepted: `bus.bridge(&sink, ",")`, `""` and `"a b"` returned a bridge carrying
/// nothing, while `Nats::bridge` refused them with `EmptyPattern`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_pattern_matching_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let sink = SignalSink::default();
    for pattern in ["", ",", " , ", "a b", "a b,c\td.*"] {
        let error = a.bridge(&sink, pattern).await.unwrap_err();
        assert!(
            matches!(&error, BusError::EmptyPattern { pattern: p } if p == pattern),
            "{pattern:?}: {error}"
        );
        assert!(error.to_string().contains("give a pattern such as"));
    }
    // One usable alternative is enough.
    drop(a.bridge(&sink, "a b,error.*").await.unwrap());
}

/// A subscription on a pattern that matches no name is refused, as `Nats::subscribe` refuses
/// it (it was accepted and never received anything).
#[tokio::test]
async fn a_subscription_pattern_matching_nothing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    for pattern in ["", ",", " , ", "a b"] {
        let error = a.subscribe(pattern).await.unwrap_err();
        assert!(
            matches!(&error, BusError::EmptyPattern { pattern: p } if p == pattern),
            "{pattern:?}: {error}"
        );
        // An observer of such a pattern would never see a copy either: it was accepted.
        let error = a.observe(pattern).await.unwrap_err();
        assert!(
            matches!(&error, BusError::EmptyPattern { pattern: p } if p == pattern),
            "observe {pattern:?}: {error}"
        );
    }
    drop(a.subscribe("a b,orders.*").await.unwrap());
    drop(a.observe("a b,orders.*").await.unwrap());
}

/// A plain message (`Bus::publish`, not from a bridge) is raised once per sink however many
/// bridges reach the sink, as a bridged signal is (it was raised once per path: two bridges
/// of one sink gave 2; in a ring of three buses sinks 0 and 1 held 2 each), and two plain
/// messages from two handles of one process are still two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_message_is_raised_once_per_sink_whatever_the_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        open(tmp.path(), "t").await,
        open(tmp.path(), "t").await,
        open(tmp.path(), "t").await,
    );
    let sink = SignalSink::default();
    let wide = a.bridge(&sink, "error.*").await.unwrap();
    let narrow = a.bridge(&sink, "error.db").await.unwrap();
    b.publish("error.db", b"x").await.unwrap();
    // Two handles of this process: their first messages are distinct messages.
    c.publish("error.db", b"y").await.unwrap();
    assert!(
        eventually(LONG, || wide.raised()
            + narrow.raised()
            + wide.looped()
            + narrow.looped()
            == 4)
        .await
    );
    assert_eq!(sink.count("error.*"), 2, "each message once");
    assert_eq!(wide.raised() + narrow.raised(), 2);

    // A ring: bus i joins sink i and sink i+1; one plain publish on bus x.
    let sinks: Vec<SignalSink> = (0..3).map(|_| SignalSink::default()).collect();
    let mut bridges = Vec::new();
    for (i, name) in ["x", "y", "z"].into_iter().enumerate() {
        for s in [i, (i + 1) % 3] {
            let bus = open(tmp.path(), name).await;
            bridges.push((bus.bridge(&sinks[s], "alarm.*").await.unwrap(), bus));
        }
    }
    let x = open(tmp.path(), "x").await;
    x.publish("alarm.fire", b"").await.unwrap();
    // Sinks 0 and 1 get it from x and forward it (on z, on y); sink 2 gets both copies and
    // forwards the first onwards to sink 0 or 1 again: five arrivals, each raised or
    // counted looped.
    let arrivals = |b: &[(ephemeral_bus::Bridge, Bus)]| -> u64 {
        b.iter().map(|(b, _)| b.raised() + b.looped()).sum()
    };
    assert!(
        eventually(LONG, || arrivals(&bridges) == 5).await,
        "{}",
        arrivals(&bridges)
    );
    let counts: Vec<usize> = sinks.iter().map(|s| s.count("alarm.*")).collect();
    assert_eq!(counts, [1, 1, 1]);
}

/// `max_hops(0)` is taken as 1: the sink's own signals and holds still cross (they were
/// counted as loops and nothing was published: published 0, looped 1), and with 1 nothing
/// that came from elsewhere is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hops_zero_still_bridges_the_sinks_own_signals() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let (sink_a, sink_b) = (SignalSink::default(), SignalSink::default());
    let options = ephemeral_bus::BridgeOptions::default().max_hops(0);
    let bridge_a = a.bridge_with(&sink_a, "x.*", options).await.unwrap();
    let _bridge_b = b.bridge(&sink_b, "x.*").await.unwrap();
    sink_a.raise("x.a").unwrap();
    let _held = sink_a.hold("x.h").unwrap();
    assert!(
        eventually(LONG, || sink_b.has_signal("x.a")
            && sink_b.has_signal("x.h"))
        .await
    );
    assert_eq!((bridge_a.published(), bridge_a.looped()), (1, 0));
}

/// Raised faster than the bridge publishes (no await between raises, one thread), the
/// bridge's subscription of the sink drops the oldest: every signal dropped is one failure,
/// so published and failed add up to what was raised (it counted the whole loss as 1:
/// 5,000 raised gave 1,024 published and 1 failed).
#[tokio::test(flavor = "current_thread")]
async fn signals_a_bridge_could_not_keep_up_with_each_count_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let sink = SignalSink::default();
    let bridge = a.bridge(&sink, "burst.*").await.unwrap();
    const RAISED: u64 = 5_000;
    for i in 0..RAISED {
        sink.raise(&format!("burst.{i}")).unwrap();
    }
    assert!(eventually(LONG, || bridge.published() + bridge.failed() == RAISED).await);
    assert!(
        bridge.failed() > 0,
        "the burst overflowed the bridge's subscription"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_of_three_buses_delivers_one_raise_once_per_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let sinks: Vec<SignalSink> = (0..3).map(|_| SignalSink::default()).collect();
    // Bus i joins sink i and sink i+1: x = (0, 1), y = (1, 2), z = (2, 0).
    let mut bridges = Vec::new();
    let mut buses = Vec::new();
    for (i, name) in ["x", "y", "z"].into_iter().enumerate() {
        for s in [i, (i + 1) % 3] {
            let bus = open(tmp.path(), name).await;
            bridges.push(bus.bridge(&sinks[s], "alarm.*").await.unwrap());
            buses.push(bus);
        }
    }
    sinks[0].raise("alarm.fire").unwrap();
    assert!(eventually(LONG, || sinks.iter().all(|s| s.count("alarm.*") >= 1)).await);
    // Let any looping copy come round (it would within milliseconds).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts: Vec<usize> = sinks.iter().map(|s| s.count("alarm.*")).collect();
    assert_eq!(counts, [1, 1, 1]);
    assert!(bridges.iter().map(|b| b.looped()).sum::<u64>() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_foreign_version_frames_are_refused_and_counted() {
    use ephemeral_bus::frame::{self, Frame, LEN_PREFIX};
    use tokio::io::AsyncWriteExt;

    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let mut sub = bus.subscribe("x").await.unwrap();
    let sock = bus.dir().join(format!("{:016x}.sock", bus.peer_id()));
    let mut raw = tokio::net::UnixStream::connect(&sock).await.unwrap();

    let mut bytes = Vec::new();
    frame::encode(
        &Frame::Hello {
            peer: 0xdead_beef,
            subscriptions: vec![],
        },
        &mut bytes,
    );
    // A frame of another format version.
    let mut foreign = Vec::new();
    frame::encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut foreign);
    foreign[LEN_PREFIX] = frame::VERSION + 1;
    bytes.extend_from_slice(&foreign);
    // Garbage with a sound length prefix.
    bytes.extend_from_slice(&5u32.to_le_bytes());
    bytes.extend_from_slice(&[frame::VERSION, 1, 2, 3, 4]);
    // Then a valid message: the stream is still in step and it is delivered.
    let publisher = Bus::open_with("u", support::options(tmp.path()))
        .await
        .unwrap();
    let mut capture = publisher.subscribe("x").await.unwrap();
    publisher.publish("x", b"after").await.unwrap();
    let message = next(&mut capture).await.unwrap();
    frame::encode(&Frame::Message(message), &mut bytes);
    raw.write_all(&bytes).await.unwrap();

    let got = next(&mut sub).await.unwrap();
    assert_eq!(got.payload(), b"after");
    assert_eq!(bus.stats().corrupt_frames, 2);
    // An impossible length cannot be skipped: the connection is dropped, the bus carries on.
    raw.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
    assert!(eventually(LONG, || bus.stats().corrupt_frames == 3 && bus.peers() == 0).await);
    assert_eq!(bus.publish("x", b"still fine").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_subscriber_is_never_taken_for_a_request_server() {
    let tmp = tempfile::tempdir().unwrap();
    let watcher = open(tmp.path(), "t").await;
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    // Watchers in two processes (remote) and in the client's own process (local).
    let _remote_watch = watcher.subscribe("*").await.unwrap();
    let _local_watch = client.subscribe("_req.*").await.unwrap();
    assert!(matches!(
        client.request("math.double", b"1", LONG).await,
        Err(BusError::NoServer { .. })
    ));
    let _s = server
        .serve("math.double", |m| async move {
            let n: u64 = m.payload_str().unwrap().parse().unwrap();
            (n * 2).to_string().into_bytes()
        })
        .await
        .unwrap();
    for i in 0..6u64 {
        let reply = client
            .request("math.double", i.to_string(), LONG)
            .await
            .unwrap();
        assert_eq!(reply.payload_str(), Some((i * 2).to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_round_robin_timeout_late_reply_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let c = open(tmp.path(), "t").await;
    assert!(matches!(
        a.request("math.double", b"1", LONG).await,
        Err(BusError::NoServer { .. })
    ));
    let _sb = b
        .serve("math.double", |m| async move {
            let n: u64 = m.payload_str().unwrap().parse().unwrap();
            format!("b:{}", n * 2).into_bytes()
        })
        .await
        .unwrap();
    let _sc = c
        .serve("math.double", |m| async move {
            let n: u64 = m.payload_str().unwrap().parse().unwrap();
            format!("c:{}", n * 2).into_bytes()
        })
        .await
        .unwrap();
    // Round-robin among the two servers, one answer per request.
    let mut answers = Vec::new();
    for i in 0..4 {
        let reply = a.request("math.double", i.to_string(), LONG).await.unwrap();
        answers.push(reply.payload_str().unwrap().to_owned());
    }
    // Each request answered once, with the right value, and the servers took turns.
    let values: Vec<&str> = answers.iter().map(|s| &s[2..]).collect();
    let mut sorted_values = values.clone();
    sorted_values.sort_unstable();
    assert_eq!(sorted_values, ["0", "2", "4", "6"]);
    assert_eq!(answers.iter().filter(|s| s.starts_with("b:")).count(), 2);

    let _slow = b
        .serve("slow", |_| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b"late".to_vec()
        })
        .await
        .unwrap();
    let err = a
        .request("slow", b"", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::Timeout { .. }), "{err}");
    assert!(eventually(LONG, || a.stats().late_replies == 1).await);

    let _boom = c
        .serve("boom", |_| async { panic!("handler exploded") })
        .await
        .unwrap();
    let err = a.request("boom", b"", LONG).await.unwrap_err();
    match err {
        BusError::ServerFailed { message, .. } => assert!(message.contains("handler exploded")),
        other => panic!("expected ServerFailed, got {other}"),
    }
    // A server in the requesting handle itself answers too.
    let _own = a
        .serve("own", |_| async { b"mine".to_vec() })
        .await
        .unwrap();
    assert_eq!(
        a.request("own", b"", LONG).await.unwrap().payload(),
        b"mine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_mirrored_until_released_or_the_holder_stops() {
    use ephemeral_bus::BridgeOptions;

    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let sink_a = SignalSink::default();
    let sink_b = SignalSink::default();
    let lease = BridgeOptions::default().hold_lease(Duration::from_millis(300));
    let bridge_a = a
        .bridge_with(&sink_a, "circuit.*", lease.clone())
        .await
        .unwrap();
    let _bridge_b = b.bridge_with(&sink_b, "circuit.*", lease).await.unwrap();

    // Released by the holder: released in b too.
    let hold = sink_a.hold("circuit.open").unwrap();
    assert!(eventually(LONG, || sink_b.has_signal("circuit.open")).await);
    // It outlives several leases while the holder keeps it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(sink_b.has_signal("circuit.open"));
    assert_eq!(sink_b.count("circuit.*"), 1, "refreshes do not add signals");
    assert!(sink_b.latest("circuit.open").unwrap().is_held());
    hold.release();
    assert!(eventually(LONG, || !sink_b.has_signal("circuit.open")).await);

    // The holder's bridge stops (as when its process dies): the lease runs out.
    let _hold = sink_a.hold("circuit.half").unwrap();
    assert!(eventually(LONG, || sink_b.has_signal("circuit.half")).await);
    drop(bridge_a);
    assert!(eventually(LONG, || !sink_b.has_signal("circuit.half")).await);
    assert!(
        sink_a.has_signal("circuit.half"),
        "the holder still holds it locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_timeouts_mean_no_timeout_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let options = options(tmp.path())
        .send_timeout(Duration::MAX)
        .handshake_timeout(Duration::MAX);
    let a = Bus::open_with("t", options.clone()).await.unwrap();
    let b = Bus::open_with("t", options).await.unwrap();
    let mut sub = b.subscribe("x").await.unwrap();
    assert_eq!(a.publish("x", b"1").await.unwrap(), 1);
    assert_eq!(next(&mut sub).await.unwrap().payload(), b"1");
    let _server = b
        .serve("echo", |m| async move { m.payload().to_vec() })
        .await
        .unwrap();
    let reply = a.request("echo", b"2", Duration::MAX).await.unwrap();
    assert_eq!(reply.payload(), b"2");
}

/// A bus in `dir` with `send_timeout`, and a `Wait` subscription to `x` with room for one.
async fn one_slot_subscriber(
    dir: &std::path::Path,
    send_timeout: Duration,
) -> (Bus, ephemeral_bus::Subscription) {
    let bus = Bus::open_with("t", options(dir).send_timeout(send_timeout))
        .await
        .unwrap();
    let sub = bus
        .subscribe_with("x", Buffer::bounded(1).unwrap(), Overflow::Wait)
        .await
        .unwrap();
    (bus, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_publish_that_times_out_on_a_full_subscription_is_reported_as_lag() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut sub) = one_slot_subscriber(tmp.path(), Duration::from_millis(50)).await;
    assert_eq!(a.publish("x", b"kept").await.unwrap(), 1);
    // The buffer is full and nobody reads: the publisher gives up after its send timeout.
    assert_eq!(a.publish("x", b"lost").await.unwrap(), 0);
    assert_eq!(next(&mut sub).await, Err(Lagged(1)));
    assert_eq!(next(&mut sub).await.unwrap().payload(), b"kept");
    let stats = sub.stats();
    assert_eq!((stats.delivered, stats.dropped, stats.buffered), (1, 1, 0));
}

/// A subscription in this process that nobody reads costs a publisher one send timeout,
/// not one per message: later publishes drop for it at once (as lag) until it has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_subscription_given_up_on_is_not_waited_for_again_until_it_has_room() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut sub) = one_slot_subscriber(tmp.path(), Duration::from_secs(1)).await;
    let start = std::time::Instant::now();
    let mut reached = Vec::new();
    for i in 0..6u8 {
        reached.push(a.publish("x", [i]).await.unwrap());
    }
    // One wait of 1 s; waiting for each would take 5 s (a generous bound: a shared machine).
    assert!(
        start.elapsed() < Duration::from_millis(3_500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(reached, [1, 0, 0, 0, 0, 0]);
    assert_eq!(next(&mut sub).await, Err(Lagged(5)));
    assert_eq!(next(&mut sub).await.unwrap().payload(), [0]);
    // Caught up: it is delivered to again.
    assert_eq!(a.publish("x", [9]).await.unwrap(), 1);
    assert_eq!(next(&mut sub).await.unwrap().payload(), [9]);
}

/// The receiving peer's reader delivers each message to every matching subscription in
/// order; a full `Wait` one holds the rest back until it is read, and no subscription gets
/// a message twice, whichever of them is the full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subscription_holds_back_the_others_and_nothing_is_delivered_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = open(tmp.path(), "t").await;
    let receiver = open(tmp.path(), "t").await;
    let one = Buffer::bounded(1).unwrap();
    for small_first in [true, false] {
        let topic = if small_first { "first.x" } else { "last.x" };
        let (mut small, mut roomy) = if small_first {
            let small = receiver
                .subscribe_with(topic, one, Overflow::Wait)
                .await
                .unwrap();
            (small, receiver.subscribe(topic).await.unwrap())
        } else {
            let roomy = receiver.subscribe(topic).await.unwrap();
            let small = receiver
                .subscribe_with(topic, one, Overflow::Wait)
                .await
                .unwrap();
            (small, roomy)
        };
        for i in 0..3u8 {
            assert_eq!(publisher.publish(topic, [i]).await.unwrap(), 2);
        }
        // The small buffer holds message 0; message 1 waits for it, so the roomy one has
        // what came before (and, when it comes first, message 1 too) and nothing more.
        let first = next(&mut roomy).await.unwrap();
        assert_eq!(first.payload(), [0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let early: Vec<u8> = std::iter::from_fn(|| roomy.try_recv())
            .map(|m| m.unwrap().payload()[0])
            .collect();
        assert_eq!(early, if small_first { vec![] } else { vec![1] });
        let mut got_small = Vec::new();
        for _ in 0..3 {
            got_small.push(next(&mut small).await.unwrap().payload()[0]);
        }
        assert_eq!(got_small, [0, 1, 2]);
        let mut got_roomy = vec![0];
        got_roomy.extend(early);
        while got_roomy.len() < 3 {
            got_roomy.push(next(&mut roomy).await.unwrap().payload()[0]);
        }
        assert_eq!(got_roomy, [0, 1, 2]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(small.try_recv().is_none() && roomy.try_recv().is_none());
    }
}
