//! Bus stats: handler timings for servers and callbacks, memory held per subscriber.

mod support;

use std::time::Duration;

use ephemeral_bus::HandlerKind;
use support::{eventually, open};

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_callbacks_report_calls_errors_and_percentiles() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let _s = server
        .serve("slow.echo", |m| async move {
            if m.payload() == b"boom" {
                panic!("on purpose");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            m.payload().to_vec()
        })
        .await
        .unwrap();
    for _ in 0..10 {
        client.request("slow.echo", b"x", LONG).await.unwrap();
    }
    assert!(client.request("slow.echo", b"boom", LONG).await.is_err());
    assert!(
        eventually(LONG, || server
            .stats()
            .handlers
            .iter()
            .any(|h| h.calls == 11))
        .await
    );
    let stats = server.stats();
    let served = stats
        .handlers
        .iter()
        .find(|h| h.kind == HandlerKind::Serve)
        .unwrap();
    assert_eq!(served.name, "slow.echo");
    assert_eq!((served.calls, served.errors), (11, 1));
    assert!(served.p50 >= Duration::from_millis(5), "{served:?}");
    assert!(served.p99 >= served.p50);

    let _task = client
        .subscribe_fn("cb.*", |item| {
            if item.unwrap().payload() == b"boom" {
                panic!("callback on purpose");
            }
        })
        .await
        .unwrap();
    for payload in [&b"a"[..], b"boom", b"b"] {
        client.publish("cb.x", payload).await.unwrap();
    }
    assert!(
        eventually(LONG, || client
            .stats()
            .handlers
            .iter()
            .any(|h| h.kind == HandlerKind::Callback && h.calls == 3))
        .await
    );
    let callback = client
        .stats()
        .handlers
        .into_iter()
        .find(|h| h.kind == HandlerKind::Callback)
        .unwrap();
    assert_eq!((callback.name.as_str(), callback.errors), ("cb.*", 1));

    drop(_s);
    assert!(
        eventually(LONG, || server.stats().handlers.is_empty()).await,
        "a stopped server leaves the stats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscription_reports_the_memory_its_buffer_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), "t").await;
    let b = open(tmp.path(), "t").await;
    let mut sub = b.subscribe("big").await.unwrap();
    let _idle = b.subscribe("other").await.unwrap();
    for _ in 0..3 {
        a.publish("big", [7u8; 10_000]).await.unwrap();
    }
    assert!(eventually(LONG, || sub.stats().buffered == 3).await);
    let held = sub.stats().buffered_bytes;
    assert!((30_000..40_000).contains(&held), "{held}");
    let per_sub: Vec<usize> = b
        .stats()
        .subscriptions
        .iter()
        .map(|s| s.buffered_bytes)
        .collect();
    assert!(
        per_sub.contains(&held) && per_sub.contains(&0),
        "{per_sub:?}"
    );
    for _ in 0..3 {
        sub.try_recv().unwrap().unwrap();
    }
    assert_eq!(sub.stats().buffered_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_is_counted_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let bus = ephemeral_bus::Bus::open_with("t", support::options(tmp.path()).max_payload(16))
        .await
        .unwrap();
    let _local = bus.subscribe("local.*").await.unwrap();
    let too_large = vec![0u8; 100];
    // Both paths of `publish` (a subscriber here, and none) and `publish_with`.
    assert!(bus.publish("local.x", &too_large[..]).await.is_err());
    assert!(bus.publish("remote.x", &too_large[..]).await.is_err());
    let outgoing = ephemeral_bus::Outgoing::new("with.x")
        .unwrap()
        .payload(too_large);
    assert!(bus.publish_with(outgoing).await.is_err());
    let stats = bus.stats();
    assert_eq!(stats.published, 0);
    assert!(
        stats.topics.iter().all(|t| t.published == 0),
        "refused messages counted as published: {:?}",
        stats.topics
    );

    // What is sent is counted once, in both places.
    bus.publish("local.x", b"ok").await.unwrap();
    bus.publish("remote.x", b"ok").await.unwrap();
    let stats = bus.stats();
    assert_eq!(stats.published, 2);
    let published: u64 = stats.topics.iter().map(|t| t.published).sum();
    assert_eq!(published, 2, "{:?}", stats.topics);
}
