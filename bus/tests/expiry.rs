//! Nothing whose time to live ran out is delivered: not by a bus subscription, not through a
//! bridge. Real time and real sockets, with generous margins (a 50 ms life against a
//! 400 ms wait).

mod support;

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_bus::{Outgoing, SEQ_HEADER};
use futures::StreamExt;
use support::{eventually, open};

const LONG: Duration = Duration::from_secs(10);
const SHORT_LIFE: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_expires_in_the_buffer_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b.subscribe("x.*").await.unwrap();
    let short = Outgoing::new("x.short").unwrap().ttl(SHORT_LIFE);
    let long = Outgoing::new("x.long")
        .unwrap()
        .ttl(Duration::from_secs(60));
    a.publish_with(short).await.unwrap();
    a.publish("x.plain", b"").await.unwrap();
    a.publish_with(long).await.unwrap();
    assert!(eventually(LONG, || sub.stats().delivered == 3).await);
    tokio::time::sleep(WAIT).await;

    let first = sub
        .next()
        .await
        .unwrap()
        .expect("no lag: expiry is not lag");
    assert_eq!(first.topic().as_str(), "x.plain");
    let second = sub.next().await.unwrap().unwrap();
    assert_eq!(second.topic().as_str(), "x.long");
    let left = second.ttl().unwrap();
    assert!(
        left < Duration::from_secs(60) - WAIT + Duration::from_millis(1),
        "handed out with the time it has left: {left:?}"
    );
    let stats = sub.stats();
    assert_eq!((stats.expired, stats.dropped, stats.buffered), (1, 0, 0));
}

#[test]
fn a_bridged_signal_that_expires_on_the_way_is_never_raised() {
    // One thread for both peers: blocking it holds every frame in the sockets, as a busy or
    // stopped receiver would.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let a = open(tmp.path(), "t").await;
        let b = open(tmp.path(), "t").await;
        let sink = SignalSink::default();
        let bridge = b.bridge(&sink, "alarm.*").await.unwrap();

        // What a bridge (or `ephemeral raise --ttl 50ms`) publishes for a signal.
        let signal = |name: &str, ttl| Outgoing::new(name).unwrap().header(SEQ_HEADER, 1).ttl(ttl);
        a.publish_with(signal("alarm.short", SHORT_LIFE))
            .await
            .unwrap();
        std::thread::sleep(WAIT);
        a.publish_with(signal("alarm.later", Duration::from_secs(60)))
            .await
            .unwrap();
        for _ in 0..1000 {
            if sink.has_signal("alarm.later") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sink.has_signal("alarm.later"));
        assert!(!sink.has_signal("alarm.short"));
        assert_eq!(bridge.raised(), 1, "the expired signal was raised");
        let expired: u64 = b.stats().subscriptions.iter().map(|s| s.expired).sum();
        assert_eq!(expired, 1);
    });
}

/// A time to live past what the clock can count (`Duration::MAX`, "for ever") is a very long
/// life, never an instant death: a subscription of the publishing process took it for
/// expired on arrival (the deadline overflowed and fell back to "now"), so the message
/// reached the other processes' subscriptions but never its own (`publish` returned 1 of 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_to_live_past_the_clock_means_a_long_life_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut here = a.subscribe("x.*").await.unwrap();
    let mut there = b.subscribe("x.*").await.unwrap();
    let forever = Outgoing::new("x.forever").unwrap().ttl(Duration::MAX);
    assert_eq!(a.publish_with(forever).await.unwrap(), 2);
    for sub in [&mut here, &mut there] {
        let got = tokio::time::timeout(LONG, sub.next())
            .await
            .expect("delivered")
            .unwrap()
            .expect("no lag");
        assert_eq!(got.topic().as_str(), "x.forever");
        assert!(
            got.ttl().unwrap() > Duration::from_secs(86_400 * 365),
            "{:?}",
            got.ttl()
        );
        assert_eq!(sub.stats().expired, 0);
    }
}
