//! `ephemeral top` across machines: coordinators and sinks publish their state over NATS,
//! a watcher on another connection sees it, and no user subscription ever does.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use ephemeral_bus::inspect::{POLL_TOPIC, PublishOptions, PublishState, STATE_TOPIC, StateWatcher};
use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_travels_on_internal_subjects_only() {
    let server = NatsServer::start().await;
    let service = Nats::connect(&server.url()).await.unwrap();
    let tool = Nats::connect(&server.url()).await.unwrap();
    let coordinator = EphemeralWorkCoordinator::new(
        |_: u32, _: OperationContext| async { Ok::<_, Infallible>(()) },
        EphemeralOptions::default(),
    )
    .unwrap();
    for i in 0..3 {
        coordinator.enqueue(i).await.unwrap();
    }
    coordinator.drain().await.unwrap();
    let fast = PublishOptions::default().interval(Duration::from_millis(20));
    let _orders = coordinator
        .publish_state_with(&service, "orders", fast.clone())
        .await
        .unwrap();
    let sink = SignalSink::default();
    let _held = sink.hold("circuit.open").unwrap();
    let _signals = sink
        .publish_state_with(&service, "signals", fast)
        .await
        .unwrap();
    let mut everything_here = service.subscribe("*").await.unwrap();
    let mut everything_there = tool.subscribe("*").await.unwrap();

    let mut watcher = StateWatcher::new(&tool).await.unwrap();
    assert_eq!(watcher.poll().await.unwrap(), None, "NATS cannot count");
    let frames = watcher.collect(Duration::from_secs(1)).await.unwrap();
    let names: Vec<&str> = frames.iter().map(|f| f.publisher.name.as_str()).collect();
    assert_eq!(names, ["orders", "signals"]);
    assert_eq!(frames[0].coordinator().unwrap().counts.completed, 3);

    // A user's messages on topics spelled like the exchange's are ordinary messages...
    tool.publish(POLL_TOPIC, "{}").await.unwrap();
    service.publish(STATE_TOPIC, "{}").await.unwrap();
    // ...and the only ones `*` sees.
    for sub in [&mut everything_here, &mut everything_there] {
        let mut topics = Vec::new();
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(300), sub.next()).await
        {
            topics.push(item.unwrap().topic().to_string());
        }
        topics.sort();
        assert_eq!(topics, [POLL_TOPIC, STATE_TOPIC]);
    }
}
