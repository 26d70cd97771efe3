//! The public lag ring on its own: what the sink's subscriptions and the channels build on,
//! and what other transports use for their receivers.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::lag::{PushError, Ring, TryPushError, TryRecvError};
use ephemeral::{Buffer, Lagged, Overflow};
use futures::FutureExt;
use tokio::time::Instant;

fn ring(n: usize, overflow: Overflow) -> Ring<Vec<u8>> {
    Ring::new(Buffer::bounded(n).unwrap(), overflow)
}

#[tokio::test(start_paused = true)]
async fn losses_upstream_are_reported_like_drops_and_counted_apart() {
    let ring = ring(4, Overflow::Wait);
    let mut cursor = ring.cursor();
    ring.try_push(vec![1], None).unwrap();
    ring.add_lag(2);
    ring.try_push(vec![2], None).unwrap();
    let mut got = Vec::new();
    while let Ok(item) = ring.try_recv(&mut cursor) {
        got.push(item);
    }
    assert_eq!(got, [Err(Lagged(2)), Ok(vec![1]), Ok(vec![2])]);
    let stats = ring.stats();
    assert_eq!(
        (stats.pushed, stats.delivered, stats.dropped, stats.lost),
        (2, 2, 0, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_weigher_tracks_the_bytes_held_through_drops_batches_and_reads() {
    let ring = Ring::new(Buffer::bounded(2).unwrap(), Overflow::DropOldest).with_weigher(Vec::len);
    let mut cursor = ring.cursor();
    ring.try_push(vec![0; 10], None).unwrap();
    ring.try_push(vec![0; 20], None).unwrap();
    assert_eq!(ring.stats().bytes, 30);
    ring.try_push(vec![0; 40], None).unwrap(); // drops the 10
    assert_eq!(ring.stats().bytes, 60);
    assert_eq!(ring.try_recv(&mut cursor), Ok(Err(Lagged(1))));
    assert_eq!(ring.try_recv(&mut cursor).unwrap().unwrap().len(), 20);
    assert_eq!(ring.stats().bytes, 40);

    // A lossless ring reads in batches; the bytes stay counted until read.
    let lossless = Ring::new(Buffer::Unbounded, Overflow::Wait).with_weigher(Vec::len);
    let mut cursor = lossless.cursor();
    for n in [5, 7, 11] {
        lossless.try_push(vec![0; n], None).unwrap();
    }
    assert_eq!(lossless.try_recv(&mut cursor).unwrap().unwrap().len(), 5);
    assert_eq!(lossless.stats().bytes, 18);
    assert_eq!(lossless.stats().buffered, 2);
}

#[tokio::test(start_paused = true)]
async fn expired_values_are_skipped_at_delivery_and_free_room_for_senders() {
    let ring = ring(2, Overflow::Wait);
    let mut cursor = ring.cursor();
    let soon = Instant::now() + Duration::from_millis(50);
    ring.try_push(vec![1], Some(soon)).unwrap();
    ring.try_push(vec![2], None).unwrap();
    assert!(matches!(
        ring.try_push(vec![3], None),
        Err(TryPushError::Full(_))
    ));
    tokio::time::advance(Duration::from_millis(50)).await;
    // The expired front value makes room for a sender, and is counted, not delivered.
    ring.try_push(vec![3], None).unwrap();
    let mut got = Vec::new();
    while let Ok(item) = ring.try_recv(&mut cursor) {
        got.push(item.unwrap());
    }
    assert_eq!(got, [vec![2], vec![3]]);
    assert_eq!(ring.stats().expired, 1);
}

#[tokio::test(start_paused = true)]
async fn closing_ends_the_reader_after_the_buffer_and_frees_waiting_senders() {
    let ring = Arc::new(ring(1, Overflow::Wait));
    let mut cursor = ring.cursor();
    ring.try_push(vec![1], None).unwrap();
    let waiting = {
        let ring = ring.clone();
        tokio::spawn(async move { ring.push(vec![2], None, None).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    ring.close();
    assert_eq!(waiting.await.unwrap(), Err(PushError::Closed(vec![2])));
    assert_eq!(
        poll_fn(|cx| ring.poll_recv(&mut cursor, cx)).await,
        Some(Ok(vec![1]))
    );
    assert_eq!(poll_fn(|cx| ring.poll_recv(&mut cursor, cx)).await, None);
    assert_eq!(ring.try_recv(&mut cursor), Err(TryRecvError::Closed));
    assert!(matches!(
        ring.try_push(vec![3], None),
        Err(TryPushError::Closed(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_bounded_wait_gives_the_value_back_and_a_reader_going_away_discards() {
    let ring = ring(1, Overflow::Wait);
    ring.try_push(vec![1], None).unwrap();
    let deadline = Instant::now() + Duration::from_millis(10);
    assert_eq!(
        ring.push(vec![2], None, Some(deadline)).await,
        Err(PushError::TimedOut(vec![2]))
    );
    assert_eq!(ring.stats().timed_out, 1);
    // A send future dropped while waiting leaves nothing behind.
    assert!(ring.push(vec![3], None, None).now_or_never().is_none());
    ring.close_discarding();
    let stats = ring.stats();
    assert_eq!((stats.pushed, stats.buffered, stats.bytes), (1, 0, 0));
}

#[test]
fn a_ring_is_shared_across_threads_and_its_sends_are_send() {
    fn shared<T: Send + Sync>(_: &T) {}
    fn sendable<T: Send>(_: &T) {}
    let ring = ring(1, Overflow::Wait);
    shared(&ring);
    sendable(&ring.cursor());
    let push = ring.push(vec![1], None, None);
    sendable(&push);
}
