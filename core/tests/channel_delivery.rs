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
