//! `FixedWork<T>`: a FIFO coordinator with a set number of workers.

use std::fmt;

use ephemeral::{
    CoordinatorError, CoordinatorStats, EnqueueError, EphemeralOptions, EphemeralWorkCoordinator,
    IntakeError, OperationContext, OperationId,
};

/// A first-in, first-out work coordinator with `concurrency` workers, and the
/// coordinator's defaults for everything else (1024 pending, 200 tracked for 5 min).
///
/// This type offers no way to change the worker count, so it stays `concurrency` unless it
/// is changed through [`inner`](Self::inner): the coordinator underneath keeps its
/// [`set_max_concurrency`](EphemeralWorkCoordinator::set_max_concurrency) (enforced both
/// ways), and so does anything it is handed to as a
/// [`CoordinatorHandle`](ephemeral::CoordinatorHandle), such as a dynamic-concurrency
/// scaler. [`inner().max_concurrency()`](EphemeralWorkCoordinator::max_concurrency) tells
/// the count in effect.
///
/// When to use it: a fixed-size worker pool for uniform jobs (resize images, send mails) where
/// you want bounded intake, failures recorded (panics included) and [`stats`](Self::stats),
/// without choosing options. Use [`EphemeralWorkCoordinator`] directly for signal rules,
/// admission hooks or a concurrency that changes at run time — or reach it through
/// [`inner`](Self::inner).
///
/// # Examples
///
/// ```
/// use ephemeral::OperationContext;
/// use ephemeral_atoms::presets::FixedWork;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = FixedWork::new(4, |n: u32, _ctx: OperationContext| async move {
///     if n % 5 == 0 { Err(format!("{n} is a multiple of 5")) } else { Ok(()) }
/// })?;
/// for n in 1..=10 {
///     pool.enqueue(n).await?;
/// }
/// pool.drain().await?;
///
/// let stats = pool.stats();
/// assert_eq!((stats.accepted, stats.completed, stats.failed), (10, 8, 2));
/// assert!(stats.peak_running <= 4);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle cancels the coordinator's work"]
pub struct FixedWork<T: Send + 'static> {
    inner: EphemeralWorkCoordinator<T>,
}

impl<T: Send + 'static> Clone for FixedWork<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static> FixedWork<T> {
    /// A pool of `concurrency` workers running `body` on every item.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::Options`] for `concurrency == 0`, [`CoordinatorError::NoRuntime`]
    /// outside a tokio runtime.
    pub fn new<F, Fut, E>(concurrency: usize, body: F) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::with_options(concurrency, body, EphemeralOptions::default())
    }

    /// [`new`](Self::new) on top of `options` (a sink, a name, window sizes...); the worker
    /// count is `concurrency`, whatever `options` says.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), or a bad option.
    pub fn with_options<F, Fut, E>(
        concurrency: usize,
        body: F,
        options: EphemeralOptions,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let options = options.max_concurrency(concurrency);
        Ok(Self {
            inner: EphemeralWorkCoordinator::new(body, options)?,
        })
    }

    /// Accepts `item`, waiting while the pending queue is full.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] (with the item) after `complete`, `drain` or `cancel`.
    pub async fn enqueue(&self, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.inner.enqueue(item).await
    }

    /// Accepts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Full`] or [`EnqueueError::Closed`], with the item.
    pub fn try_enqueue(&self, item: T) -> Result<OperationId, EnqueueError<T>> {
        self.inner.try_enqueue(item)
    }

    /// Stops accepting items and waits until every accepted one has ended.
    ///
    /// # Errors
    ///
    /// The first error of an intake stream fed through [`inner`](Self::inner).
    pub async fn drain(&self) -> Result<(), IntakeError> {
        self.inner.drain().await
    }

    /// Cancels everything (see [`EphemeralWorkCoordinator::cancel`]).
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// One consistent snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> CoordinatorStats {
        self.inner.stats()
    }

    /// The coordinator underneath, for everything this preset does not expose.
    pub fn inner(&self) -> &EphemeralWorkCoordinator<T> {
        &self.inner
    }
}

impl<T: Send + 'static> fmt::Debug for FixedWork<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedWork")
            .field("inner", &self.inner)
            .finish()
    }
}
