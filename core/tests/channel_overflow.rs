//! Channel back-pressure, lag, send timeouts and expiry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    Buffer, Channel, ChannelOptions, DeliveryError, DeliveryFailure, Lagged, Overflow, SendError,
};
use futures::FutureExt;
use tokio::time::Instant;

type Seen = Arc<Mutex<Vec<DeliveryError>>>;

fn recorder() -> (Seen, impl Fn(&DeliveryError) + Send + Sync + 'static) {
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    (seen, move |e: &DeliveryError| {
        sink.lock().unwrap().push(e.clone())
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_makes_the_publisher_wait_and_loses_nothing() {
    let channel = Channel::<u32>::new();
    let mut slow = channel.subscribe_with(Buffer::bounded(5).unwrap());
    for i in 0..5 {
        channel.send(i).await.unwrap();
    }
    // The buffer is full: the sixth send must wait until the subscriber reads.
    let mut sixth = Box::pin(channel.send(5));
    assert!((&mut sixth).now_or_never().is_none(), "send did not wait");
    tokio::task::yield_now().await;
    assert!((&mut sixth).now_or_never().is_none(), "send did not wait");
    assert_eq!(slow.stats().buffered, 5);

    assert_eq!(slow.recv().await, Some(Ok(0)));
    assert_eq!(sixth.await.unwrap(), 1);

    // A publisher task far ahead of a slow reader: everything arrives.
    let publisher = {
        let channel = channel.clone();
        tokio::spawn(async move {
            for i in 6..200 {
                channel.send(i).await.unwrap();
            }
        })
    };
    for i in 1..200 {
        assert_eq!(slow.recv().await, Some(Ok(i)));
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(slow.len() <= 5, "buffer bound exceeded");
    }
    publisher.await.unwrap();
    assert_eq!(slow.stats().dropped, 0);
    assert_eq!(slow.stats().delivered, 200);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_reports_exactly_how_many_were_lost() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(5).unwrap())
            .overflow(Overflow::DropOldest),
    )
    .unwrap();
    let mut sub = channel.subscribe();
    for i in 0..20 {
        // DropOldest never waits.
        assert_eq!(channel.send(i).now_or_never().unwrap().unwrap(), 1);
    }
    assert_eq!(sub.recv().await, Some(Err(Lagged(15))));
    for i in 15..20 {
        assert_eq!(sub.recv().await, Some(Ok(i)));
    }
    assert_eq!(sub.try_recv(), None);

    // A second overflow is reported on its own, counting only the new losses.
    for i in 20..27 {
        channel.send(i).await.unwrap();
    }
    assert_eq!(sub.recv().await, Some(Err(Lagged(2))));
    assert_eq!(sub.recv().await, Some(Ok(22)));
    assert_eq!(sub.stats().dropped, 17);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_subscriber_makes_the_send_time_out_instead_of_hanging() {
    let (failures, on_error) = recorder();
    let channel = Channel::<String>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(1).unwrap())
            .send_timeout(Duration::from_millis(300))
            .on_error(on_error),
    )
    .unwrap();
    let stopped = channel.subscribe();
    let mut live = channel.subscribe_with(Buffer::Unbounded);

    channel.send("first".into()).await.unwrap();
    let start = Instant::now();
    let err = channel.send("second".into()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(300));
    match err {
        SendError::TimedOut {
            value,
            reached,
            missed,
        } => assert_eq!((value.as_str(), reached, missed), ("second", 1, 1)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        *failures.lock().unwrap(),
        vec![DeliveryError {
            subscriber: stopped.id(),
            failure: DeliveryFailure::TimedOut
        }]
    );
    assert_eq!(stopped.stats().timed_out, 1);
    // `ChannelStats::sent` counts sends begun, whatever their outcome: the timed-out one too.
    assert_eq!(channel.stats().sent, 2);
    assert_eq!(live.try_recv(), Some(Ok("first".to_string())));
    assert_eq!(live.try_recv(), Some(Ok("second".to_string())));
}

#[tokio::test(start_paused = true)]
async fn expired_messages_are_never_delivered() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default().expire_after(Duration::from_secs(2)),
    )
    .unwrap();
    let mut sub = channel.subscribe();
    channel.send(1).await.unwrap();
    channel.send(2).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    channel.send(3).await.unwrap();
    tokio::time::advance(Duration::from_millis(1500)).await;
    channel.send(4).await.unwrap();

    // 1 and 2 are 2.5 s old, 3 is 1.5 s old, 4 is fresh.
    assert_eq!(sub.recv().await, Some(Ok(3)));
    assert_eq!(sub.recv().await, Some(Ok(4)));
    assert_eq!(sub.try_recv(), None);
    assert_eq!(sub.stats().expired, 2);

    tokio::time::advance(Duration::from_secs(5)).await;
    channel.send(5).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    channel.close();
    assert_eq!(sub.recv().await, None, "an expired message was delivered");
    assert_eq!(sub.stats().expired, 3);
}

#[tokio::test(start_paused = true)]
async fn expired_messages_free_room_for_a_waiting_sender() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(2).unwrap())
            .expire_after(Duration::from_secs(1)),
    )
    .unwrap();
    let mut sub = channel.subscribe();
    channel.send(1).await.unwrap();
    channel.send(2).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    // Full of expired messages: the send makes room instead of waiting.
    assert_eq!(channel.send(3).now_or_never().unwrap().unwrap(), 1);
    assert_eq!(sub.recv().await, Some(Ok(3)));
    assert_eq!(sub.stats().expired, 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_send_leaves_the_channel_working() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(1).unwrap()))
            .unwrap();
    let mut sub = channel.subscribe();
    channel.send(1).await.unwrap();
    let timed = tokio::time::timeout(Duration::from_millis(10), channel.send(2)).await;
    assert!(timed.is_err(), "the send should still be waiting");
    assert_eq!(sub.recv().await, Some(Ok(1)));
    channel.send(3).await.unwrap();
    assert_eq!(sub.recv().await, Some(Ok(3)));
    assert_eq!(sub.try_recv(), None);
}

#[test]
fn zero_expiry_is_a_config_error() {
    let err = Channel::<u8>::with_options(ChannelOptions::default().expire_after(Duration::ZERO))
        .unwrap_err();
    assert!(err.to_string().contains("expire_after"));
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_counts_no_timeout_from_before_it_subscribed() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(1).unwrap())
            .send_timeout(Duration::from_millis(10)),
    )
    .unwrap();
    let slow = channel.subscribe();
    channel.send(1).await.unwrap();
    assert!(matches!(
        channel.send(2).await,
        Err(SendError::TimedOut { missed: 1, .. })
    ));
    let late = channel.subscribe();
    assert_eq!(slow.stats().timed_out, 1);
    assert_eq!(late.stats().timed_out, 0);
    let listed: Vec<u64> = channel
        .stats()
        .subscribers
        .iter()
        .map(|s| s.timed_out)
        .collect();
    assert_eq!(listed, [1, 0]);
}

/// Two subscribers with the same buffer: a send that times out on the slow one still
/// reaches the fast one, as it would with a buffer of its own.
#[tokio::test(start_paused = true)]
async fn a_timeout_on_one_subscriber_still_reaches_another_with_the_same_buffer() {
    let (failures, on_error) = recorder();
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(1).unwrap())
            .overflow(Overflow::Wait)
            .send_timeout(Duration::from_millis(10))
            .on_error(on_error),
    )
    .unwrap();
    let mut fast = channel.subscribe();
    let mut slow = channel.subscribe();
    assert_eq!(channel.send(1).await.unwrap(), 2);
    assert_eq!(fast.recv().await, Some(Ok(1)));
    match channel.send(2).await {
        Err(SendError::TimedOut {
            value,
            reached,
            missed,
        }) => assert_eq!((value, reached, missed), (2, 1, 1)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(fast.try_recv(), Some(Ok(2)));
    assert_eq!(
        *failures.lock().unwrap(),
        vec![DeliveryError {
            subscriber: slow.id(),
            failure: DeliveryFailure::TimedOut
        }]
    );
    assert_eq!((fast.stats().timed_out, slow.stats().timed_out), (0, 1));
    assert_eq!(slow.try_recv(), Some(Ok(1)));
    assert_eq!(slow.try_recv(), None);
    // Blocking sends go by the same rings.
    let sender = channel.clone();
    let blocking = std::thread::spawn(move || sender.send_blocking(3));
    assert_eq!(blocking.join().unwrap().unwrap(), 2);
}

/// A send dropped by its caller after it reached one subscriber, while it waited for room in
/// another's buffer, tells the one it missed with `Lagged(1)`. That subscriber missed the
/// message silently: the roomy subscriber read [1, 2], the tight one [1] and no report.
#[tokio::test(start_paused = true)]
async fn a_send_cut_short_after_reaching_some_subscribers_tells_the_others() {
    let channel = Channel::<u32>::new();
    let mut roomy = channel.subscribe_with(Buffer::bounded(10).unwrap());
    let mut tight = channel.subscribe_with(Buffer::bounded(1).unwrap());
    channel.send(1).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(1), channel.send(2)).await;
    assert!(
        cut.is_err(),
        "the send should still be waiting for the tight subscriber"
    );

    assert_eq!(roomy.recv().await, Some(Ok(1)));
    assert_eq!(roomy.recv().await, Some(Ok(2)));
    let mut seen = Vec::new();
    while let Some(item) = tight.try_recv() {
        seen.push(item);
    }
    assert_eq!(seen, [Err(Lagged(1)), Ok(1)]);

    // The channel carries on. (A send dropped before it reached anyone tells no one:
    // `a_cancelled_send_leaves_the_channel_working`.)
    assert_eq!(channel.send(3).await.unwrap(), 2);
    assert_eq!(tight.recv().await, Some(Ok(3)));
    assert_eq!(roomy.recv().await, Some(Ok(3)));
    assert_eq!(tight.try_recv(), None);
}
