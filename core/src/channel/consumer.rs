//! `Consumer`: a callback run on every message of one subscriber, on its own task.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use futures::FutureExt;
use futures_core::Stream;
use tokio::task::JoinHandle;

use super::channel::{Channel, report};
use super::error::{DeliveryFailure, NoRuntime};
use super::shared::SubShared;
use super::stats::DeliveryStats;
use super::subscriber::Subscriber;
use crate::sync::{Mutex, lock, panic_message};
use crate::{Buffer, Overflow};

/// A callback consuming one subscriber of a channel on its own tokio task.
///
/// Made by [`Channel::consume`] / [`Channel::consume_async`]. A panicking callback is caught,
/// counted (`failed` in [`stats`](Self::stats)) and reported to the channel's error callback
/// as [`DeliveryFailure::Panicked`]; the consumer carries on with the next message. A lag
/// (with [`Overflow::DropOldest`]) is reported as [`DeliveryFailure::Lagged`].
///
/// The task ends by itself when the channel closes and its buffer is drained; await that
/// with [`finished`](Self::finished). [`stop`](Self::stop) unsubscribes at once, before it
/// returns, whatever the task is doing. Dropping the `Consumer` detaches it: it keeps
/// running until the channel closes.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::{Arc, Mutex};
/// use ephemeral::{Channel, ChannelOptions};
///
/// let failures = Arc::new(Mutex::new(Vec::new()));
/// let seen = Arc::clone(&failures);
/// let channel = Channel::<i32>::with_options(
///     ChannelOptions::default().on_error(move |e| seen.lock().unwrap().push(e.to_string())),
/// )?;
/// let consumer = channel.consume(|n| assert!(n >= 0, "negative reading"))?;
///
/// channel.send(1).await?;
/// channel.send(-1).await?; // the callback panics: reported, not fatal
/// channel.send(2).await?;
/// channel.close();
///
/// let stats = consumer.finished().await;
/// assert_eq!((stats.delivered, stats.failed), (3, 1));
/// assert_eq!(failures.lock().unwrap().len(), 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Consumer detaches it; keep it to stop it or await it"]
pub struct Consumer {
    id: u64,
    stats: Arc<dyn Fn() -> DeliveryStats + Send + Sync>,
    /// Takes the subscriber out of the task's slot and drops it: unsubscribes now, and
    /// returns the final counts.
    unsubscribe: Box<dyn Fn() -> DeliveryStats + Send + Sync>,
    task: JoinHandle<()>,
}

/// The subscriber a consumer's task reads, shared with its [`Consumer`] so that
/// [`stop`](Consumer::stop) can take it out (and so unsubscribe) at once: an abort alone
/// takes effect only when the task next waits, and a task with messages buffered, or in a
/// blocking callback, would go on receiving until then.
type Slot<T> = Arc<Mutex<Option<Subscriber<T>>>>;

/// Empties the slot when the task ends, however it ends (the channel closed, an abort, the
/// runtime shutting down), so the subscriber never outlives its task.
struct EmptyOnDrop<T>(Slot<T>);

impl<T> Drop for EmptyOnDrop<T> {
    fn drop(&mut self) {
        // Taken out under the lock, dropped after it: dropping unregisters from the channel.
        let subscriber = lock(&self.0).take();
        drop(subscriber);
    }
}

impl Consumer {
    /// The id of the subscriber this consumer reads.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The subscriber's delivery counts so far.
    #[must_use]
    pub fn stats(&self) -> DeliveryStats {
        (self.stats)()
    }

    /// Whether the consumer's task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the channel is closed and everything buffered was consumed, then returns
    /// the final counts.
    pub async fn finished(self) -> DeliveryStats {
        // The task catches every panic of the callback; a JoinError can only mean the
        // runtime is shutting down, and the counts are still right.
        let _ = (&mut { self.task }).await;
        (self.stats)()
    }

    /// Unsubscribes now, before it returns: senders no longer wait for this consumer, and
    /// no further message is handed to its callback. Messages still buffered for it are
    /// discarded (counted in nothing further; the counts returned are its last, buffered
    /// ones included). A callback running at that moment finishes if it is synchronous; an
    /// async one is dropped at its next await.
    pub fn stop(self) -> DeliveryStats {
        let stats = (self.unsubscribe)();
        self.task.abort();
        stats
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("id", &self.id)
            .field("stats", &(self.stats)())
            .finish()
    }
}

impl<T: Clone + Send + 'static> Channel<T> {
    /// Runs `callback` on every message on a new tokio task, with the channel's buffer and
    /// overflow policy.
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] when called outside a tokio runtime.
    pub fn consume<F>(&self, callback: F) -> Result<Consumer, NoRuntime>
    where
        F: FnMut(T) + Send + 'static,
    {
        let options = self.options();
        self.consume_with(options.buffer, options.overflow, callback)
    }

    /// Like [`consume`](Self::consume), with its own buffer and overflow policy.
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] when called outside a tokio runtime.
    pub fn consume_with<F>(
        &self,
        buffer: Buffer,
        overflow: Overflow,
        mut callback: F,
    ) -> Result<Consumer, NoRuntime>
    where
        F: FnMut(T) + Send + 'static,
    {
        self.spawn_consumer(buffer, overflow, move |value| {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| callback(value)));
            std::future::ready(outcome.map_err(|p| panic_message(p.as_ref())))
        })
    }

    /// Runs the async `callback` on every message, one at a time and in order, on a new
    /// tokio task.
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] when called outside a tokio runtime.
    pub fn consume_async<F, Fut>(&self, mut callback: F) -> Result<Consumer, NoRuntime>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let options = self.options();
        self.spawn_consumer(options.buffer, options.overflow, move |value| {
            AssertUnwindSafe(callback(value))
                .catch_unwind()
                .map(|r| r.map_err(|p| panic_message(p.as_ref())))
        })
    }

    fn spawn_consumer<F, Fut>(
        &self,
        buffer: Buffer,
        overflow: Overflow,
        run: F,
    ) -> Result<Consumer, NoRuntime>
    where
        F: FnMut(T) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
        let subscriber = self.subscribe_with_overflow(buffer, overflow);
        let id = subscriber.id();
        let shared: Arc<SubShared<T>> = Arc::clone(&subscriber.shared);
        let slot: Slot<T> = Arc::new(Mutex::new(Some(subscriber)));
        let on_error = self.options().on_error.clone();
        let task = runtime.spawn(consume_loop(
            Arc::clone(&slot),
            Arc::clone(&shared),
            on_error,
            run,
        ));
        let last = Arc::clone(&shared);
        Ok(Consumer {
            id,
            stats: Arc::new(move || shared.stats()),
            unsubscribe: Box::new(move || {
                // Out of the slot first: from here on the task reads nothing more, so these
                // counts are the last. Dropped after the lock is released.
                let subscriber = lock(&slot).take();
                let stats = last.stats();
                drop(subscriber);
                stats
            }),
            task,
        })
    }
}

async fn consume_loop<T: Clone, F, Fut>(
    slot: Slot<T>,
    shared: Arc<SubShared<T>>,
    on_error: Option<super::options::DeliveryErrorCallback>,
    mut run: F,
) where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let slot = EmptyOnDrop(slot);
    let id = shared.id;
    loop {
        // The slot is locked only to poll, never across a callback: `stop` takes the
        // subscriber out between two messages, or while one is being handled.
        let next = std::future::poll_fn(|cx| match lock(&slot.0).as_mut() {
            Some(subscriber) => Pin::new(subscriber).poll_next(cx),
            // Stopped.
            None => Poll::Ready(None),
        })
        .await;
        let Some(item) = next else { break };
        let failure = match item {
            Ok(value) => match run(value).await {
                Ok(()) => continue,
                Err(message) => {
                    // Relaxed: a statistic.
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    DeliveryFailure::Panicked(message)
                }
            },
            Err(lagged) => DeliveryFailure::Lagged(lagged.count()),
        };
        report(on_error.as_deref(), id, failure);
    }
}
