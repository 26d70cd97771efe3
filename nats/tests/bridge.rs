//! The sink bridge over NATS: the bus bridge's cases, on a real server (each test starts its
//! own). The holder-killed case needs a process to kill: `tests/processes.rs`.

mod support;

use std::time::Duration;

use ephemeral::{HeaderValue, Signal, SignalSink, SinkOptions};
use ephemeral_bus::{Bus, BusOptions};
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{BridgeOptions, Nats, NatsError, NatsOptions};
use support::eventually;
use tokio::time::Instant;

/// Two handles on one server, as two machines would have.
async fn two(server: &NatsServer) -> (Nats, Nats) {
    (
        Nats::connect(&server.url()).await.unwrap(),
        Nats::connect(&server.url()).await.unwrap(),
    )
}

async fn open_bus(dir: &std::path::Path, name: &str) -> Bus {
    Bus::open_with(name, BusOptions::default().dir(dir))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_keeps_its_ttl_key_payload_and_typed_headers() {
    let server = NatsServer::start().await;
    let (a, b) = two(&server).await;
    let (sink_a, sink_b) = (SignalSink::default(), SignalSink::default());
    let bridge_a = a.bridge(&sink_a, "error.*").await.unwrap();
    let bridge_b = b.bridge(&sink_b, "error.*").await.unwrap();

    let life = Duration::from_millis(1500);
    sink_a
        .raise_with(
            Signal::build("error.db")
                .unwrap()
                .key("orders")
                .payload_str("connection refused")
                .header("attempt", 3)
                .header("fatal", true)
                .header("ratio", 0.25)
                .header("host", "db-1 é:%\r\n")
                .expires_in(life),
        )
        .unwrap();
    sink_a.raise("info.started").unwrap();
    eventually("error.db in b", || sink_b.has_signal("error.db")).await;
    let got = sink_b.latest("error.db").unwrap();
    assert_eq!(got.key(), Some("orders"));
    assert_eq!(got.payload_str(), Some("connection refused"));
    assert_eq!(got.header("attempt"), Some(&HeaderValue::Int(3)));
    assert_eq!(got.header("fatal"), Some(&HeaderValue::Bool(true)));
    assert_eq!(got.header("ratio"), Some(&HeaderValue::Float(0.25)));
    assert_eq!(got.header("host"), Some(&HeaderValue::from("db-1 é:%\r\n")));
    let left = got.remaining(Instant::now(), sink_b.max_age());
    assert!(left <= life && left > Duration::ZERO, "{left:?}");
    assert!(!sink_b.has_signal("info.*"), "outside the pattern");
    // It expires on time in b too: well before the sink's 60 s max age.
    let raised = Instant::now();
    eventually("error.db to expire in b", || !sink_b.has_signal("error.db")).await;
    assert!(raised.elapsed() < Duration::from_secs(5));
    // No echo: a published it once and raised nothing; b raised it once.
    assert_eq!((bridge_a.published(), bridge_a.raised()), (1, 0));
    assert_eq!((bridge_b.published(), bridge_b.raised()), (0, 1));
    assert_eq!(
        bridge_a.looped() + bridge_b.looped(),
        0,
        "no copy came back"
    );
    assert_eq!(bridge_a.lagged() + bridge_b.lagged(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_is_mirrored_until_released_or_its_holder_stops() {
    let server = NatsServer::start().await;
    let (a, b) = two(&server).await;
    let (sink_a, sink_b) = (SignalSink::default(), SignalSink::default());
    let lease = Duration::from_millis(300);
    let options = BridgeOptions::default().hold_lease(lease);
    let bridge_a = a
        .bridge_with(&sink_a, "circuit.*", options.clone())
        .await
        .unwrap();
    let _bridge_b = b.bridge_with(&sink_b, "circuit.*", options).await.unwrap();

    let hold = sink_a
        .hold_with(
            Signal::build("circuit.open")
                .unwrap()
                .key("payments")
                .header("failures", 5),
        )
        .unwrap();
    eventually("the mirror in b", || sink_b.has_signal("circuit.open")).await;
    let mirror = sink_b.latest("circuit.open").unwrap();
    assert!(mirror.is_held());
    assert_eq!(mirror.key(), Some("payments"));
    assert_eq!(mirror.header("failures"), Some(&HeaderValue::Int(5)));
    // It outlives several leases while the holder keeps it, as one hold.
    tokio::time::sleep(lease * 4).await;
    assert!(sink_b.has_signal("circuit.open"));
    assert_eq!(sink_b.count("circuit.*"), 1, "refreshes add no signals");
    // Released by the holder: released in b at once (well within a lease).
    hold.release();
    let released = Instant::now();
    eventually("the release in b", || !sink_b.has_signal("circuit.open")).await;
    assert!(released.elapsed() < Duration::from_secs(2));

    // The holder's bridge stops (as when its process dies): the lease runs out.
    let _half = sink_a.hold("circuit.half").unwrap();
    eventually("the second mirror", || sink_b.has_signal("circuit.half")).await;
    drop(bridge_a);
    let stopped = Instant::now();
    eventually("the mirror to lapse", || !sink_b.has_signal("circuit.half")).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "lapsed within a lease or so, not {:?}",
        stopped.elapsed()
    );
    assert!(
        sink_a.has_signal("circuit.half"),
        "still held by the holder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_lease_across_machines_is_three_seconds() {
    use ephemeral_nats::Link;
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    assert_eq!(nats.default_hold_lease(), Duration::from_secs(3));
    assert_eq!(ephemeral_nats::DEFAULT_HOLD_LEASE, Duration::from_secs(3));
    // A plain bus keeps its own, shorter one.
    let tmp = tempfile::tempdir().unwrap();
    let bus = open_bus(tmp.path(), "t").await;
    assert_eq!(bus.default_hold_lease(), Duration::from_secs(1));
    assert_ne!(bus.via(), nats.via(), "two media");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_signals_stay_local() {
    let server = NatsServer::start().await;
    let (a, b) = two(&server).await;
    let (sink_a, sink_b) = (SignalSink::default(), SignalSink::default());
    let _bridge_a = a.bridge(&sink_a, "*").await.unwrap();
    let _bridge_b = b.bridge(&sink_b, "*").await.unwrap();
    // What `connection_signals` raises and holds in a: about a's connection alone.
    sink_a.raise("nats.connected").unwrap();
    sink_a.raise("nats.disconnected").unwrap();
    let _offline = sink_a.hold("nats.offline").unwrap();
    // Then signals of a's own, which do travel.
    let _held = sink_a.hold("maintenance").unwrap();
    sink_a.raise("nats.connected.by.hand").unwrap();
    eventually("a's own signals in b", || {
        sink_b.has_signal("maintenance") && sink_b.has_signal("nats.connected.by.hand")
    })
    .await;
    // A hold refresh goes out every second: give one time to pass.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sink_b.count("nats.*"), 1, "only nats.connected.by.hand");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_matching_nothing_is_an_error() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let sink = SignalSink::default();
    let error = nats.bridge(&sink, ",").await.unwrap_err();
    assert!(matches!(error, NatsError::EmptyPattern { .. }), "{error}");
}

/// A plain message (`Nats::publish`, not from a bridge) reaching a sink by two bridges is
/// raised once, as a bridged signal is; two topics numbered 1 by one publisher are still two
/// messages (they were raised once per bridge: 4 for 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_message_reaching_a_sink_by_two_bridges_is_raised_once() {
    let server = NatsServer::start().await;
    let (a, b) = two(&server).await;
    let publisher = Nats::connect(&server.url()).await.unwrap();
    let sink = SignalSink::default();
    let one = a.bridge(&sink, "error.*").await.unwrap();
    let other = b.bridge(&sink, "error.*").await.unwrap();
    publisher.publish("error.db", "x").await.unwrap();
    publisher.publish("error.net", "y").await.unwrap();
    let arrivals = || one.raised() + one.looped() + other.raised() + other.looped();
    eventually("four arrivals", || arrivals() == 4).await;
    assert_eq!(sink.count("error.db"), 1);
    assert_eq!(sink.count("error.net"), 1);
}

/// Sinks 0, 1, 2 in a ring of three media: bus x joins 0 and 1, NATS joins 1 and 2, bus y
/// joins 2 and 0. Every signal reaches every sink by two paths.
struct Ring {
    sinks: Vec<SignalSink>,
    /// The bridges of each sink.
    bridges: Vec<Vec<ephemeral_nats::Bridge>>,
    _server: NatsServer,
    _buses: Vec<Bus>,
    _dir: tempfile::TempDir,
}

async fn ring(options: BridgeOptions) -> Ring {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<SignalSink> = (0..3).map(|_| SignalSink::default()).collect();
    let mut bridges: Vec<Vec<ephemeral_nats::Bridge>> = (0..3).map(|_| Vec::new()).collect();
    let mut buses = Vec::new();
    for (name, members) in [("x", [0, 1]), ("y", [2, 0])] {
        for s in members {
            let bus = open_bus(dir.path(), name).await;
            bridges[s].push(
                bus.bridge_with(&sinks[s], "alarm.*", options.clone())
                    .await
                    .unwrap(),
            );
            buses.push(bus);
        }
    }
    for s in [1, 2] {
        let nats = Nats::connect(&server.url()).await.unwrap();
        bridges[s].push(
            nats.bridge_with(&sinks[s], "alarm.*", options.clone())
                .await
                .unwrap(),
        );
    }
    Ring {
        sinks,
        bridges,
        _server: server,
        _buses: buses,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_nats_bus_ring_delivers_each_signal_once() {
    let ring = ring(BridgeOptions::default()).await;
    let sinks = &ring.sinks;
    for (i, name) in ["alarm.zero", "alarm.one", "alarm.two"].iter().enumerate() {
        sinks[i].raise(name).unwrap();
        eventually("every sink to have it", || {
            sinks.iter().all(|s| s.has_signal(name))
        })
        .await;
    }
    // Let any looping copy come round (it would within milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts: Vec<usize> = sinks.iter().map(|s| s.count("alarm.*")).collect();
    assert_eq!(counts, [3, 3, 3], "each of the three raises once per sink");
    let looped: u64 = ring.bridges.iter().flatten().map(|b| b.looped()).sum();
    assert!(
        looped >= 3,
        "the second path of each was refused ({looped})"
    );

    // A hold goes round the ring too: held once per sink, released everywhere.
    let hold = sinks[0].hold("alarm.held").unwrap();
    eventually("the hold everywhere", || {
        sinks.iter().all(|s| s.has_signal("alarm.held"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for s in sinks {
        assert_eq!(
            s.sense("alarm.held").len(),
            1,
            "held once, whatever the paths"
        );
    }
    hold.release();
    eventually("released everywhere", || {
        sinks.iter().all(|s| !s.has_signal("alarm.held"))
    })
    .await;
}

/// In a ring, two forwarders could keep each other's mirror alive after the holder is gone
/// (each refreshing the other with the copy it got); refresh numbers stop that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_ring_a_gone_holders_hold_lapses_everywhere() {
    let lease = Duration::from_millis(300);
    let options = BridgeOptions::default().hold_lease(lease);
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<SignalSink> = (0..3).map(|_| SignalSink::default()).collect();
    let mut holder_bridges = Vec::new();
    let mut others = Vec::new();
    let mut buses = Vec::new();
    // First the two buses: sink 1 gets the hold by bus x, sink 2 by bus y...
    for (name, [holder, other]) in [("x", [0, 1]), ("y", [0, 2])] {
        let bus = open_bus(dir.path(), name).await;
        holder_bridges.push(
            bus.bridge_with(&sinks[holder], "alarm.*", options.clone())
                .await
                .unwrap(),
        );
        buses.push(bus);
        let bus = open_bus(dir.path(), name).await;
        others.push(
            bus.bridge_with(&sinks[other], "alarm.*", options.clone())
                .await
                .unwrap(),
        );
        buses.push(bus);
    }
    let _hold = sinks[0].hold("alarm.held").unwrap();
    eventually("the hold in 1 and 2", || {
        sinks[1..].iter().all(|s| s.has_signal("alarm.held"))
    })
    .await;
    // ...then NATS joins 1 and 2, and each forwards its mirror to the other: a cycle
    // 1 -> NATS -> 2 -> NATS -> 1 that no longer needs the holder.
    for s in [1, 2] {
        let nats = Nats::connect(&server.url()).await.unwrap();
        others.push(
            nats.bridge_with(&sinks[s], "alarm.*", options.clone())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(lease * 2).await;
    for s in &sinks {
        assert_eq!(s.sense("alarm.held").len(), 1, "held once");
    }
    // The holder's bridges stop, as when its process dies; it keeps holding locally.
    drop(holder_bridges);
    let gone = Instant::now();
    eventually("the mirrors to lapse", || {
        sinks[1..].iter().all(|s| !s.has_signal("alarm.held"))
    })
    .await;
    assert!(
        gone.elapsed() < lease * 6,
        "lapsed within a couple of leases, not {:?}",
        gone.elapsed()
    );
    // And they stay lapsed: nothing circulates that could bring them back.
    tokio::time::sleep(lease * 4).await;
    assert!(sinks[1..].iter().all(|s| !s.has_signal("alarm.held")));
    assert!(sinks[0].has_signal("alarm.held"));
}

/// A server restart on the same port with bridges up: signals before and after arrive,
/// every signal raised meanwhile was refused (counted in `failed`) or reported lost at the
/// receiver (`lagged`), a mirrored hold comes back within a lease of reconnecting, and
/// `nats.offline` was held in both sinks during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_with_bridges_up_is_never_silent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let mut server = NatsServer::start().await;
    let options = NatsOptions::default().max_reconnect_delay(Duration::from_millis(50));
    let a = Nats::connect_with(&server.url(), options.clone())
        .await
        .unwrap();
    let b = Nats::connect_with(&server.url(), options).await.unwrap();
    let sink = || SignalSink::new(SinkOptions::default().capacity(100_000)).unwrap();
    let (sink_a, sink_b) = (sink(), sink());
    let _signals_a = a.connection_signals(&sink_a);
    let _signals_b = b.connection_signals(&sink_b);
    let lease = Duration::from_millis(900);
    let options = BridgeOptions::default().hold_lease(lease);
    // Ticks and holds on bridges of their own, so each bridge's counters tell one story.
    let ticks_a = a
        .bridge_with(&sink_a, "tick", options.clone())
        .await
        .unwrap();
    let ticks_b = b
        .bridge_with(&sink_b, "tick", options.clone())
        .await
        .unwrap();
    let _holds_a = a
        .bridge_with(&sink_a, "circuit.*", options.clone())
        .await
        .unwrap();
    let _holds_b = b.bridge_with(&sink_b, "circuit.*", options).await.unwrap();

    // Before: a hold and a steady stream of ticks (every 2 ms, until told to stop).
    let _hold = sink_a.hold("circuit.open").unwrap();
    eventually("the mirror", || sink_b.has_signal("circuit.open")).await;
    let raised = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let raiser = tokio::spawn({
        let (sink_a, raised, stop) = (sink_a.clone(), Arc::clone(&raised), Arc::clone(&stop));
        async move {
            // Relaxed: counts read after the task is joined.
            while !stop.load(Ordering::Relaxed) {
                sink_a.raise("tick").unwrap();
                raised.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    eventually("ticks flowing", || ticks_b.raised() >= 50).await;

    // The outage: long enough for the mirror to lapse.
    server.stop().await;
    eventually("nats.offline held in both sinks", || {
        sink_a.has_signal("nats.offline") && sink_b.has_signal("nats.offline")
    })
    .await;
    eventually("the mirror to lapse", || !sink_b.has_signal("circuit.open")).await;
    eventually("raises refused while down", || ticks_a.failed() >= 20).await;

    server.start_again().await;
    eventually("both back", || {
        !sink_a.has_signal("nats.offline") && !sink_b.has_signal("nats.offline")
    })
    .await;
    let back = Instant::now();
    eventually("the mirror back", || sink_b.has_signal("circuit.open")).await;
    assert!(
        back.elapsed() < lease * 2,
        "the hold came back within a lease or so of reconnecting, not {:?}",
        back.elapsed()
    );
    let before = ticks_b.raised();
    eventually("ticks flowing again", || ticks_b.raised() >= before + 50).await;
    stop.store(true, Ordering::Relaxed);
    raiser.await.unwrap();
    // Let the last ticks arrive.
    let published = ticks_a.published();
    eventually("every published tick delivered or reported lost", || {
        ticks_b.raised() + ticks_b.lagged() >= published
    })
    .await;
    let raised = raised.load(Ordering::Relaxed);
    assert_eq!(
        ticks_a.published() + ticks_a.failed(),
        raised,
        "every raise was published or counted as failed"
    );
    assert_eq!(
        ticks_b.raised() + ticks_b.lagged(),
        published,
        "every published tick was raised or reported lost (raised {}, lagged {})",
        ticks_b.raised(),
        ticks_b.lagged()
    );
    assert!(ticks_a.failed() > 0, "the outage refused some");
    assert!(sink_b.has_signal("nats.disconnected") && sink_b.has_signal("nats.connected"));
}

/// A hold forwarded from one medium to another goes on at once, not at the forwarder's next
/// refresh (with a 30 s lease that would be 10 s later); so does its release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_hold_goes_on_at_once() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = BridgeOptions::default().hold_lease(Duration::from_secs(30));
    let (holder, gateway, far) = (
        SignalSink::default(),
        SignalSink::default(),
        SignalSink::default(),
    );
    let (a, b) = two(&server).await;
    let _holder = a
        .bridge_with(&holder, "circuit.*", options.clone())
        .await
        .unwrap();
    let _gateway_nats = b
        .bridge_with(&gateway, "circuit.*", options.clone())
        .await
        .unwrap();
    let bus_gateway = open_bus(dir.path(), "far").await;
    let bus_far = open_bus(dir.path(), "far").await;
    let _gateway_bus = bus_gateway
        .bridge_with(&gateway, "circuit.*", options.clone())
        .await
        .unwrap();
    let _far = bus_far
        .bridge_with(&far, "circuit.*", options)
        .await
        .unwrap();

    let hold = holder.hold("circuit.open").unwrap();
    let held = Instant::now();
    eventually("two hops away", || far.has_signal("circuit.open")).await;
    assert!(
        held.elapsed() < Duration::from_secs(3),
        "{:?}",
        held.elapsed()
    );
    assert!(far.latest("circuit.open").unwrap().is_held());
    hold.release();
    let released = Instant::now();
    eventually("released two hops away", || !far.has_signal("circuit.open")).await;
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "{:?}",
        released.elapsed()
    );
}
