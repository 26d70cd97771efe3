//! `futures::Sink` for coordinator intake (`intake_sink`) and channel senders (`sink`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ephemeral::{
    Buffer, Channel, EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator,
    IntakeSinkError, OperationContext, Overflow, SendError,
};
use futures::{SinkExt, StreamExt};

/// The stream is pulled only as fast as the coordinator takes items: with one running and
/// two pending, a gated body stops the stream after four items (running, two pending, one
/// waiting in `forward` for room).
#[tokio::test(start_paused = true)]
async fn forward_into_a_coordinator_waits_for_room() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let body_gate = gate.clone();
    let coordinator = EphemeralWorkCoordinator::new(
        move |_n: u32, _ctx: OperationContext| {
            let gate = body_gate.clone();
            async move {
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(1)
            .max_pending(2),
    )
    .expect("coordinator");
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let source = futures::stream::iter(0..50u32).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let forward = tokio::spawn(source.map(Ok).forward(coordinator.intake_sink()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pulled.load(Ordering::SeqCst), 4, "bounded by the intake");
    assert_eq!(coordinator.pending_count() + coordinator.active_count(), 3);

    gate.add_permits(50);
    forward.await.expect("task").expect("every item accepted");
    coordinator.drain().await.expect("drained");
    assert_eq!(coordinator.stats().completed, 50);
}

#[tokio::test(start_paused = true)]
async fn a_completed_coordinator_refuses_the_sink() {
    let coordinator = EphemeralWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    coordinator.complete();
    let mut sink = coordinator.intake_sink();
    match sink.send(1).await {
        Err(IntakeSinkError::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// `(key, item)` pairs through the keyed coordinator's sink keep per-key order.
#[tokio::test(start_paused = true)]
async fn keyed_sink_keeps_per_key_order() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let coordinator = EphemeralKeyedWorkCoordinator::new(
        move |(key, n): (u8, u32), _ctx: OperationContext| {
            let record = record.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(u64::from(n % 3))).await;
                record.lock().expect("not poisoned").push((key, n));
                Ok::<_, String>(())
            }
        },
        EphemeralOptions::default().max_concurrency(4),
    )
    .expect("coordinator");
    let items = (0..60u32).map(|n| (u8::try_from(n % 3).expect("small"), n));
    futures::stream::iter(items.map(|(k, n)| Ok((k, (k, n)))))
        .forward(coordinator.intake_sink())
        .await
        .expect("accepted");
    coordinator.drain().await.expect("drained");
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(seen.len(), 60);
    for key in 0..3u8 {
        let order: Vec<u32> = seen
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .collect();
        assert!(order.is_sorted(), "key {key} out of order: {order:?}");
    }
}

/// A channel sink waits for a full subscriber (`Overflow::Wait`) and delivers in order.
#[tokio::test(start_paused = true)]
async fn channel_sink_waits_for_room_and_keeps_order() {
    let channel: Channel<u32> = Channel::new();
    let mut subscriber =
        channel.subscribe_with_overflow(Buffer::bounded(2).expect("not zero"), Overflow::Wait);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let source = futures::stream::iter(0..20u32).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let forward = tokio::spawn(source.map(Ok).forward(channel.sink()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Two buffered, one send in flight waiting for room, one held by `forward` until the
    // sink is ready again.
    assert_eq!(pulled.load(Ordering::SeqCst), 4);
    for expected in 0..20 {
        assert_eq!(subscriber.recv().await, Some(Ok(expected)));
    }
    forward.await.expect("task").expect("every item sent");
}

#[tokio::test(start_paused = true)]
async fn a_closed_channel_gives_the_item_back() {
    let channel: Channel<u32> = Channel::new();
    let _subscriber = channel.subscribe();
    channel.close();
    let mut sink = channel.sink();
    match sink.send(7).await {
        Err(SendError::Closed(closed)) => assert_eq!(closed.into_inner(), 7),
        other => panic!("expected Closed with the item, got {other:?}"),
    }
}

/// `start_send` on a channel sink whose previous send is still in flight (no `poll_ready`
/// between them) gives the new message back, and the one in flight still arrives: it used
/// to replace the send in flight, so the first message was lost while both calls said `Ok`.
#[tokio::test(start_paused = true)]
async fn a_channel_sink_sent_into_while_busy_gives_the_message_back() {
    let channel: Channel<u32> = Channel::new();
    let mut subscriber = channel.subscribe();
    let mut sink = channel.sink();
    sink.start_send_unpin(1).expect("the first send starts");
    let busy = sink
        .start_send_unpin(2)
        .expect_err("a send is in flight: the second message is refused");
    assert!(busy.to_string().contains("poll_ready"), "{busy}");
    assert_eq!(busy.into_inner(), 2, "the refused message is given back");
    sink.flush().await.expect("the first send ends");
    channel.close();
    assert_eq!(subscriber.recv().await, Some(Ok(1)));
    assert_eq!(subscriber.recv().await, None);
}

/// `start_send` on an intake sink that was not made ready says so and gives the item back;
/// it used to say the coordinator "already has max_pending items waiting" of an empty one.
#[tokio::test(start_paused = true)]
async fn an_intake_sink_sent_into_before_ready_says_so_and_gives_the_item_back() {
    let coordinator = EphemeralWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    let mut sink = coordinator.intake_sink();
    let refused = sink
        .start_send_unpin(7)
        .expect_err("no poll_ready before it");
    let message = refused.to_string();
    assert!(message.contains("poll_ready"), "{message}");
    assert!(!message.contains("max_pending"), "{message}");
    assert_eq!(refused.into_item(), Some(7));
    assert_eq!(coordinator.stats().accepted, 0);
}

/// The result coordinator's intake sink feeds it like the others; the results are read from
/// the window.
#[tokio::test(start_paused = true)]
async fn forward_into_a_result_coordinator_keeps_every_result() {
    let coordinator = ephemeral::EphemeralResultCoordinator::new(
        |n: u32, _ctx: OperationContext| async move { Ok::<_, String>(n * 2) },
        EphemeralOptions::default()
            .max_concurrency(2)
            .max_pending(2),
    )
    .expect("coordinator");
    futures::stream::iter(0..20u32)
        .map(Ok)
        .forward(coordinator.intake_sink())
        .await
        .expect("every item accepted");
    coordinator.drain().await.expect("drained");
    let mut results: Vec<u32> = coordinator.results().into_iter().map(|(_, r)| r).collect();
    results.sort_unstable();
    assert_eq!(results, (0..20).map(|n| n * 2).collect::<Vec<_>>());
}
