//! The public lag ring on its own: what the sink's subscriptions and the channels build on,
//! and what other transports use for their receivers.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::lag::{PushError, Ring, TryPushError, TryRecvError};
use ephemeral::{Buffer, Lagged, Overflow};
use futures::FutureExt;
use tokio::time::Instant;

fn ring(n: usize, overflow: Overflow) -> Arc<Ring<Vec<u8>>> {
    Arc::new(Ring::new(Buffer::bounded(n).unwrap(), overflow))
}

#[tokio::test(start_paused = true)]
async fn losses_upstream_are_reported_like_drops_and_counted_apart() {
    let ring = ring(4, Overflow::Wait);
    let mut cursor = ring.cursor();
    ring.try_push(vec![1], None).unwrap();
    ring.add_lag(2);
    ring.try_push(vec![2], None).unwrap();
    let mut got = Vec::new();
    while let Ok(item) = cursor.try_recv() {
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
    let ring = Arc::new(
        Ring::new(Buffer::bounded(2).unwrap(), Overflow::DropOldest).with_weigher(Vec::len),
    );
    let mut cursor = ring.cursor();
    ring.try_push(vec![0; 10], None).unwrap();
    ring.try_push(vec![0; 20], None).unwrap();
    assert_eq!(ring.stats().bytes, 30);
    ring.try_push(vec![0; 40], None).unwrap(); // drops the 10
    assert_eq!(ring.stats().bytes, 60);
    assert_eq!(cursor.try_recv(), Ok(Err(Lagged(1))));
    assert_eq!(cursor.try_recv().unwrap().unwrap().len(), 20);
    assert_eq!(ring.stats().bytes, 40);

    // A lossless ring reads in batches; the bytes stay counted until read.
    let lossless = Arc::new(Ring::new(Buffer::Unbounded, Overflow::Wait).with_weigher(Vec::len));
    let mut cursor = lossless.cursor();
    for n in [5, 7, 11] {
        lossless.try_push(vec![0; n], None).unwrap();
    }
    assert_eq!(cursor.try_recv().unwrap().unwrap().len(), 5);
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
    while let Ok(item) = cursor.try_recv() {
        got.push(item.unwrap());
    }
    assert_eq!(got, [vec![2], vec![3]]);
    assert_eq!(ring.stats().expired, 1);
}

/// Values with and without an expiry, interleaved in one batch, for the only reader (which
/// moves the values out) and for two (which copy them): exactly the expired ones are
/// skipped, each reader counts them, and a lost value takes its expiry with it.
#[tokio::test(start_paused = true)]
async fn expiry_is_checked_value_by_value_within_a_batch() {
    for (readers, overflow) in [
        (1, Overflow::DropOldest),
        (2, Overflow::DropOldest),
        (1, Overflow::Wait),
        (2, Overflow::Wait),
    ] {
        let ring = ring(16, overflow);
        let mut cursors: Vec<_> = (0..readers).map(|_| ring.cursor()).collect();
        let soon = Instant::now() + Duration::from_secs(1);
        let later = Instant::now() + Duration::from_secs(10);
        let expiries = [None, Some(soon), None, Some(later), Some(soon), None];
        for (i, expires) in expiries.into_iter().enumerate() {
            ring.try_push(vec![i as u8], expires).unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        ring.close();
        for cursor in &mut cursors {
            let mut got = Vec::new();
            while let Some(item) = cursor.recv().await {
                got.push(item.unwrap()[0]);
            }
            assert_eq!(got, [0, 2, 3, 5], "{readers} readers, {overflow:?}");
            assert_eq!(cursor.stats().expired, 2, "{readers} readers, {overflow:?}");
        }
    }
    // A reader loses a value it had already taken into its batch (a sender needed the room):
    // the lost value's expiry goes with it, and the values after it keep their own.
    let ring = ring(4, Overflow::DropOldest);
    let mut slow = ring.cursor();
    let _other = ring.cursor();
    let soon = Instant::now() + Duration::from_secs(1);
    for (i, expires) in [None, Some(soon), None, Some(soon)].into_iter().enumerate() {
        ring.try_push(vec![i as u8], expires).unwrap();
    }
    assert_eq!(slow.recv().await, Some(Ok(vec![0])));
    ring.try_push(vec![4], None).unwrap();
    ring.try_push(vec![5], None).unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    ring.close();
    let mut got = Vec::new();
    while let Some(item) = slow.recv().await {
        got.push(item.map(|v| v[0]));
    }
    assert_eq!(got, [Err(Lagged(1)), Ok(2), Ok(4), Ok(5)]);
    assert_eq!(slow.stats().expired, 1);
}

#[tokio::test(start_paused = true)]
async fn closing_ends_the_reader_after_the_buffer_and_frees_waiting_senders() {
    let ring = ring(1, Overflow::Wait);
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
    assert_eq!(poll_fn(|cx| cursor.poll_recv(cx)).await, Some(Ok(vec![1])));
    assert_eq!(cursor.recv().await, None);
    assert_eq!(cursor.try_recv(), Err(TryRecvError::Closed));
    assert!(matches!(
        ring.try_push(vec![3], None),
        Err(TryPushError::Closed(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_bounded_wait_gives_the_value_back_and_a_reader_going_away_discards() {
    let ring = ring(1, Overflow::Wait);
    let cursor = ring.cursor();
    ring.try_push(vec![1], None).unwrap();
    let deadline = Instant::now() + Duration::from_millis(10);
    assert_eq!(
        ring.push(vec![2], None, Some(deadline)).await,
        Err(PushError::TimedOut(vec![2]))
    );
    assert_eq!(ring.stats().timed_out, 1);
    // A send future dropped while waiting leaves nothing behind.
    assert!(ring.push(vec![3], None, None).now_or_never().is_none());
    // The reader going away frees its room at once: a sender no longer waits for it.
    drop(cursor);
    let stats = ring.stats();
    assert_eq!((stats.pushed, stats.buffered, stats.bytes), (1, 0, 0));
    assert_eq!(ring.try_push(vec![4], None), Ok(0));
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

#[tokio::test(start_paused = true)]
async fn the_ring_keeps_at_most_its_capacity_of_read_values_and_nothing_once_readers_leave() {
    let ring = Arc::new(Ring::new(Buffer::bounded(2).unwrap(), Overflow::Wait));
    let mut cursors = [ring.cursor(), ring.cursor()];
    let values: Vec<Arc<u32>> = (0..5).map(Arc::new).collect();
    for value in &values {
        ring.try_push(Arc::clone(value), None).unwrap();
        for cursor in &mut cursors {
            assert_eq!(cursor.recv().await, Some(Ok(Arc::clone(value))));
        }
    }
    // Read values stay in the ring until their room is needed: never more than its capacity.
    let held = values.iter().filter(|v| Arc::strong_count(v) > 1).count();
    assert!(
        held <= 2,
        "the ring holds {held} read values, past its capacity of 2"
    );
    // The last reader leaving releases everything.
    drop(cursors);
    assert!(values.iter().all(|v| Arc::strong_count(v) == 1));
    assert_eq!(ring.try_push(Arc::new(9), None), Ok(0));
}

#[tokio::test(start_paused = true)]
async fn the_only_reader_gets_the_values_themselves_not_copies() {
    let ring = Arc::new(Ring::new(Buffer::bounded(4).unwrap(), Overflow::DropOldest));
    let mut cursor = ring.cursor();
    let value = Arc::new(1);
    ring.try_push(Arc::clone(&value), None).unwrap();
    let got = cursor.recv().await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&got, &value));
    drop(got);
    // The ring kept no copy: the reader had the value itself.
    assert_eq!(Arc::strong_count(&value), 1);
}

/// A waker that counts its wake-ups.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_reader_with_nothing_yields_once_then_parks_and_the_next_push_wakes_it() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::task::{Context, Poll, Waker};

    let ring = ring(4, Overflow::Wait);
    let mut cursor = ring.cursor();
    let count = Arc::new(CountingWaker(0.into()));
    let waker = Waker::from(Arc::clone(&count));
    let mut cx = Context::from_waker(&waker);
    let woken = || count.0.load(SeqCst);

    // First look: nothing, and the reader asks to be polled again (a yield).
    assert!(cursor.poll_recv(&mut cx).is_pending());
    assert_eq!(woken(), 1);
    // Second look: still nothing; now it parks, and nothing wakes it until a push.
    assert!(cursor.poll_recv(&mut cx).is_pending());
    assert_eq!(woken(), 1);
    ring.try_push(vec![7], None).unwrap();
    assert_eq!(woken(), 2);
    assert_eq!(cursor.poll_recv(&mut cx), Poll::Ready(Some(Ok(vec![7]))));
    // After a value, the next wait yields once again before parking.
    assert!(cursor.poll_recv(&mut cx).is_pending());
    assert_eq!(woken(), 3);
    assert!(cursor.poll_recv(&mut cx).is_pending());
    ring.close();
    assert_eq!(woken(), 4);
    assert_eq!(cursor.poll_recv(&mut cx), Poll::Ready(None));
}

/// A value that is not `Debug`, as a user's item may be.
struct Opaque;

fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

#[test]
fn the_errors_giving_a_value_back_are_errors_whatever_the_value() {
    // `?` into `Box<dyn Error>` needs `Error`, which needs `Debug`: not of the value.
    is_error(&PushError::Closed(Opaque));
    is_error(&TryPushError::Full(Opaque));
    assert_eq!(format!("{:?}", PushError::TimedOut(Opaque)), "TimedOut(..)");
    assert_eq!(format!("{:?}", TryPushError::Closed(Opaque)), "Closed(..)");
}

#[tokio::test(start_paused = true)]
async fn huge_losses_saturate_instead_of_wrapping_or_panicking() {
    let ring = ring(4, Overflow::DropOldest);
    let mut cursor = ring.cursor();
    ring.add_lag(u64::MAX);
    // Used to overflow `unreported` under the ring's lock: a panic in debug builds, a wrap
    // to zero (a silent loss) in release ones.
    ring.add_lag(1);
    ring.try_push(vec![1], None).unwrap();
    assert_eq!(cursor.try_recv(), Ok(Err(Lagged(u64::MAX))));
    assert_eq!(cursor.try_recv(), Ok(Ok(vec![1])));
    assert_eq!(cursor.stats().lost, u64::MAX);
    // Still usable: a later loss is reported on its own.
    ring.add_lag(2);
    assert_eq!(cursor.try_recv(), Ok(Err(Lagged(2))));
    assert_eq!(ring.stats().lost, u64::MAX);
}

#[tokio::test(start_paused = true)]
async fn a_reader_counts_only_the_timeouts_while_it_was_there() {
    let ring = ring(1, Overflow::Wait);
    let mut early = ring.cursor();
    ring.try_push(vec![1], None).unwrap();
    let soon = || Instant::now() + Duration::from_millis(10);
    assert!(ring.push(vec![2], None, Some(soon())).await.is_err());
    let late = ring.cursor();
    assert_eq!(late.stats().timed_out, 0);
    assert_eq!(early.stats().timed_out, 1);
    // A timeout with both there counts for both; the ring counts every one.
    assert!(ring.push(vec![3], None, Some(soon())).await.is_err());
    assert_eq!((early.stats().timed_out, late.stats().timed_out), (2, 1));
    assert_eq!(ring.stats().timed_out, 2);
    // One that left keeps what it had when it left.
    let gone = late.stats();
    drop(late);
    assert_eq!(early.try_recv(), Ok(Ok(vec![1])));
    ring.try_push(vec![4], None).unwrap();
    assert!(ring.push(vec![5], None, Some(soon())).await.is_err());
    assert_eq!(early.stats().timed_out, 3);
    assert_eq!(gone.timed_out, 1);
}

/// A push with a deadline polled outside a tokio runtime (another executor) is refused with
/// the value, room or not, instead of panicking in tokio's timer once the buffer is full;
/// without a deadline any executor may drive it.
#[test]
fn a_push_with_a_deadline_outside_a_runtime_is_refused_with_the_value() {
    let ring = ring(1, Overflow::Wait);
    let _cursor = ring.cursor();
    let deadline = Some(Instant::now() + Duration::from_secs(1));
    // Room: refused all the same, so the outcome does not depend on timing.
    match ring
        .push(vec![1], None, deadline)
        .now_or_never()
        .expect("ready at once")
    {
        Err(PushError::NoRuntime(value)) => assert_eq!(value, vec![1]),
        other => panic!("expected NoRuntime, got {other:?}"),
    }
    assert_eq!(
        ring.push(vec![1], None, None)
            .now_or_never()
            .expect("ready at once")
            .expect("no deadline"),
        1
    );
    // Full: this used to panic ("there is no reactor running").
    let refused = ring
        .push(vec![2], None, deadline)
        .now_or_never()
        .expect("ready at once")
        .unwrap_err();
    assert!(
        refused.to_string().contains("outside a tokio runtime"),
        "{refused}"
    );
    assert_eq!(refused.into_inner(), vec![2]);
}

/// `push_blocking` on a runtime's thread is refused with the value, full ring or not: on a
/// current-thread runtime a full `Wait` ring would block forever (the reader never runs).
/// On a plain thread it buffers as before.
#[test]
fn push_blocking_inside_a_runtime_is_refused_with_the_value() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ring = ring(1, Overflow::Wait);
    let _cursor = ring.cursor();
    runtime.block_on(async {
        // Room: refused all the same, so the outcome does not depend on timing.
        match ring.push_blocking(vec![1], None, None) {
            Err(PushError::InsideRuntime(value)) => assert_eq!(value, vec![1]),
            other => panic!("expected InsideRuntime, got {other:?}"),
        }
        ring.try_push(vec![1], None).expect("room for one");
        // Full: this used to block the runtime's only thread for good.
        let refused = ring.push_blocking(vec![2], None, None).unwrap_err();
        assert!(refused.to_string().contains("push(..).await"), "{refused}");
        assert_eq!(refused.into_inner(), vec![2]);
    });
    let plain = ring.clone();
    let pushed = std::thread::spawn(move || {
        plain.push_blocking(vec![3], None, Some(std::time::Instant::now()))
    })
    .join()
    .expect("thread");
    // A plain thread may block; here its deadline has passed, so it times out.
    assert!(matches!(pushed, Err(PushError::TimedOut(_))), "{pushed:?}");
}
