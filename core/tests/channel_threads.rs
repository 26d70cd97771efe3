//! Channels across real threads: no lost wake-ups, no lost or reordered messages.
//!
//! These run on a multi-threaded runtime (real time) because the races they guard against
//! only exist there. The timeout only turns a hang (a lost wake-up) into a failure; it is
//! generous and never measures speed.

use std::time::Duration;

use ephemeral::{Buffer, Channel, ChannelOptions, Overflow};

const GUARD: Duration = Duration::from_secs(60);

async fn fan_out(buffer: usize, publishers: u8, per_publisher: u32, subscribers: usize) {
    let channel = Channel::<(u8, u32)>::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(buffer).unwrap())
            .overflow(Overflow::Wait),
    )
    .unwrap();
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let mut sub = channel.subscribe();
            tokio::spawn(async move {
                let mut next = vec![0u32; publishers as usize];
                while let Some(item) = sub.recv().await {
                    let (p, i) = item.expect("Wait never lags");
                    assert_eq!(i, next[p as usize], "publisher {p} out of order");
                    next[p as usize] += 1;
                }
                next
            })
        })
        .collect();
    let senders: Vec<_> = (0..publishers)
        .map(|p| {
            let channel = channel.clone();
            tokio::spawn(async move {
                for i in 0..per_publisher {
                    assert_eq!(channel.send((p, i)).await.unwrap(), subscribers);
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    channel.close();
    for r in readers {
        assert_eq!(r.await.unwrap(), vec![per_publisher; publishers as usize]);
    }
    for s in channel.stats().subscribers {
        assert_eq!(s.dropped, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_buffers_lose_nothing_across_threads() {
    tokio::time::timeout(GUARD, fan_out(1, 2, 20_000, 4))
        .await
        .expect("hung: a wake-up was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_room_release_loses_nothing_across_threads() {
    tokio::time::timeout(GUARD, fan_out(64, 3, 20_000, 3))
        .await
        .expect("hung: a wake-up was lost");
}

#[test]
fn blocking_and_async_publishers_together() {
    let channel = Channel::<(u8, u32)>::with_options(
        ChannelOptions::default().buffer(Buffer::bounded(2).unwrap()),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut subs: Vec<_> = (0..2).map(|_| channel.subscribe()).collect();
    let threads: Vec<_> = (0..2u8)
        .map(|p| {
            let channel = channel.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    channel.send_blocking((p, i)).unwrap();
                }
            })
        })
        .collect();
    let async_publisher = runtime.spawn({
        let channel = channel.clone();
        async move {
            for i in 0..10_000 {
                channel.send((2, i)).await.unwrap();
            }
        }
    });
    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut sub| {
            runtime.spawn(async move {
                let mut next = [0u32; 3];
                while let Some(item) = sub.recv().await {
                    let (p, i) = item.unwrap();
                    assert_eq!(i, next[p as usize]);
                    next[p as usize] += 1;
                }
                next
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    runtime.block_on(async move {
        tokio::time::timeout(GUARD, async_publisher)
            .await
            .expect("hung")
            .unwrap();
        channel.close();
        for r in readers {
            let next = tokio::time::timeout(GUARD, r).await.expect("hung").unwrap();
            assert_eq!(next, [10_000; 3]);
        }
    });
}
