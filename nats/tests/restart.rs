//! A server restart on the same port: before and after arrive, nothing in between is lost
//! silently, and the sink knows the connection was down.

mod support;

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Nats, NatsError, NatsOptions};
use support::{eventually, next};

#[tokio::test]
async fn a_restart_is_survived_and_never_silent() {
    let mut server = NatsServer::start().await;
    let url = server.url();
    // Reconnect attempts at most 50 ms apart, so the test does not wait out the default 4 s.
    let options = NatsOptions::default().max_reconnect_delay(Duration::from_millis(50));
    let publisher = Nats::connect_with(&url, options.clone()).await.unwrap();
    let subscriber = Nats::connect_with(&url, options).await.unwrap();
    let sink = SignalSink::default();
    let _signals = subscriber.connection_signals(&sink);
    let mut ticks = subscriber.subscribe("ticks").await.unwrap();

    // Before: everything arrives, in order.
    for i in 1..=50u64 {
        publisher.publish("ticks", i.to_string()).await.unwrap();
    }
    for i in 1..=50u64 {
        let m = next(&mut ticks).await.expect("no loss before the restart");
        assert_eq!(m.id(), i);
    }
    assert!(!sink.has_signal("nats.offline"));

    // During: the server is down. A publish is refused, or accepted and then either
    // delivered late or reported lost; never silent.
    server.stop().await;
    eventually("the subscriber's sink to hold nats.offline", || {
        sink.has_signal("nats.offline")
    })
    .await;
    eventually("the publisher to notice", || !publisher.is_connected()).await;
    let mut accepted = 0u64;
    let mut refused = 0u64;
    for i in 0..20 {
        match publisher.publish("ticks", format!("during {i}")).await {
            Ok(()) => accepted += 1,
            Err(NatsError::Disconnected { topic }) => {
                assert_eq!(topic, "ticks");
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, 20, "a publish while disconnected is refused");
    assert_eq!(accepted, 0);
    assert!(sink.has_signal("nats.disconnected"));

    // After: the same port and store; both reconnect and the subscription comes back.
    server.start_again().await;
    eventually("both to reconnect", || {
        publisher.is_connected() && subscriber.is_connected()
    })
    .await;
    eventually("nats.offline to be released", || {
        !sink.has_signal("nats.offline")
    })
    .await;
    assert!(sink.has_signal("nats.connected"));
    // A round trip on each connection: the re-subscription is known to the server.
    drop(subscriber.subscribe("sync").await.unwrap());
    drop(publisher.subscribe("sync").await.unwrap());
    for i in 1..=50u64 {
        publisher
            .publish("ticks", format!("after {i}"))
            .await
            .unwrap();
    }
    // Every number the publisher gave out is either delivered or reported lost, in order.
    let last = 50 + accepted + 50;
    let mut seen = 50u64;
    let mut lagged = 0u64;
    let mut after = 0;
    while seen < last {
        match next(&mut ticks).await {
            Ok(m) => {
                assert!(m.id() > seen, "out of order: {} after {seen}", m.id());
                assert_eq!(m.id(), seen + 1 + lagged_since(&mut lagged), "a silent gap");
                seen = m.id();
                if m.payload_str().is_some_and(|p| p.starts_with("after")) {
                    after += 1;
                }
            }
            Err(lag) => lagged += lag.count(),
        }
    }
    assert_eq!(after, 50, "everything published after the restart arrives");
    assert_eq!(subscriber.stats().disconnects, 1);
    assert_eq!(subscriber.stats().connects, 2);
}

/// The lag reported since the last message, consumed.
fn lagged_since(lagged: &mut u64) -> u64 {
    std::mem::take(lagged)
}

#[tokio::test]
async fn a_killed_server_is_an_outage_too() {
    let mut server = NatsServer::start().await;
    let options = NatsOptions::default().max_reconnect_delay(Duration::from_millis(50));
    let nats = Nats::connect_with(&server.url(), options).await.unwrap();
    let sink = SignalSink::default();
    let _signals = nats.connection_signals(&sink);
    server.kill();
    eventually("nats.offline", || sink.has_signal("nats.offline")).await;
    // Signals set up during an outage hold nats.offline from the start.
    let late = SignalSink::default();
    let late_signals = nats.connection_signals(&late);
    eventually("nats.offline in a sink joined late", || {
        late.has_signal("nats.offline")
    })
    .await;
    assert!(matches!(
        nats.publish("x", "y").await,
        Err(NatsError::Disconnected { .. })
    ));
    // A request while down fails at once, not after its timeout.
    let error = nats
        .request("x", "", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(error, NatsError::Disconnected { .. }), "{error:?}");
    server.start_again().await;
    eventually("the connection back", || !sink.has_signal("nats.offline")).await;
    eventually("the late sink to see it too", || {
        !late.has_signal("nats.offline")
    })
    .await;
    nats.publish("x", "y").await.unwrap();
    // Dropping the guard stops the signals and releases what it held.
    server.kill();
    eventually("offline again", || late.has_signal("nats.offline")).await;
    drop(late_signals);
    eventually("released with the guard", || {
        !late.has_signal("nats.offline")
    })
    .await;
}

#[tokio::test]
async fn a_restart_under_load_loses_nothing_silently() {
    let mut server = NatsServer::start().await;
    let options = NatsOptions::default().max_reconnect_delay(Duration::from_millis(50));
    let publisher = Nats::connect_with(&server.url(), options.clone())
        .await
        .unwrap();
    let subscriber = Nats::connect_with(&server.url(), options).await.unwrap();
    let mut ticks = subscriber.subscribe("ticks").await.unwrap();

    // Publish without pause through the restart: some publishes are accepted just before
    // the client notices the outage, and those are lost in flight.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let load = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let (mut accepted, mut refused) = (0u64, 0u64);
            loop {
                match publisher.publish("ticks", "tick").await {
                    Ok(()) => accepted += 1,
                    Err(NatsError::Disconnected { .. }) => refused += 1,
                    Err(other) => panic!("{other:?}"),
                }
                if stop_rx.try_recv().is_ok() {
                    return (accepted, refused);
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    // A receiver detects a gap from the second message of a publisher on: messages lost
    // before the first one it ever got from that publisher cannot be told from messages
    // published before it subscribed. So the first arrives before the restart.
    let first = next(&mut ticks).await.expect("the first tick");
    assert_eq!(first.id(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.restart().await;
    eventually("both to reconnect", || {
        publisher.is_connected() && subscriber.is_connected()
    })
    .await;
    drop(subscriber.subscribe("sync").await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).unwrap();
    let (accepted, refused) = load.await.unwrap();

    let (mut seen, mut lagged, mut delivered, mut lagged_total) = (1u64, 0u64, 1u64, 0u64);
    while seen < accepted {
        match next(&mut ticks).await {
            Ok(m) => {
                assert_eq!(
                    m.id(),
                    seen + 1 + std::mem::take(&mut lagged),
                    "a silent gap"
                );
                seen = m.id();
                delivered += 1;
            }
            Err(lag) => {
                lagged += lag.count();
                lagged_total += lag.count();
            }
        }
    }
    assert_eq!(delivered + lagged_total, accepted);
    assert!(delivered > 0 && accepted > 0);
    eprintln!(
        "accepted {accepted}, refused {refused}, delivered {delivered}, reported lost {lagged_total}"
    );
}
