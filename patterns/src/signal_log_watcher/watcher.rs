//! The watcher task.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ephemeral::{Buffer, Pattern, Signal, SignalSink};
use futures::FutureExt as _;
use tokio::task::JoinHandle;

/// Counts of what a [`SignalLogWatcher`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WatcherStats {
    /// Signals handed to the handler.
    pub handled: u64,
    /// Signals dropped from a full subscription buffer before the handler saw them.
    pub lagged: u64,
    /// Handler calls that panicked, while being called or while their future ran (each also
    /// counts as handled).
    pub panicked: u64,
}

/// Why a [`SignalLogWatcher`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatcherError {
    /// Started outside a tokio runtime.
    #[error("a signal log watcher runs as a tokio task: start it inside a runtime")]
    NoRuntime,
    /// The pattern can match no signal name (`""`, `" , "`, `"a b"`: see
    /// [`Pattern::is_empty`]), so the handler would never be called.
    #[error(
        "pattern `{pattern}` matches no signal name, so the watcher would never see a signal: give a pattern such as `error.*` (or `*` for every signal)"
    )]
    EmptyPattern {
        /// The pattern given.
        pattern: String,
    },
}

#[derive(Default)]
struct Counters {
    handled: AtomicU64,
    lagged: AtomicU64,
    panicked: AtomicU64,
}

/// Runs a handler once per signal matching a pattern, in order, from a bounded subscription.
/// Stops when dropped or [`stop`](Self::stop)ped.
///
/// # Examples
///
/// ```
/// use ephemeral::{Buffer, SignalSink};
/// use ephemeral_patterns::signal_log_watcher::SignalLogWatcher;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let watcher = SignalLogWatcher::start(
///     &sink,
///     "error.*",
///     Buffer::bounded(256)?,
///     |signal| async move { println!("{signal}") },
///     |lost| eprintln!("log watcher fell behind: {lost} signals dropped"),
/// )?;
/// sink.raise("error.db")?;
/// sink.raise("job.done")?; // does not match
/// # while watcher.stats().handled < 1 { tokio::task::yield_now().await; }
/// assert_eq!(watcher.stats().handled, 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "the watcher stops as soon as it is dropped"]
pub struct SignalLogWatcher {
    task: JoinHandle<()>,
    counters: Arc<Counters>,
    pattern: String,
}

impl SignalLogWatcher {
    /// Subscribes to `pattern` on `sink` with `buffer` and starts calling `handler` for each
    /// signal, and `on_lag` with the number dropped whenever the buffer overflowed.
    ///
    /// # Errors
    ///
    /// [`WatcherError::EmptyPattern`] for a pattern that can match no signal name (empty,
    /// blank, or every alternative holding whitespace); [`WatcherError::NoRuntime`] outside
    /// a tokio runtime. Nothing is subscribed then.
    pub fn start<H, Fut, L>(
        sink: &SignalSink,
        pattern: &str,
        buffer: Buffer,
        handler: H,
        on_lag: L,
    ) -> Result<Self, WatcherError>
    where
        H: Fn(Signal) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        L: Fn(u64) + Send + 'static,
    {
        // A watcher that can see nothing is a mistake (a typo, an unset variable), not a
        // quiet watcher: refused, as a durable subscription or `ephemeral watch ''` is.
        if Pattern::new(pattern).is_empty() {
            return Err(WatcherError::EmptyPattern {
                pattern: pattern.to_owned(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatcherError::NoRuntime)?;
        let mut subscription = sink.subscribe_with(pattern, buffer);
        let counters = Arc::new(Counters::default());
        let seen = counters.clone();
        let task = runtime.spawn(async move {
            while let Some(item) = subscription.recv().await {
                // Relaxed: plain counters read by `stats`, ordering nothing else.
                match item {
                    Ok(signal) => {
                        // A handler may panic when called, before it returns its future,
                        // as well as while the future runs: both are caught. (The call is
                        // caught apart, not inside one async block, so that `H` need not
                        // be `Sync`.)
                        let called = std::panic::catch_unwind(AssertUnwindSafe(|| handler(signal)));
                        let ran = match called {
                            Ok(future) => AssertUnwindSafe(future).catch_unwind().await.is_ok(),
                            Err(_) => false,
                        };
                        seen.handled.fetch_add(1, Ordering::Relaxed);
                        if !ran {
                            seen.panicked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(lagged) => {
                        seen.lagged.fetch_add(lagged.0, Ordering::Relaxed);
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| on_lag(lagged.0)));
                    }
                }
            }
        });
        Ok(Self {
            task,
            counters,
            pattern: pattern.to_owned(),
        })
    }

    /// What the watcher has seen so far.
    #[must_use]
    pub fn stats(&self) -> WatcherStats {
        // Relaxed: independent counters; a snapshot may be mid-update by one signal.
        WatcherStats {
            handled: self.counters.handled.load(Ordering::Relaxed),
            lagged: self.counters.lagged.load(Ordering::Relaxed),
            panicked: self.counters.panicked.load(Ordering::Relaxed),
        }
    }

    /// Stops the watcher (a handler call in progress is dropped).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SignalLogWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for SignalLogWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalLogWatcher")
            .field("pattern", &self.pattern)
            .field("stats", &self.stats())
            .finish()
    }
}
