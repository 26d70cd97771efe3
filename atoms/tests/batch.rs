//! Batching: size and interval triggers, no overlap, close, failures, back-pressure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::batch::{
    BatchClosed, BatchConfigError, BatchOptions, Batcher, HandlerOutcome, TryPushError,
};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Log = Arc<Mutex<Vec<(Duration, Vec<u32>)>>>;

fn logging_batcher(max: usize, interval: Duration) -> (Batcher<u32, String>, Log) {
    let log: Log = Arc::default();
    let start = Instant::now();
    let sink = log.clone();
    let batcher = Batcher::new(BatchOptions::new(max, interval), move |batch: Vec<u32>| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push((start.elapsed(), batch));
            Ok::<(), String>(())
        }
    })
    .unwrap();
    (batcher, log)
}

#[tokio::test(start_paused = true)]
async fn twenty_five_items_yield_ten_ten_then_five_after_the_interval() {
    let (batcher, log) = logging_batcher(10, ms(200));
    for i in 0..25 {
        batcher.push(i).await.unwrap();
    }
    tokio::time::sleep(ms(199)).await;
    let sizes: Vec<_> = log.lock().unwrap().iter().map(|(_, b)| b.len()).collect();
    assert_eq!(sizes, [10, 10], "the last 5 wait for the interval");
    tokio::time::sleep(ms(2)).await;
    let log = log.lock().unwrap().clone();
    let shape: Vec<_> = log.iter().map(|(t, b)| (*t, b.len())).collect();
    assert_eq!(shape, [(ms(0), 10), (ms(0), 10), (ms(200), 5)]);
    let all: Vec<u32> = log.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(
        all,
        (0..25).collect::<Vec<_>>(),
        "in push order, nothing lost"
    );
}

#[tokio::test(start_paused = true)]
async fn interval_counts_from_the_first_item_of_each_batch() {
    let (batcher, log) = logging_batcher(100, ms(100));
    batcher.push(1).await.unwrap();
    tokio::time::sleep(ms(60)).await;
    batcher.push(2).await.unwrap();
    tokio::time::sleep(ms(60)).await;
    batcher.push(3).await.unwrap();
    tokio::time::sleep(ms(200)).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(log, [(ms(100), vec![1, 2]), (ms(220), vec![3])]);
}

#[tokio::test(start_paused = true)]
async fn batches_never_exceed_max_and_flushes_never_overlap() {
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let (r, m, s) = (running.clone(), max_running.clone(), sizes.clone());
    let batcher = Batcher::new(
        BatchOptions::new(7, ms(5)).buffer(3),
        move |batch: Vec<u32>| {
            let (r, m, s) = (r.clone(), m.clone(), s.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                s.lock().unwrap().push(batch.len());
                tokio::time::sleep(ms(3)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        },
    )
    .unwrap();
    let mut producers = Vec::new();
    for p in 0..4u32 {
        let batcher = batcher.clone();
        producers.push(tokio::spawn(async move {
            for i in 0..250 {
                batcher.push(p * 1000 + i).await.unwrap();
                if i % 13 == 0 {
                    tokio::time::sleep(ms(1)).await;
                }
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let report = batcher.close().await;
    assert_eq!(report.items, 1000);
    assert_eq!(max_running.load(Ordering::SeqCst), 1);
    let sizes = sizes.lock().unwrap();
    assert!(sizes.iter().all(|s| (1..=7).contains(s)), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 1000);
    assert_eq!(report.batches as usize, sizes.len());
}

#[tokio::test(start_paused = true)]
async fn close_flushes_the_rest_waits_and_refuses_later_pushes() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let batcher = Batcher::new(
        BatchOptions::new(100, Duration::from_secs(3600)),
        move |batch: Vec<u32>| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                d.fetch_add(batch.len(), Ordering::SeqCst);
                Ok::<(), String>(())
            }
        },
    )
    .unwrap();
    for i in 0..3 {
        batcher.push(i).await.unwrap();
    }
    let start = Instant::now();
    let report = batcher.close().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "close waited for the handler"
    );
    assert_eq!(done.load(Ordering::SeqCst), 3);
    assert_eq!((report.batches, report.items, report.failed), (1, 3, 0));
    assert!(batcher.is_closed());
    assert_eq!(batcher.push(9).await, Err(BatchClosed(9)));
    assert_eq!(batcher.try_push(10), Err(TryPushError::Closed(10)));
    assert_eq!(batcher.flush().await, Err(BatchClosed(())));
    // Idempotent.
    assert_eq!(batcher.close().await.items, 3);
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_returned_and_signalled_and_the_batcher_carries_on() {
    let sink = SignalSink::default();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h = handled.clone();
    let batcher = Batcher::new(
        BatchOptions::new(2, ms(10))
            .signals(sink.clone())
            .name("orders"),
        move |batch: Vec<u32>| {
            let h = h.clone();
            async move {
                match batch[0] {
                    0 => Err("database unavailable".to_owned()),
                    2 => panic!("bad row {}", batch[1]),
                    _ => {
                        h.lock().unwrap().extend(batch);
                        Ok(())
                    }
                }
            }
        },
    )
    .unwrap();
    for i in 0..6 {
        batcher.push(i).await.unwrap();
    }
    let report = batcher.close().await;
    assert_eq!(*handled.lock().unwrap(), [4, 5]);
    assert_eq!((report.batches, report.items, report.failed), (3, 6, 2));
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failures[0].batch, 1);
    assert_eq!(
        report.failures[0].outcome,
        HandlerOutcome::Error("database unavailable".to_owned())
    );
    assert_eq!(
        report.failures[1].outcome,
        HandlerOutcome::Panicked("bad row 3".to_owned())
    );
    assert_eq!(
        report.failures[1].to_string(),
        "batch 2 of 2 items failed: handler panicked: bad row 3"
    );
    assert_eq!(sink.count("batch.failed"), 2);
    assert_eq!(sink.count("batch.flushed"), 3);
    assert_eq!(sink.latest("batch.failed").unwrap().key(), Some("orders"));
}

/// A long error is cut to 256 bytes (with `…`) in `batch.failed`'s `error` header, as the
/// service host cuts its own, so the signal can go anywhere a signal goes; the failure kept
/// for `close` has it whole.
#[tokio::test(start_paused = true)]
async fn a_long_error_is_cut_in_the_signal_and_kept_whole_in_the_report() {
    let sink = SignalSink::default();
    let long = "é".repeat(1_000);
    let error = long.clone();
    let batcher = Batcher::new(
        BatchOptions::new(1, ms(10)).signals(sink.clone()),
        move |_: Vec<u32>| {
            let error = error.clone();
            async move { Err::<(), _>(error) }
        },
    )
    .unwrap();
    batcher.push(1).await.unwrap();
    let report = batcher.close().await;
    assert_eq!(report.failures[0].outcome, HandlerOutcome::Error(long));
    let failed = sink.latest("batch.failed").expect("signalled");
    let header = failed.header("error").expect("an error header").to_string();
    assert!(
        header.len() <= 256 && header.ends_with('…'),
        "{} bytes",
        header.len()
    );
    assert!(header.starts_with("éé"), "{header}");
}

#[tokio::test(start_paused = true)]
async fn full_buffer_makes_push_wait_and_try_push_refuse_and_close_returns_waiting_items() {
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let g = gate.clone();
    let batcher = Batcher::new(
        BatchOptions::new(1, ms(10)).buffer(1),
        move |batch: Vec<u32>| {
            let g = g.clone();
            let started_tx = started_tx.clone();
            async move {
                started_tx.send(batch[0]).unwrap();
                g.acquire().await.unwrap().forget();
                Ok::<(), String>(())
            }
        },
    )
    .unwrap();
    batcher.push(1).await.unwrap();
    assert_eq!(started.recv().await, Some(1)); // the handler holds item 1
    batcher.push(2).await.unwrap(); // fills the buffer of 1
    assert_eq!(batcher.try_push(3), Err(TryPushError::Full(3)));
    assert_eq!(batcher.stats().pending, 1);
    let waiting = {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.push(4).await })
    };
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "push waits while the buffer is full"
    );
    let closer = {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.close().await })
    };
    // The waiting push gets its item back; the buffered item 2 is still handled.
    assert_eq!(waiting.await.unwrap(), Err(BatchClosed(4)));
    gate.add_permits(10);
    let report = closer.await.unwrap();
    assert_eq!(started.recv().await, Some(2));
    assert_eq!((report.batches, report.items), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn flush_hands_over_now_and_waits() {
    let (batcher, log) = logging_batcher(10, Duration::from_secs(60));
    batcher.push(1).await.unwrap();
    batcher.push(2).await.unwrap();
    batcher.flush().await.unwrap();
    assert_eq!(*log.lock().unwrap(), [(ms(0), vec![1, 2])]);
    // An empty flush hands over nothing.
    batcher.flush().await.unwrap();
    assert_eq!(batcher.stats().batches, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_every_handle_still_flushes() {
    let (batcher, log) = logging_batcher(10, Duration::from_secs(60));
    batcher.push(7).await.unwrap();
    drop(batcher);
    tokio::time::sleep(ms(1)).await;
    assert_eq!(*log.lock().unwrap(), [(ms(0), vec![7])]);
}

/// Items that arrive while a slow handler runs join full batches once it returns, though
/// the first one's interval ran out meanwhile: they do not go one batch each.
#[tokio::test(start_paused = true)]
async fn a_handler_slower_than_the_interval_still_gets_full_batches() {
    let log: Log = Arc::default();
    let start = Instant::now();
    let seen = log.clone();
    let batcher = Batcher::new(BatchOptions::new(10, ms(50)), move |batch: Vec<u32>| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((start.elapsed(), batch));
            tokio::time::sleep(ms(300)).await;
            Ok::<(), String>(())
        }
    })
    .unwrap();
    for i in 0..35 {
        batcher.push(i).await.unwrap();
    }
    let report = batcher.close().await;
    assert_eq!((report.batches, report.items, report.failed), (4, 35, 0));
    let log = log.lock().unwrap().clone();
    let shape: Vec<_> = log.iter().map(|(t, b)| (*t, b.len())).collect();
    assert_eq!(
        shape,
        [(ms(0), 10), (ms(300), 10), (ms(600), 10), (ms(900), 5)]
    );
    let all: Vec<u32> = log.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(all, (0..35).collect::<Vec<_>>());
}

/// A buffer past what the batcher can hold is a typed error, also when it is the default of
/// 4 × a huge `max_size`; a huge `max_size` with a small buffer works.
#[tokio::test(start_paused = true)]
async fn a_huge_buffer_is_a_typed_error_and_a_huge_max_size_works() {
    let handler = |_: Vec<u8>| async { Ok::<(), String>(()) };
    let err = Batcher::new(BatchOptions::new(10, ms(10)).buffer(usize::MAX), handler).unwrap_err();
    assert!(
        matches!(
            err,
            BatchConfigError::BufferTooLarge {
                buffer: usize::MAX,
                ..
            }
        ),
        "{err}"
    );
    let err = Batcher::new(BatchOptions::new(usize::MAX, ms(10)), handler).unwrap_err();
    assert!(
        matches!(err, BatchConfigError::BufferTooLarge { .. }),
        "{err}"
    );
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let batcher = Batcher::new(
        BatchOptions::new(usize::MAX, ms(10)).buffer(4),
        move |batch: Vec<u8>| {
            seen.lock().unwrap().push(batch);
            async { Ok::<(), String>(()) }
        },
    )
    .unwrap();
    for i in 0..3 {
        batcher.push(i).await.unwrap();
    }
    tokio::time::sleep(ms(20)).await;
    assert_eq!(*got.lock().unwrap(), [vec![0, 1, 2]]);
    assert_eq!(batcher.close().await.items, 3);
}

#[tokio::test]
async fn bad_options_are_typed_errors() {
    let handler = |_: Vec<u8>| async { Ok::<(), String>(()) };
    let err = Batcher::new(BatchOptions::new(0, ms(1)), handler).unwrap_err();
    assert_eq!(err, BatchConfigError::ZeroMaxSize);
    let err = Batcher::new(BatchOptions::new(1, Duration::ZERO), handler).unwrap_err();
    assert_eq!(err, BatchConfigError::ZeroInterval);
    let err = Batcher::new(BatchOptions::new(1, ms(1)).buffer(0), handler).unwrap_err();
    assert!(err.to_string().contains("buffer"), "{err}");
}

#[test]
fn outside_a_runtime_is_a_typed_error() {
    let err = Batcher::new(BatchOptions::new(1, ms(1)), |_: Vec<u8>| async {
        Ok::<(), String>(())
    })
    .unwrap_err();
    assert_eq!(err, BatchConfigError::NoRuntime);
}

/// An item that is not `Debug`, as a user's item may be.
struct Opaque;

fn is_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

#[test]
fn the_errors_giving_an_item_back_are_errors_whatever_the_item() {
    // `batcher.push(x).await?` into `Box<dyn Error>` needs `Error`, which needs `Debug`.
    is_error(&ephemeral_atoms::batch::BatchClosed(Opaque));
    is_error(&ephemeral_atoms::batch::TryPushError::Full(Opaque));
    assert_eq!(
        format!("{:?}", ephemeral_atoms::batch::BatchClosed(Opaque)),
        "BatchClosed(..)"
    );
}

/// An interval too long for the clock (`Duration::MAX`) means "never by time": the items
/// wait for the size, a flush or close. (It used to fall back to the push instant, so every
/// item was flushed at once, alone.)
#[tokio::test(start_paused = true)]
async fn an_interval_past_the_clock_never_flushes_by_time() {
    let (batcher, log) = logging_batcher(3, Duration::MAX);
    batcher.push(1).await.unwrap();
    tokio::time::sleep(ms(1)).await;
    batcher.push(2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(86_400 * 365)).await;
    assert!(log.lock().unwrap().is_empty(), "nothing is due by time");
    batcher.push(3).await.unwrap(); // the size trigger still works
    tokio::time::sleep(ms(1)).await;
    batcher.push(4).await.unwrap();
    let report = batcher.close().await;
    let batches: Vec<Vec<u32>> = log.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(batches, [vec![1, 2, 3], vec![4]]);
    assert_eq!((report.batches, report.items), (2, 4));
}

/// `pending` counts every item accepted and not handed over, including those the batcher's
/// task already took into the batch it is filling (it used to count only the buffer, so
/// items waiting for the interval showed as 0 pending).
#[tokio::test(start_paused = true)]
async fn pending_counts_the_batch_being_filled() {
    let (batcher, log) = logging_batcher(10, Duration::from_secs(60));
    for item in 0..3 {
        batcher.push(item).await.unwrap();
    }
    batcher.try_push(3).unwrap();
    tokio::time::sleep(ms(1)).await; // the task has moved them into its batch
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(batcher.stats().pending, 4);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(log.lock().unwrap().len(), 1);
    let stats = batcher.stats();
    assert_eq!((stats.pending, stats.items), (0, 4));
}

/// A batcher whose runtime shut down before it flushed cannot hand its items over, but
/// `close` says how many were lost instead of reporting a clean finish.
#[test]
fn close_after_the_runtime_shut_down_reports_the_lost_items() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (batcher, log) = first.block_on(async {
        let (batcher, log) = logging_batcher(10, Duration::from_secs(60));
        for item in 0..3 {
            batcher.push(item).await.unwrap();
        }
        tokio::task::yield_now().await; // the task takes them into its batch
        (batcher, log)
    });
    drop(first); // drops the batcher's task with its batch
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = second.block_on(batcher.close());
    assert!(log.lock().unwrap().is_empty());
    assert_eq!((report.items, report.lost), (0, 3));
}

/// A batch whose handler was cut off by the runtime shutting down never finished: its items
/// are counted in `lost` too, not taken for handled. They were not: `lost` was 0, and the
/// report read as a clean finish (one batch of 4 items, none failed).
#[test]
fn a_batch_whose_handler_was_cut_off_is_counted_lost() {
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batcher = first.block_on(async {
        let entered = Arc::new(Semaphore::new(0));
        let seen = entered.clone();
        let batcher = Batcher::new(BatchOptions::new(4, ms(10)), move |_: Vec<u32>| {
            seen.add_permits(1);
            // A handler still working when the runtime goes away.
            async { std::future::pending::<Result<(), String>>().await }
        })
        .unwrap();
        for item in 0..6 {
            batcher.try_push(item).unwrap();
        }
        // The first batch of 4 is in the handler.
        entered.acquire().await.unwrap().forget();
        batcher
    });
    drop(first); // drops the batcher's task, its handler and the 2 items left
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = second.block_on(batcher.close());
    assert_eq!((report.batches, report.items, report.failed), (1, 4, 0));
    assert_eq!(
        report.lost, 6,
        "the 4 of the cut-off batch and the 2 never handed over"
    );
}

/// The list of failed batches is bounded by `max_retained_failures`: beyond it the oldest
/// leave the list (still counted in `failed`); 0 keeps none.
#[tokio::test(start_paused = true)]
async fn retained_failures_are_bounded_oldest_dropped_first() {
    for (retained, expect) in [(2usize, vec![4u64, 5]), (0, vec![])] {
        let batcher = Batcher::new(
            BatchOptions::new(1, ms(10)).max_retained_failures(retained),
            |batch: Vec<u32>| async move { Err(format!("batch of {} failed", batch[0])) },
        )
        .unwrap();
        for item in 0..5 {
            batcher.push(item).await.unwrap();
        }
        let report = batcher.close().await;
        assert_eq!((report.batches, report.failed), (5, 5));
        let numbers: Vec<u64> = report.failures.iter().map(|f| f.batch).collect();
        assert_eq!(numbers, expect, "max_retained_failures({retained})");
    }
}
