//! Work-pool baselines for no-op items: the 16-task `async_channel` pool, a `Semaphore` with one
//! `tokio::spawn` per item, and tower's `Buffer` over `ConcurrencyLimit`.
//!
//! Each returns how many items its bodies ran, so the caller can check nothing was lost. Call
//! them inside a multi-threaded tokio runtime.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tower::{BoxError, Service, ServiceExt};

/// The no-op body every baseline (and ours) runs: it only keeps the item from being optimised
/// away.
pub async fn noop<T>(item: T) {
    black_box(item);
}

/// `workers` tasks pulling from one `async_channel::bounded(bound)`; the caller's task sends
/// every item (waiting for room), closes the channel and joins the workers.
pub async fn channel_pool<T: Send + 'static>(
    items: impl IntoIterator<Item = T>,
    workers: usize,
    bound: usize,
) -> usize {
    let (tx, rx) = async_channel::bounded::<T>(bound.max(1));
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut ran = 0;
                while let Ok(item) = rx.recv().await {
                    noop(item).await;
                    ran += 1;
                }
                ran
            })
        })
        .collect();
    drop(rx);
    for item in items {
        if tx.send(item).await.is_err() {
            break; // every worker is gone (a worker panicked): the join below reports it
        }
    }
    drop(tx);
    let mut ran = 0;
    for h in handles {
        ran += h.await.unwrap_or(0);
    }
    ran
}

/// One `tokio::spawn` per item, at most `permits` at once through a `Semaphore`; waits for all
/// of them by taking every permit back.
pub async fn semaphore_spawn(items: usize, permits: usize) -> usize {
    let permits = permits.max(1);
    let semaphore = Arc::new(Semaphore::new(permits));
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for item in 0..items {
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break; // never closed
        };
        let ran = ran.clone();
        tokio::spawn(async move {
            noop(item).await;
            // Relaxed: a count read after every permit came back (the semaphore orders it).
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
    let _all = semaphore.acquire_many(permits as u32).await;
    ran.load(std::sync::atomic::Ordering::Relaxed)
}

/// tower `Buffer::new(ConcurrencyLimit::new(svc, limit), bound)` over a no-op service, driven by
/// `clients` tasks that each call it in turn for their share of `items`.
///
/// # Errors
///
/// A tower error from the buffer (its worker gone); it does not happen with a no-op service.
pub async fn tower_buffer_limit(
    items: usize,
    clients: usize,
    bound: usize,
    limit: usize,
) -> Result<usize, BoxError> {
    let service = tower::service_fn(|item: usize| async move {
        noop(item).await;
        Ok::<_, Infallible>(())
    });
    let limited = tower::limit::ConcurrencyLimit::new(service, limit.max(1));
    let buffer = tower::buffer::Buffer::new(limited, bound.max(1));
    let clients = clients.max(1);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let mut svc = buffer.clone();
            // Client c takes items c, c + clients, c + 2 * clients, ...
            let share = (c..items).step_by(clients);
            tokio::spawn(async move {
                let mut ran = 0;
                for item in share {
                    svc.ready().await?.call(item).await?;
                    ran += 1;
                }
                Ok::<usize, BoxError>(ran)
            })
        })
        .collect();
    let mut ran = 0;
    for h in handles {
        ran += h.await.map_err(|e| Box::new(e) as BoxError)??;
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_baseline_runs_every_item() {
        assert_eq!(channel_pool(0..1000, 16, 64).await, 1000);
        assert_eq!(semaphore_spawn(1000, 16).await, 1000);
        assert_eq!(tower_buffer_limit(1000, 16, 64, 16).await.ok(), Some(1000));
    }
}
