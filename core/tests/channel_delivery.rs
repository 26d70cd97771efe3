//! Channel fan-out: every subscriber gets every message, in order per publisher.

use std::time::Duration;

use ephemeral::{Buffer, Channel, ChannelOptions, Overflow};
use futures::StreamExt;

#[tokio::test(start_paused = true)]
async fn four_subscribers_each_receive_all_10000_in_order() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(64).unwrap())
            .overflow(Overflow::Wait),
    )
    .unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let sub = channel.subscribe();
            tokio::spawn(async move { sub.collect::<Vec<_>>().await })
        })
        .collect();

    for i in 0..10_000 {
        assert_eq!(channel.send(i).await.unwrap(), 4);
    }
    channel.close();

    let expected: Vec<_> = (0..10_000).map(Ok).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    let stats = channel.stats();
    assert_eq!(stats.sent, 10_000);
}

#[tokio::test(start_paused = true)]
async fn messages_sent_before_subscribing_are_not_delivered() {
    let channel = Channel::<&str>::new();
    assert_eq!(channel.send("early").await.unwrap(), 0);
    let mut sub = channel.subscribe();
    channel.send("late").await.unwrap();
    assert_eq!(sub.try_recv(), Some(Ok("late")));
    assert_eq!(sub.try_recv(), None);
    assert_eq!(channel.stats().unheard, 1);
}

#[tokio::test(start_paused = true)]
async fn order_is_kept_per_publisher_with_concurrent_publishers() {
    let channel = Channel::<(u8, u32)>::with_options(
        ChannelOptions::default().buffer(Buffer::bounded(8).unwrap()),
    )
    .unwrap();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let sub = channel.subscribe();
            tokio::spawn(async move { sub.collect::<Vec<_>>().await })
        })
        .collect();
    let publishers: Vec<_> = (0..3u8)
        .map(|p| {
            let channel = channel.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    channel.send((p, i)).await.unwrap();
                    if i % 7 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    channel.close();
    for reader in readers {
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 1500);
        let mut next = [0u32; 3];
        for item in got {
            let (p, i) = item.unwrap();
            assert_eq!(i, next[p as usize], "publisher {p} out of order");
            next[p as usize] += 1;
        }
        assert_eq!(next, [500; 3]);
    }
}

#[tokio::test(start_paused = true)]
async fn subscribers_can_override_buffer_and_overflow() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(2).unwrap())
            .overflow(Overflow::Wait)
            .send_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let mut lossless = channel.subscribe_with(Buffer::bounded(100).unwrap());
    let mut lossy =
        channel.subscribe_with_overflow(Buffer::bounded(3).unwrap(), Overflow::DropOldest);
    for i in 0..10 {
        assert_eq!(channel.send(i).await.unwrap(), 2);
    }
    for i in 0..10 {
        assert_eq!(lossless.try_recv(), Some(Ok(i)));
    }
    assert_eq!(lossy.try_recv(), Some(Err(ephemeral::Lagged(7))));
    assert_eq!(lossy.try_recv(), Some(Ok(7)));
    assert_eq!(lossy.stats().dropped, 7);
    assert_eq!(lossless.stats().dropped, 0);
}

#[tokio::test(start_paused = true)]
async fn stats_add_up_per_subscriber() {
    let channel = Channel::<u32>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(4).unwrap())
            .overflow(Overflow::DropOldest)
            .expire_after(Duration::from_secs(10)),
    )
    .unwrap();
    let mut sub = channel.subscribe();
    for i in 0..6 {
        channel.send(i).await.unwrap();
    }
    assert_eq!(sub.recv().await, Some(Err(ephemeral::Lagged(2))));
    assert_eq!(sub.recv().await, Some(Ok(2)));
    tokio::time::advance(Duration::from_secs(11)).await;
    channel.send(100).await.unwrap();
    assert_eq!(sub.recv().await, Some(Ok(100)));
    let s = sub.stats();
    assert_eq!(
        (s.sent, s.delivered, s.dropped, s.expired, s.buffered),
        (7, 2, 2, 3, 0)
    );
    assert_eq!(
        s.sent,
        s.delivered + s.dropped + s.expired + s.buffered as u64
    );
    assert_eq!(channel.stats().subscribers, vec![s]);
}

/// A send waiting for room reaches only the subscribers there when it was called: one that
/// subscribes meanwhile, with the same buffer as the others or its own, does not get it.
#[tokio::test(start_paused = true)]
async fn a_subscriber_that_joins_while_a_send_waits_does_not_get_that_message() {
    let one = Buffer::bounded(1).unwrap();
    let channel = Channel::<u32>::with_options(ChannelOptions::default().buffer(one)).unwrap();
    let mut first = channel.subscribe();
    channel.send(1).await.unwrap();
    let sender = channel.clone();
    let waiting = tokio::spawn(async move { sender.send(2).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!waiting.is_finished(), "send(2) waits for room");
    let mut same_buffer = channel.subscribe();
    let mut own_buffer = channel.subscribe_with(Buffer::bounded(5).unwrap());
    assert_eq!(first.recv().await, Some(Ok(1)));
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!(first.try_recv(), Some(Ok(2)));
    assert_eq!(same_buffer.try_recv(), None);
    assert_eq!(own_buffer.try_recv(), None);
    assert_eq!(same_buffer.stats().sent, 0);
    // Later sends reach all three.
    assert_eq!(channel.send(3).await.unwrap(), 3);
    for sub in [&mut first, &mut same_buffer, &mut own_buffer] {
        assert_eq!(sub.try_recv(), Some(Ok(3)));
    }
    // And once no send is in flight, a new subscriber shares a buffer again, exactly.
    let mut later = channel.subscribe();
    assert_eq!(channel.send(4).await.unwrap(), 4);
    assert_eq!(later.try_recv(), Some(Ok(4)));
    assert_eq!(later.try_recv(), None);
}

/// A send that already reached one buffer and waits on another reaches no subscriber that
/// joined after it began, whichever buffer it joins.
#[tokio::test(start_paused = true)]
async fn a_send_half_way_through_its_buffers_skips_later_subscribers() {
    let channel =
        Channel::<u32>::with_options(ChannelOptions::default().buffer(Buffer::bounded(4).unwrap()))
            .unwrap();
    let mut roomy = channel.subscribe();
    let mut tight = channel.subscribe_with(Buffer::bounded(1).unwrap());
    channel.send(1).await.unwrap();
    let sender = channel.clone();
    let waiting = tokio::spawn(async move { sender.send(2).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!waiting.is_finished(), "send(2) waits for the tight buffer");
    assert_eq!(roomy.try_recv(), Some(Ok(1)));
    assert_eq!(
        roomy.try_recv(),
        Some(Ok(2)),
        "send(2) reached the roomy buffer"
    );
    let mut late_roomy = channel.subscribe();
    let mut late_tight = channel.subscribe_with(Buffer::bounded(1).unwrap());
    assert_eq!(tight.recv().await, Some(Ok(1)));
    assert_eq!(waiting.await.unwrap().unwrap(), 2);
    assert_eq!(tight.try_recv(), Some(Ok(2)));
    assert_eq!(late_roomy.try_recv(), None);
    assert_eq!(late_tight.try_recv(), None);
    assert_eq!(channel.send(3).await.unwrap(), 4);
    for sub in [&mut roomy, &mut tight, &mut late_roomy, &mut late_tight] {
        assert_eq!(sub.try_recv(), Some(Ok(3)));
    }
}
