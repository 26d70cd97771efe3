//! Channel states, closing, dropped handles, blocking sends and callback consumers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{
    Buffer, Channel, ChannelOptions, ChannelState, DeliveryError, DeliveryFailure, Overflow,
    SendError,
};
use futures::{FutureExt, StreamExt};

#[tokio::test(start_paused = true)]
async fn send_after_close_fails_and_subscribers_drain_then_end() {
    let channel = Channel::<u32>::new();
    let mut sub = channel.subscribe();
    channel.send(1).await.unwrap();
    channel.send(2).await.unwrap();
    assert_eq!(channel.state(), ChannelState::Open);
    channel.close();
    channel.close(); // idempotent
    assert_eq!(channel.state(), ChannelState::Closed);

    let err = channel.send(3).await.unwrap_err();
    assert!(err.is_closed());
    assert!(err.to_string().contains("closed"));
    assert_eq!(err.into_inner(), 3);

    assert!(sub.is_closed());
    assert_eq!(sub.recv().await, Some(Ok(1)));
    assert_eq!(sub.recv().await, Some(Ok(2)));
    assert_eq!(sub.recv().await, None);
    assert_eq!(sub.recv().await, None);

    // Subscribing after close gives a stream that has already ended.
    let mut late = channel.subscribe();
    assert_eq!(late.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn close_releases_a_sender_waiting_for_room() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(1).unwrap()))
            .unwrap();
    let mut sub = channel.subscribe();
    channel.send(1).await.unwrap();
    let waiting = tokio::spawn({
        let channel = channel.clone();
        async move { channel.send(2).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    channel.close();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, SendError::Closed(_)));
    assert_eq!(err.into_inner(), 2);
    assert_eq!(sub.recv().await, Some(Ok(1)));
    assert_eq!(sub.recv().await, None);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_publisher_closes_the_channel_and_subscribers_drain() {
    let channel = Channel::<&str>::new();
    let publisher = channel.clone();
    let sub = channel.subscribe();
    drop(channel);
    publisher.send("a").await.unwrap();
    publisher.send("b").await.unwrap();
    assert!(!sub.is_closed(), "one handle is still alive");
    drop(publisher);
    assert!(sub.is_closed());
    let got: Vec<_> = sub.collect().await;
    assert_eq!(got, vec![Ok("a"), Ok("b")]);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_subscriber_never_blocks_senders() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(1).unwrap()))
            .unwrap();
    let sub = channel.subscribe();
    channel.send(1).await.unwrap();
    let waiting = tokio::spawn({
        let channel = channel.clone();
        async move { channel.send(2).await }
    });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the buffer is full, the send waits");
    drop(sub);
    // The subscriber that had no room is gone: the send carries on, reaching nobody.
    assert_eq!(waiting.await.unwrap().unwrap(), 0);
    assert_eq!(channel.subscriber_count(), 0);
    assert_eq!(channel.send(3).now_or_never().unwrap().unwrap(), 0);
    assert_eq!(channel.stats().unheard, 1);
    assert_eq!(channel.stats().sent, 3);
}

#[test]
fn send_blocking_works_from_a_plain_thread() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(2).unwrap()))
            .unwrap();
    let mut sub = channel.subscribe();
    let publisher = std::thread::spawn({
        let channel = channel.clone();
        move || {
            for i in 0..100 {
                assert_eq!(channel.send_blocking(i).unwrap(), 1);
            }
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(sub.recv().await.unwrap().unwrap());
        }
        got
    });
    publisher.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[test]
fn send_blocking_times_out_on_a_stopped_subscriber() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(1).unwrap())
            .send_timeout(Duration::from_millis(20)),
    )
    .unwrap();
    let stopped = channel.subscribe();
    channel.send_blocking(1).unwrap();
    let err = channel.send_blocking(2).unwrap_err();
    assert!(matches!(
        err,
        SendError::TimedOut {
            reached: 0,
            missed: 1,
            ..
        }
    ));
    assert_eq!(err.into_inner(), 2);
    assert_eq!(stopped.stats().timed_out, 1);
}

#[tokio::test]
async fn send_blocking_inside_a_runtime_is_a_typed_error() {
    let channel = Channel::<u32>::new();
    let _sub = channel.subscribe();
    let err = channel.send_blocking(7).unwrap_err();
    assert!(matches!(err, SendError::InsideRuntime(7)));
    assert!(err.to_string().contains("send(..).await"));
    assert_eq!(channel.stats().sent, 0);
}

/// `send` with a send timeout needs tokio's timer; polled outside a runtime (under another
/// executor) it used to panic inside tokio as soon as a buffer was full.
#[test]
fn send_with_a_timeout_outside_a_runtime_is_a_typed_error() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(1).unwrap())
            .send_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let mut sub = channel.subscribe();
    // Refused whether or not a buffer is full, so the outcome does not depend on timing.
    for value in [1, 2] {
        let err = channel.send(value).now_or_never().unwrap().unwrap_err();
        assert!(
            matches!(err, SendError::NoRuntime(v) if v == value),
            "{err:?}"
        );
    }
    let err = channel.send(3).now_or_never().unwrap().unwrap_err();
    assert!(err.to_string().contains("send_blocking"), "{err}");
    assert_eq!(channel.stats().sent, 0);
    assert!(sub.try_recv().is_none());
    // Without a timeout there is no timer to need: any executor may drive the send.
    let untimed = Channel::<u32>::new();
    let mut reader = untimed.subscribe();
    assert!(matches!(untimed.send(4).now_or_never(), Some(Ok(1))));
    assert_eq!(reader.try_recv(), Some(Ok(4)));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_consumer_reaches_the_error_callback_while_others_keep_receiving() {
    let failures = Arc::new(Mutex::new(Vec::<DeliveryError>::new()));
    let channel = Channel::<u32>::with_options(ChannelOptions::default().on_error({
        let failures = Arc::clone(&failures);
        move |e| failures.lock().unwrap().push(e.clone())
    }))
    .unwrap();
    let handled = Arc::new(AtomicU32::new(0));
    let fragile = channel
        .consume({
            let handled = Arc::clone(&handled);
            move |n: u32| {
                if n % 10 == 3 {
                    panic!("cannot handle {n}");
                }
                handled.fetch_add(1, Ordering::Relaxed);
            }
        })
        .unwrap();
    let steady = channel.subscribe();
    let steady = tokio::spawn(steady.collect::<Vec<_>>());

    for i in 0..50 {
        channel.send(i).await.unwrap();
    }
    channel.close();

    let stats = fragile.finished().await;
    assert_eq!((stats.delivered, stats.failed), (50, 5));
    assert_eq!(handled.load(Ordering::Relaxed), 45);
    assert_eq!(steady.await.unwrap(), (0..50).map(Ok).collect::<Vec<_>>());
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 5);
    assert_eq!(
        failures[0].failure,
        DeliveryFailure::Panicked("cannot handle 3".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn an_async_consumer_sees_every_message_and_lag_is_reported() {
    let failures = Arc::new(Mutex::new(Vec::<DeliveryFailure>::new()));
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(2).unwrap())
            .overflow(Overflow::DropOldest)
            .on_error({
                let failures = Arc::clone(&failures);
                move |e| failures.lock().unwrap().push(e.failure.clone())
            }),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = channel
        .consume_async({
            let seen = Arc::clone(&seen);
            move |n| {
                let seen = Arc::clone(&seen);
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    seen.lock().unwrap().push(n);
                }
            }
        })
        .unwrap();
    // Five sends without yielding: the consumer has not run, its buffer of 2 keeps 3 and 4.
    for i in 0..5 {
        channel.send(i).await.unwrap();
    }
    channel.close();
    let stats = consumer.finished().await;
    assert_eq!(*seen.lock().unwrap(), vec![3, 4]);
    assert_eq!((stats.delivered, stats.dropped), (2, 3));
    assert_eq!(*failures.lock().unwrap(), vec![DeliveryFailure::Lagged(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_consumer_unsubscribes() {
    let channel = Channel::<u32>::new();
    let consumer = channel.consume(|_| {}).unwrap();
    assert_eq!(channel.subscriber_count(), 1);
    let _ = consumer.stop();
    tokio::task::yield_now().await;
    assert_eq!(channel.subscriber_count(), 0);
}

/// `stop` unsubscribes before it returns, even while the callback is busy and a message is
/// buffered: a sender no longer waits for the stopped consumer. It used to only abort the
/// task, which takes effect when the task next runs: the consumer stayed subscribed and a
/// send into its full buffer waited.
#[tokio::test(start_paused = true)]
async fn a_stopped_consumer_leaves_before_stop_returns() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(1).unwrap()))
            .unwrap();
    let consumer = channel
        .consume_async(|_| std::future::pending::<()>())
        .unwrap();
    channel.send(1).await.unwrap();
    tokio::task::yield_now().await; // the callback took 1 and never returns
    channel.send(2).await.unwrap(); // buffered: the buffer is full
    let stats = consumer.stop();
    assert_eq!((stats.delivered, stats.buffered), (1, 1));
    assert_eq!(channel.subscriber_count(), 0);
    assert!(matches!(channel.send(3).now_or_never(), Some(Ok(0))));
}

/// After `stop`, no further message reaches the callback, even from a task that is inside a
/// blocking callback when `stop` is called and finds more messages buffered when it returns
/// (it used to run the callback on them: an abort takes effect only when the task waits).
#[test]
fn a_stopped_consumer_hands_nothing_more_to_its_callback() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let (gone_tx, gone) = std::sync::mpsc::channel::<()>();
    /// Tells the test when the callback (so the task) is dropped.
    struct Gone(std::sync::mpsc::Sender<()>);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let gone_guard = Gone(gone_tx);
    let log = Arc::clone(&seen);
    runtime.block_on(async {
        let channel = Channel::<u32>::new();
        let consumer = channel
            .consume(move |n| {
                let _keep = &gone_guard;
                log.lock().unwrap().push(n);
                if n == 1 {
                    started_tx.send(()).unwrap();
                    let _ = release_rx.recv();
                }
            })
            .unwrap();
        channel.send(1).await.unwrap();
        started.recv().unwrap(); // the callback is blocked inside 1
        channel.send(2).await.unwrap();
        channel.send(3).await.unwrap();
        let stats = consumer.stop();
        assert_eq!((stats.delivered, stats.buffered), (1, 2));
        assert_eq!(channel.subscriber_count(), 0);
        release.send(()).unwrap();
        gone.recv_timeout(Duration::from_secs(30))
            .expect("the stopped consumer's task ends");
    });
    assert_eq!(*seen.lock().unwrap(), [1]);
}

#[test]
fn consume_outside_a_runtime_is_a_typed_error() {
    let channel = Channel::<u32>::new();
    let err = channel.consume(|_| {}).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"));
    assert_eq!(channel.subscriber_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_spawn_blocking_the_documented_block_on_works() {
    let channel = Channel::<u32>::new();
    let mut sub = channel.subscribe();
    let sender = channel.clone();
    let reached = tokio::task::spawn_blocking(move || {
        assert!(matches!(
            sender.send_blocking(1),
            Err(SendError::InsideRuntime(1))
        ));
        tokio::runtime::Handle::current().block_on(sender.send(1))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reached, 1);
    assert_eq!(sub.recv().await, Some(Ok(1)));
}

#[tokio::test(start_paused = true)]
async fn stats_list_subscribers_oldest_first_after_one_leaves() {
    let channel = Channel::<u32>::new();
    let first = channel.subscribe();
    let rest: Vec<_> = (0..3).map(|_| channel.subscribe()).collect();
    drop(first);
    let listed: Vec<u64> = channel
        .stats()
        .subscribers
        .iter()
        .map(|s| s.subscriber)
        .collect();
    let expected: Vec<u64> = rest.iter().map(|s| s.id()).collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed, expected);
}
