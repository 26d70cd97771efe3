//! Lossless fan-out from one publisher to several receivers, measured the same way for
//! `tokio::sync::broadcast`, sink subscriptions and (later) `Channel<T>`.
//!
//! Neither `broadcast` nor a sink subscription makes the sender wait, so "lossless" is arranged
//! by the harness: the publisher sends in batches and, before sending batch `b + 1`, waits until
//! every receiver has consumed batch `b - 1`. At most two batches are in flight, so a receiver
//! buffer of at least `2 × batch` never overflows. Receivers still count any lag they see, and
//! the caller checks that it is zero.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};

/// What a receiver got from one `next` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// One message.
    Item,
    /// This many messages were lost.
    Lagged(u64),
    /// The sender side is gone.
    Closed,
}

/// A receiving end the fan-out harness can drive.
pub trait FanoutReceiver: Send + 'static {
    /// The next message, lag report or end.
    fn next(&mut self) -> impl Future<Output = Received> + Send;
}

impl<T: Clone + Send + 'static> FanoutReceiver for broadcast::Receiver<T> {
    async fn next(&mut self) -> Received {
        match self.recv().await {
            Ok(item) => {
                black_box(item);
                Received::Item
            }
            Err(broadcast::error::RecvError::Lagged(n)) => Received::Lagged(n),
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

/// The outcome of one fan-out run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutOutcome {
    /// From the first send until every receiver had every message.
    pub elapsed: Duration,
    /// Messages delivered, summed over receivers (`messages × receivers` when lossless).
    pub delivered: u64,
    /// Messages reported lost, summed over receivers (0 when lossless).
    pub lagged: u64,
}

struct Progress {
    consumed: Vec<AtomicU64>,
    notify: Notify,
}

impl Progress {
    fn slowest(&self) -> u64 {
        self.consumed
            .iter()
            // Acquire pairs with the receivers' Release: only a count, but cheap to be exact.
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// Sends `messages` messages with `send` to `receivers` (spawned as tasks) in batches of
/// `batch`, keeping at most two batches in flight, and waits until every receiver has seen
/// every message (delivered or reported lagged). Run inside a multi-threaded runtime.
pub async fn run<R: FanoutReceiver>(
    receivers: Vec<R>,
    messages: u64,
    batch: u64,
    mut send: impl AsyncFnMut(),
) -> FanoutOutcome {
    let batch = batch.max(1);
    let progress = Arc::new(Progress {
        consumed: receivers.iter().map(|_| AtomicU64::new(0)).collect(),
        notify: Notify::new(),
    });
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, mut rx)| {
            let progress = progress.clone();
            tokio::spawn(async move {
                let (mut delivered, mut lagged) = (0u64, 0u64);
                while delivered + lagged < messages {
                    match rx.next().await {
                        Received::Item => delivered += 1,
                        Received::Lagged(n) => lagged += n,
                        Received::Closed => break,
                    }
                    let seen = delivered + lagged;
                    if seen % batch == 0 || seen >= messages {
                        progress.consumed[i].store(seen, Ordering::Release);
                        progress.notify.notify_one();
                    }
                }
                // A receiver that ended early must not leave the publisher waiting.
                progress.consumed[i].store(u64::MAX, Ordering::Release);
                progress.notify.notify_one();
                (delivered, lagged)
            })
        })
        .collect();

    let start = Instant::now();
    let mut sent = 0u64;
    let mut b = 0u64;
    while sent < messages {
        let n = batch.min(messages - sent);
        for _ in 0..n {
            send().await;
        }
        sent += n;
        // Before the next batch, every receiver must have finished the previous one.
        let need = b * batch;
        while progress.slowest() < need {
            // notify_one stores a permit when nobody waits, so no wake-up is lost between the
            // check and the wait.
            progress.notify.notified().await;
        }
        b += 1;
    }
    let (mut delivered, mut lagged) = (0, 0);
    for h in handles {
        let (d, l) = h.await.unwrap_or((0, 0));
        delivered += d;
        lagged += l;
    }
    FanoutOutcome {
        elapsed: start.elapsed(),
        delivered,
        lagged,
    }
}

/// The `tokio::sync::broadcast` baseline: `receivers` receivers on a channel of `capacity`,
/// each message a clone of `payload`.
pub async fn broadcast<T: Clone + Send + Sync + 'static>(
    payload: T,
    receivers: usize,
    capacity: usize,
    messages: u64,
    batch: u64,
) -> FanoutOutcome {
    let (tx, _) = broadcast::channel::<T>(capacity.max(1));
    let rxs: Vec<_> = (0..receivers).map(|_| tx.subscribe()).collect();
    run(rxs, messages, batch, async || {
        // An error means every receiver is gone; the receivers' counts then show the loss.
        let _ = tx.send(payload.clone());
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broadcast_fanout_is_lossless() {
        let out = broadcast(7u64, 4, 1024, 10_000, 256).await;
        assert_eq!(out.lagged, 0);
        assert_eq!(out.delivered, 40_000);
    }

    // One thread: the publisher sends a whole batch before any receiver runs, so a buffer of
    // two must lag, deterministically.
    #[tokio::test]
    async fn too_small_a_buffer_shows_up_as_lag_not_a_hang() {
        let out = broadcast(7u64, 2, 2, 4_096, 256).await;
        assert!(out.lagged > 0, "{out:?}");
        assert_eq!(out.delivered + out.lagged, 2 * 4_096);
    }
}
