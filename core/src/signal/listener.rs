//! Callbacks: synchronous listeners and async handlers with a bounded queue.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use futures::{FutureExt, StreamExt};

use super::error::HandlerError;
use super::inner::Inner;
use super::options::HandlerFailure;
use super::registration::Registration;
use crate::sync::panic_message;
use crate::{Buffer, Pattern, Signal, SignalSink};

pub(crate) type Callback = Box<dyn Fn(&Signal) + Send + Sync>;

pub(crate) struct ListenerShared {
    pub(crate) pattern: Pattern,
    /// `None` once unregistered. Name entries cache their routes (clones of this `Arc`) under
    /// the sink's lock and drop them there when a route is recomputed or a name reclaimed, so
    /// the callback (and whatever it captured: a `Hold` or a `Watch` of the same sink, whose
    /// drop takes that lock) is taken out when the listener is unregistered, outside the lock.
    callback: ArcSwapOption<Callback>,
}

impl ListenerShared {
    pub(crate) fn new(pattern: Pattern, callback: Callback) -> Self {
        Self {
            pattern,
            callback: ArcSwapOption::from_pointee(callback),
        }
    }

    /// Takes the callback out, so that it is dropped by the caller (outside the sink's lock)
    /// or by a call still running it, never with a cached route.
    pub(crate) fn take_callback(&self) -> Option<Arc<Callback>> {
        self.callback.swap(None)
    }

    /// Runs the callback, turning a panic into a report instead of unwinding into `raise`.
    pub(crate) fn call(&self, inner: &Inner, signal: &Signal) {
        // An unregistered listener is not called, even from a route taken before.
        let Some(callback) = self.callback.load_full() else {
            return;
        };
        // Outside any operation: `current_operation()` is `None` in listeners, as documented.
        let outcome = crate::current::outside_any(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| callback(signal)))
        });
        if let Err(panic) = outcome {
            inner.report(HandlerFailure {
                pattern: self.pattern.to_string(),
                signal: signal.name().to_string(),
                panicked: true,
                message: panic_message(panic.as_ref()),
            });
        }
    }
}

/// A registered synchronous listener; dropping it unregisters the callback and drops it, with
/// what it captured, at once (outside the sink's lock: it may capture a [`Hold`](crate::Hold)
/// or a [`Watch`](crate::Watch) of the same sink).
///
/// Made by [`SignalSink::on_signal`]. The callback runs on the thread that raised the
/// signal, after the sink's lock is released, so it may raise again (a reaction) or query the
/// sink. It runs outside any coordinator operation ([`current_operation`](crate::current_operation)
/// is `None` in it, even when a body raised the signal). It should be quick; for slow or async work use
/// [`SignalSink::on_signal_async`]. A panicking callback is caught and reported to the
/// sink's error callback ([`SinkOptions::on_error`](crate::SinkOptions::on_error)); it never
/// disturbs `raise` or the other listeners.
///
/// A listener's own raises run their listeners before returning, on the same thread. So that
/// a reaction which raises what it reacts to (directly or through other sinks) cannot recurse
/// until the stack overflows, listeners nested [`max_depth`](crate::SinkOptions::max_depth)
/// deep on one thread (10 by default) are not called; each call skipped is reported to the
/// error callback. The signal itself is raised. Use
/// [`raise_caused`](SignalSink::raise_caused) to refuse a looping reaction where it starts.
///
/// A listener does not keep the sink alive; it stops when the last handle that does is gone.
#[must_use = "the listener is unregistered as soon as this guard is dropped"]
pub struct Listener {
    pub(crate) registration: Registration,
    pub(crate) pattern: Pattern,
}

impl Listener {
    /// Keeps the listener registered for as long as the sink lives.
    pub fn detach(self) {
        self.registration.detach();
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("pattern", &self.pattern)
            .finish()
    }
}

/// A registered async handler; dropping it stops the handler task.
///
/// The stop is an abort of that task, so it takes effect where the task next waits: the
/// handler futures in flight are dropped there, the signals still queued are never handled,
/// and the queue's subscription leaves the sink when the runtime drops the task (until then
/// [`SinkStats::subscriptions`](crate::SinkStats::subscriptions) may still count it; it
/// never slows `raise`, which does not wait for any subscription).
///
/// Made by [`SignalSink::on_signal_async`]. Matching signals are queued on a bounded buffer
/// (oldest dropped and counted when full, so `raise` never waits) and handled by a task with at
/// most `concurrency` handler futures at a time.
#[must_use = "the handler stops as soon as this guard is dropped"]
pub struct Handler {
    /// `None` once detached: the task then runs on unowned and its memory goes with it.
    task: Option<tokio::task::JoinHandle<()>>,
    pattern: Pattern,
}

impl Handler {
    /// Keeps the handler running for as long as the sink lives. The task's handle is
    /// dropped (which detaches a tokio task, not abort it), so nothing stays behind once the
    /// handler ends with the sink.
    pub fn detach(mut self) {
        self.task = None;
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl SignalSink {
    /// Calls `f` for every signal matching `pattern`, synchronously, on the raising thread,
    /// outside the sink's lock (see [`Listener`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = seen.clone();
    /// let _listener = sink.on_signal("error.*", move |_| {
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// sink.raise("error.db")?;
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// # Ok::<(), ephemeral::RaiseError>(())
    /// ```
    pub fn on_signal(
        &self,
        pattern: &str,
        f: impl Fn(&Signal) + Send + Sync + 'static,
    ) -> Listener {
        let pattern = Pattern::new(pattern);
        let shared = Arc::new(ListenerShared::new(pattern.clone(), Box::new(f)));
        let registration = Registration::new(
            &self.inner,
            pattern.clone(),
            super::routes::Target::Listener(shared),
        );
        Listener {
            registration,
            pattern,
        }
    }

    /// Runs the async `handler` for every signal matching `pattern`, at most `concurrency` at
    /// a time, from a bounded queue of `buffer` signals.
    ///
    /// A handler that returns an error or panics is reported to the sink's error callback and
    /// the others carry on. Signals dropped from a full queue are counted in
    /// [`SinkStats::handler_dropped`](crate::SinkStats::handler_dropped).
    ///
    /// A handler that raises a signal its own pattern matches hears it again, and so on for
    /// as long as the handler lives (each round a task hop later: no stack grows, but the
    /// loop never ends by itself). Raise what a handler causes with
    /// [`raise_caused`](crate::SignalSink::raise_caused)`(new, &signal)`: the chain then
    /// stops with [`RaiseError::Propagation`](crate::RaiseError), at once for a name already
    /// among its causes (a cycle), else at the sink's max depth.
    ///
    /// # Errors
    ///
    /// [`HandlerError::NoRuntime`] outside a tokio runtime, [`HandlerError::ZeroConcurrency`]
    /// for a concurrency of zero.
    pub fn on_signal_async<F, Fut, E>(
        &self,
        pattern: &str,
        buffer: Buffer,
        concurrency: usize,
        handler: F,
    ) -> Result<Handler, HandlerError>
    where
        F: Fn(Signal) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        if concurrency == 0 {
            return Err(HandlerError::ZeroConcurrency);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HandlerError::NoRuntime)?;
        let subscription = self.subscribe_with(pattern, buffer);
        let inner = Arc::downgrade(&self.inner);
        let pattern = Pattern::new(pattern);
        let label = pattern.to_string();
        let handler = Arc::new(handler);
        let task = runtime.spawn(subscription.for_each_concurrent(concurrency, move |item| {
            let inner = inner.clone();
            let handler = handler.clone();
            let label = label.clone();
            async move {
                let signal = match item {
                    Ok(signal) => signal,
                    Err(lagged) => {
                        if let Some(inner) = inner.upgrade() {
                            inner.count_handler_dropped(lagged.0);
                        }
                        return;
                    }
                };
                let name = signal.name().to_string();
                let outcome = AssertUnwindSafe(handler(signal)).catch_unwind().await;
                let failure = match outcome {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => (false, e.to_string()),
                    Err(panic) => (true, panic_message(panic.as_ref())),
                };
                if let Some(inner) = inner.upgrade() {
                    inner.report(HandlerFailure {
                        pattern: label,
                        signal: name,
                        panicked: failure.0,
                        message: failure.1,
                    });
                }
            }
        }));
        Ok(Handler {
            task: Some(task),
            pattern,
        })
    }
}
