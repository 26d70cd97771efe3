//! The one task that builds batches and calls the handler, so flushes never overlap.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ephemeral::{Signal, SignalSink};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BatchFailure, HandlerOutcome};

pub(crate) enum Msg<T> {
    Item(T, Instant),
    Flush(oneshot::Sender<()>),
}

/// Why a batch was handed over.
#[derive(Clone, Copy)]
enum Reason {
    Size,
    Interval,
    Manual,
    Close,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Interval => "interval",
            Self::Manual => "manual",
            Self::Close => "close",
        }
    }
}

/// State shared by the handles and the worker.
pub(crate) struct Shared<E> {
    /// Items accepted by `push` and `try_push`; `accepted - items` is what is pending.
    pub(crate) accepted: AtomicU64,
    /// Items whose handler returned (succeeded, failed or panicked): once the task is done,
    /// `accepted - settled` were lost with it (never handed over, or cut off in the handler).
    pub(crate) settled: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) items: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) failures: Mutex<VecDeque<BatchFailure<E>>>,
    pub(crate) max_retained: usize,
    pub(crate) closing: CancellationToken,
    pub(crate) done: CancellationToken,
    pub(crate) sink: Option<SignalSink>,
    pub(crate) name: Option<String>,
}

impl<E> Shared<E> {
    pub(crate) fn failures(&self) -> std::sync::MutexGuard<'_, VecDeque<BatchFailure<E>>> {
        // A list of records: a panic while holding it cannot leave it inconsistent.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn raise(&self, name: &str, headers: Vec<(&str, ephemeral::HeaderValue)>) {
        let Some(sink) = &self.sink else { return };
        let Ok(mut builder) = Signal::build(name) else {
            return;
        };
        if let Some(key) = &self.name {
            builder = builder.key(key.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        // Reporting must never fail a batch; the failure itself is also kept in the list.
        let _ = sink.raise_with(builder);
    }
}

pub(crate) struct Worker<T, E, F> {
    pub(crate) rx: mpsc::Receiver<Msg<T>>,
    pub(crate) handler: F,
    pub(crate) max_size: usize,
    pub(crate) interval: Duration,
    pub(crate) shared: std::sync::Arc<Shared<E>>,
}

impl<T, E, F, Fut> Worker<T, E, F>
where
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    pub(crate) async fn run(mut self) {
        // Marks the batcher done even if this task is dropped (runtime shutdown).
        let _done = self.shared.done.clone().drop_guard();
        let mut batch: Vec<T> = Vec::with_capacity(self.first_capacity());
        let mut deadline: Option<Instant> = None;
        let mut closing = false;
        loop {
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.shared.closing.cancelled(), if !closing => {
                    // Refuse new pushes; what is buffered is still received below.
                    closing = true;
                    self.rx.close();
                }
                () = timer => {
                    // Items pushed while the handler ran may still wait in the channel, the
                    // deadline already past: they join this batch (up to `max_size`) rather
                    // than each making a batch of one.
                    let mut manual = None;
                    while batch.len() < self.max_size {
                        match self.rx.try_recv() {
                            Ok(Msg::Item(item, _)) => batch.push(item),
                            Ok(Msg::Flush(ack)) => {
                                manual = Some(ack);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let reason = if batch.len() >= self.max_size {
                        Reason::Size
                    } else {
                        Reason::Interval
                    };
                    self.flush(&mut batch, reason).await;
                    deadline = None;
                    // A `flush()` asked for after those items: they were just handed over.
                    if let Some(ack) = manual {
                        let _ = ack.send(());
                    }
                }
                msg = self.rx.recv() => match msg {
                    Some(Msg::Item(item, pushed_at)) => {
                        if batch.is_empty() {
                            // An interval past what the clock can hold (`Duration::MAX`) never
                            // ends: no deadline, so only size, `flush` and close hand it over.
                            deadline = pushed_at.checked_add(self.interval);
                        }
                        batch.push(item);
                        if batch.len() >= self.max_size {
                            self.flush(&mut batch, Reason::Size).await;
                            deadline = None;
                        }
                    }
                    Some(Msg::Flush(ack)) => {
                        self.flush(&mut batch, Reason::Manual).await;
                        deadline = None;
                        let _ = ack.send(());
                    }
                    None => {
                        self.flush(&mut batch, Reason::Close).await;
                        return;
                    }
                },
            }
        }
    }

    /// The capacity a new batch starts with: `max_size`, up to a bound, so that a huge
    /// `max_size` grows the batch as items come rather than allocating it all up front.
    fn first_capacity(&self) -> usize {
        self.max_size.min(1024)
    }

    async fn flush(&self, batch: &mut Vec<T>, reason: Reason) {
        if batch.is_empty() {
            return;
        }
        let items = std::mem::replace(batch, Vec::with_capacity(self.first_capacity()));
        let size = items.len();
        let number = self.shared.batches.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.items.fetch_add(size as u64, Ordering::Relaxed);
        let size_header = i64::try_from(size).unwrap_or(i64::MAX);
        self.shared.raise(
            "batch.flushed",
            vec![
                ("size", size_header.into()),
                ("reason", reason.as_str().into()),
            ],
        );
        // The handler is awaited here, in the only task that flushes: batches never overlap.
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.handler)(items))) {
            Ok(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(HandlerOutcome::Error(e)),
                Err(panic) => Some(HandlerOutcome::Panicked(panic_message(panic.as_ref()))),
            },
            Err(panic) => Some(HandlerOutcome::Panicked(panic_message(panic.as_ref()))),
        };
        // The handler is done with these items, whatever it made of them; a task dropped
        // while it ran (its runtime shut down) never gets here, and `close` counts them lost.
        self.shared
            .settled
            .fetch_add(size as u64, Ordering::Relaxed);
        let Some(outcome) = outcome else {
            return;
        };
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        self.shared.raise(
            "batch.failed",
            vec![
                ("size", size_header.into()),
                ("error", crate::header::error_header(&outcome.to_string())),
                (
                    "panicked",
                    matches!(outcome, HandlerOutcome::Panicked(_)).into(),
                ),
            ],
        );
        tracing::warn!(batch = number, size, error = %outcome, "batch handler failed");
        let mut failures = self.shared.failures();
        if self.shared.max_retained == 0 {
            return;
        }
        if failures.len() >= self.shared.max_retained {
            failures.pop_front();
        }
        failures.push_back(BatchFailure {
            batch: number,
            size,
            outcome,
        });
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
