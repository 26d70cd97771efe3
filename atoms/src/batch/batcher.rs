//! The batcher handle: push, flush, close, stats.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::worker::{Msg, Shared, Worker};
use super::{BatchClosed, BatchConfigError, BatchFailure, BatchOptions, TryPushError};

/// Groups pushed items into batches and hands each batch to an async handler.
///
/// A batch is handed over when it reaches `max_size` or when `flush_interval` has passed
/// since its first item was pushed, whichever comes first. One task calls the handler, so
/// **a batch never exceeds `max_size` and two flushes never overlap** (the .NET original
/// can do both). [`close`](Batcher::close) flushes everything already pushed and waits for
/// the last handler to finish. A handler error or panic is recorded, signalled
/// (`batch.failed`) and returned by `close`; the batcher carries on with the next batch.
///
/// Handles are cheap clones; dropping the last one also flushes what is left (in the
/// background), but only `close` lets you wait for it and see the failures.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::batch::{BatchOptions, Batcher};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let batcher = Batcher::new(
///     BatchOptions::new(10, Duration::from_millis(200)),
///     |rows: Vec<u32>| async move {
///         println!("inserting {} rows", rows.len());
///         Ok::<(), String>(())
///     },
/// )?;
/// for row in 0..25 {
///     batcher.push(row).await?;
/// }
/// let report = batcher.close().await; // 10, 10, then the last 5
/// assert_eq!((report.batches, report.items), (3, 25));
/// assert!(report.failures.is_empty());
/// assert_eq!(report.lost, 0); // nothing accepted goes unhandled
/// # Ok(())
/// # }
/// ```
#[must_use = "the batcher flushes what it holds and stops when its last handle is dropped"]
pub struct Batcher<T, E> {
    tx: mpsc::Sender<Msg<T>>,
    shared: Arc<Shared<E>>,
    max_size: usize,
}

impl<T, E> Clone for Batcher<T, E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            max_size: self.max_size,
        }
    }
}

impl<T, E> fmt::Debug for Batcher<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("max_size", &self.max_size)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters of a [`Batcher`], read together.
///
/// Non-exhaustive: counters may be added; read the fields, do not build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchStats {
    /// Batches handed to the handler.
    pub batches: u64,
    /// Items in those batches.
    pub items: u64,
    /// Batches whose handler returned an error or panicked.
    pub failed: u64,
    /// Items accepted but not yet in a handed-over batch: those waiting in the buffer and
    /// those in the batch being filled (at most `buffer + max_size - 1`; approximate while
    /// pushes race).
    pub pending: usize,
}

/// What [`Batcher::close`] reports once everything is flushed.
///
/// Non-exhaustive (as [`BatchStats`]): `lost` was added after the first release of this
/// struct; read the fields, do not build one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchReport<E> {
    /// Batches handed to the handler over the batcher's life.
    pub batches: u64,
    /// Items in those batches.
    pub items: u64,
    /// Batches that failed, in total.
    pub failed: u64,
    /// The failed batches not yet taken, oldest first (at most `max_retained_failures`).
    pub failures: Vec<BatchFailure<E>>,
    /// Items accepted but never handled to the end: 0, unless the batcher's task was
    /// dropped (its runtime shut down first) before it handed them over, or while the
    /// handler was still working on them (such a batch is in `batches` and `items`, not in
    /// `failed`: its handler neither returned nor panicked).
    pub lost: u64,
}

impl<T, E> Batcher<T, E>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// Starts a batcher that hands batches to `handler`.
    ///
    /// # Errors
    ///
    /// A [`BatchConfigError`] for a zero size, interval or buffer, or outside a tokio runtime.
    pub fn new<F, Fut>(options: BatchOptions, handler: F) -> Result<Self, BatchConfigError>
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let buffer = options.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BatchConfigError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(buffer);
        let shared = Arc::new(Shared {
            accepted: Default::default(),
            settled: Default::default(),
            batches: Default::default(),
            items: Default::default(),
            failed: Default::default(),
            failures: Default::default(),
            max_retained: options.max_retained_failures,
            closing: CancellationToken::new(),
            done: CancellationToken::new(),
            sink: options.sink,
            name: options.name,
        });
        let worker = Worker {
            rx,
            handler,
            max_size: options.max_size,
            interval: options.flush_interval,
            shared: shared.clone(),
        };
        runtime.spawn(worker.run());
        Ok(Self {
            tx,
            shared,
            max_size: options.max_size,
        })
    }
}

impl<T, E> Batcher<T, E> {
    /// Pushes an item, waiting while the buffer is full.
    ///
    /// # Errors
    ///
    /// [`BatchClosed`] with the item when the batcher is closed, also when it closes while
    /// this push waits (at once, even while a handler is still running): the item is never
    /// silently dropped.
    pub async fn push(&self, item: T) -> Result<(), BatchClosed<T>> {
        if self.shared.closing.is_cancelled() {
            return Err(BatchClosed(item));
        }
        // Reserve first and send after, so that a close while waiting hands the item back
        // instead of dropping it with the send future.
        tokio::select! {
            permit = self.tx.reserve() => match permit {
                Ok(permit) => {
                    // Counted before the send, so that `items` never gets ahead of it.
                    self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                    permit.send(Msg::Item(item, Instant::now()));
                    Ok(())
                }
                Err(_) => Err(BatchClosed(item)),
            },
            () = self.shared.closing.cancelled() => Err(BatchClosed(item)),
        }
    }

    /// Pushes an item if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryPushError::Full`] or [`TryPushError::Closed`], with the item.
    pub fn try_push(&self, item: T) -> Result<(), TryPushError<T>> {
        if self.shared.closing.is_cancelled() {
            return Err(TryPushError::Closed(item));
        }
        match self.tx.try_reserve() {
            Ok(permit) => {
                // Counted before the send, so that `items` never gets ahead of it.
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                permit.send(Msg::Item(item, Instant::now()));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(TryPushError::Full(item)),
            Err(mpsc::error::TrySendError::Closed(())) => Err(TryPushError::Closed(item)),
        }
    }

    /// Hands over everything pushed before this call (in batches of at most `max_size`)
    /// and waits until the handler has finished with it.
    ///
    /// `Ok` says the handler has returned, not that it succeeded: a batch it failed (or
    /// panicked on) is counted, signalled and kept for
    /// [`take_failures`](Batcher::take_failures) and [`close`](Batcher::close), as any
    /// failed batch is.
    ///
    /// # Errors
    ///
    /// [`BatchClosed`] when the batcher is closed (then [`close`](Batcher::close) does the
    /// flushing).
    pub async fn flush(&self) -> Result<(), BatchClosed<()>> {
        let (ack, done) = oneshot::channel();
        if self.shared.closing.is_cancelled() || self.tx.send(Msg::Flush(ack)).await.is_err() {
            return Err(BatchClosed(()));
        }
        done.await.map_err(|_| BatchClosed(()))
    }

    /// Stops accepting items, flushes everything already pushed, waits for the last handler
    /// and reports. If the batcher's task was dropped first (its runtime shut down), the
    /// items it never handed over, and those of a batch its handler was still working on,
    /// are counted in [`BatchReport::lost`], not hidden.
    /// Idempotent: every caller waits and gets the report (the failures go to the first
    /// caller that takes them).
    ///
    /// Do not await `close` (or [`flush`](Batcher::flush)) from inside the handler: the
    /// handler would wait for itself. The same goes for [`push`](Batcher::push) once the
    /// buffer is full (only the handler's return makes room): to hand items back to the
    /// batcher from its handler, use [`try_push`](Batcher::try_push).
    pub async fn close(&self) -> BatchReport<E> {
        self.shared.closing.cancel();
        self.shared.done.cancelled().await;
        let items = self.shared.items.load(Ordering::Acquire);
        BatchReport {
            batches: self.shared.batches.load(Ordering::Acquire),
            items,
            failed: self.shared.failed.load(Ordering::Acquire),
            failures: self.take_failures(),
            // The task is done: whatever was accepted and not handled to the end (never
            // handed over, or cut off in the handler) will never be.
            lost: self
                .shared
                .accepted
                .load(Ordering::Acquire)
                .saturating_sub(self.shared.settled.load(Ordering::Acquire)),
        }
    }

    /// Whether [`close`](Batcher::close) was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.closing.is_cancelled()
    }

    /// Takes the failed batches recorded so far, oldest first.
    pub fn take_failures(&self) -> Vec<BatchFailure<E>> {
        self.shared.failures().drain(..).collect()
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> BatchStats {
        // Relaxed: each counter is exact on its own; together they are a close snapshot, and
        // `close` (after the worker is done) reads final values. `items` is read before
        // `accepted`, and an item is accepted before it is batched, so the difference is
        // never negative; saturating all the same.
        let items = self.shared.items.load(Ordering::Relaxed);
        let accepted = self.shared.accepted.load(Ordering::Relaxed);
        BatchStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            items,
            failed: self.shared.failed.load(Ordering::Relaxed),
            pending: usize::try_from(accepted.saturating_sub(items)).unwrap_or(usize::MAX),
        }
    }

    /// The most items in one batch.
    #[must_use]
    pub fn max_size(&self) -> usize {
        self.max_size
    }
}
