//! Properties of batching over random push patterns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral_atoms::batch::{BatchOptions, Batcher};
use proptest::prelude::*;
use tokio::time::Instant;

/// Each batch with the time it was handed over; each item with its index and push time.
type Handed = Arc<Mutex<Vec<(Instant, Vec<(usize, Instant)>)>>>;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every pushed item is handed over exactly once, in push order, in batches of at most
    /// `max_size`; with a handler that takes no time, no item waits longer than the interval.
    #[test]
    fn every_item_once_in_order_within_size_and_interval(
        max_size in 1usize..12,
        interval_ms in 1u64..50,
        pauses in proptest::collection::vec(0u64..40, 1..150),
    ) {
        paused_runtime().block_on(async move {
            let interval = Duration::from_millis(interval_ms);
            let handed: Handed = Arc::default();
            let h = handed.clone();
            let batcher = Batcher::new(BatchOptions::new(max_size, interval), move |batch| {
                let h = h.clone();
                async move {
                    h.lock().unwrap().push((Instant::now(), batch));
                    Ok::<(), String>(())
                }
            })
            .unwrap();
            let n = pauses.len();
            for (i, pause) in pauses.into_iter().enumerate() {
                batcher.push((i, Instant::now())).await.unwrap();
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let report = batcher.close().await;
            prop_assert_eq!(report.items as usize, n);
            let handed = handed.lock().unwrap();
            let mut order = Vec::new();
            for (at, batch) in handed.iter() {
                prop_assert!(!batch.is_empty() && batch.len() <= max_size);
                for (i, pushed) in batch {
                    order.push(*i);
                    // The last batch may be handed over by close, earlier than the interval.
                    prop_assert!(*at - *pushed <= interval, "item {} waited {:?}", i, *at - *pushed);
                }
            }
            prop_assert_eq!(order, (0..n).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}
