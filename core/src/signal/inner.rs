//! `Inner`: what every handle of one sink shares — the window behind its one lock, the
//! sink's fixed limits and the error reporting of its callbacks.

use std::cell::Cell;
use std::sync::Arc;

use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::RaiseError;
use super::options::{ErrorCallback, HandlerFailure, SinkOptions};
use super::routes::Target;
use super::signal::Rare;
use super::state::{Extras, NameKey, State};
use crate::sync::{Mutex, MutexGuard, lock};
use crate::{Buffer, Name, Signal, SignalBuilder};

thread_local! {
    /// How many `run_listeners` calls are running on this thread, one inside the other.
    static LISTENER_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Puts the listener depth back when the listeners of one signal are done.
struct RestoreDepth(usize);

impl Drop for RestoreDepth {
    fn drop(&mut self) {
        LISTENER_DEPTH.set(self.0);
    }
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    /// Hashes names for the window's name table; a copy lives in `State`. Here, a raise
    /// hashes its name before it takes the lock.
    pub(crate) hasher: DefaultHashBuilder,
    state: Mutex<State>,
    max_payload: usize,
    max_headers: usize,
    pub(crate) max_depth: usize,
    pub(crate) subscription_buffer: Buffer,
    on_error: Option<ErrorCallback>,
    handler_failures: AtomicU64,
    handler_dropped: AtomicU64,
    forward_refused: AtomicU64,
}

impl Inner {
    pub(crate) fn new(options: SinkOptions) -> Self {
        // Relaxed: ids only need to be distinct.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let hasher = DefaultHashBuilder::default();
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            hasher: hasher.clone(),
            state: Mutex::new(State::new(&options, hasher)),
            max_payload: options.max_payload,
            max_headers: options.max_headers,
            max_depth: options.max_depth,
            subscription_buffer: options.subscription_buffer,
            on_error: options.on_error,
            handler_failures: AtomicU64::new(0),
            handler_dropped: AtomicU64::new(0),
            forward_refused: AtomicU64::new(0),
        }
    }

    /// The window and its indexes. Nothing user-supplied runs under this lock (listeners run
    /// after it is released), so it never poisons through user code.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Checks a builder against the sink's limits and splits it into name and extras.
    pub(crate) fn split(&self, b: SignalBuilder) -> Result<(Name, Extras), RaiseError> {
        if b.expires_in.is_some_and(|ttl| ttl.is_zero()) {
            return Err(RaiseError::ZeroTimeToLive);
        }
        if let Some(payload) = &b.payload
            && payload.len() > self.max_payload
        {
            return Err(RaiseError::PayloadTooLarge {
                len: payload.len(),
                max: self.max_payload,
            });
        }
        if b.headers.len() > self.max_headers {
            return Err(RaiseError::TooManyHeaders {
                count: b.headers.len(),
                max: self.max_headers,
            });
        }
        for (key, _) in &b.headers {
            if key.is_empty() || key.len() > crate::MAX_HEADER_KEY_LEN {
                return Err(bad_header_key(key));
            }
        }
        let headers = (!b.headers.is_empty()).then(|| Arc::from(b.headers));
        Ok((
            b.name,
            Extras {
                operation: b.operation,
                expires_in: b.expires_in,
                flags: b.flags,
                rare: Rare {
                    key: b.key,
                    expires_at: None,
                    payload: b.payload,
                    headers,
                    lineage: b.lineage,
                    route: b.route,
                },
            },
        ))
    }

    pub(crate) fn unregister(&self, id: u64) {
        let removed = {
            let mut state = self.lock();
            let removed = state.registry.remove(id);
            // What a closing subscription dropped stays counted in the sink's total.
            if let Some(Target::Subscriber(sub)) = &removed {
                let dropped = sub.ring.reader_stats(&sub.reader).dropped;
                state.counters.closed_subscriber_dropped += dropped;
            }
            removed
        };
        // Dropped outside the lock: a listener's captured state may own another sink handle,
        // or a `Hold` or `Watch` of this one, whose drop takes the lock. Cached routes keep
        // the listener itself and drop it under the lock later: its callback goes now.
        if let Some(Target::Listener(listener)) = &removed {
            drop(listener.take_callback());
        }
        drop(removed);
    }

    /// The key under which `name` is found in the window's name table.
    pub(crate) fn key<'a>(&self, name: &'a str, known: Option<&'a Name>) -> NameKey<'a> {
        NameKey {
            text: name,
            hash: self.hasher.hash_one(name),
            known,
        }
    }

    pub(crate) fn release(&self, sequence: u64) {
        self.lock().release(sequence);
    }

    /// Runs the listeners of `route` on `signal`, after the lock was released.
    ///
    /// A listener that raises runs the listeners of that signal before it returns, on the same
    /// thread; a reaction that raises what it reacts to (directly, or through other sinks)
    /// would recurse until the stack overflows. So listeners nested `max_depth` deep on this
    /// thread, whatever the sinks, are not called: each is reported to the error callback.
    pub(crate) fn run_listeners(&self, signal: &Signal, route: Option<Arc<[Target]>>) {
        let Some(route) = route else {
            return;
        };
        let mut listeners = route.iter().filter_map(|target| match target {
            Target::Listener(listener) => Some(listener),
            _ => None,
        });
        let Some(first) = listeners.next() else {
            return;
        };
        let depth = LISTENER_DEPTH.get();
        if depth >= self.max_depth {
            for listener in std::iter::once(first).chain(listeners) {
                self.report(HandlerFailure {
                    pattern: listener.pattern.to_string(),
                    signal: signal.name().to_string(),
                    panicked: false,
                    message: format!(
                        "listener not called: listeners are nested {depth} deep on this thread, this sink's max_depth: a listener that raises is probably looping"
                    ),
                });
            }
            return;
        }
        LISTENER_DEPTH.set(depth + 1);
        // Restored even if a listener unwinds (a panic in the error callback is caught too,
        // but a guard costs nothing).
        let _restore = RestoreDepth(depth);
        for listener in std::iter::once(first).chain(listeners) {
            listener.call(self, signal);
        }
    }

    pub(crate) fn report(&self, failure: HandlerFailure) {
        // Relaxed: a statistic.
        self.handler_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            pattern = %failure.pattern,
            signal = %failure.signal,
            panicked = failure.panicked,
            message = %failure.message,
            "signal handler failed"
        );
        if let Some(on_error) = &self.on_error {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_error(&failure)));
        }
    }

    pub(crate) fn count_handler_dropped(&self, n: u64) {
        // Relaxed: a statistic.
        self.handler_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_forward_refused(&self) {
        // Relaxed: a statistic.
        self.forward_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// (handler failures, signals dropped by handlers, forwarded copies a target refused)
    pub(crate) fn handler_counts(&self) -> (u64, u64, u64) {
        // Relaxed: statistics, read for display; no other memory depends on them.
        (
            self.handler_failures.load(Ordering::Relaxed),
            self.handler_dropped.load(Ordering::Relaxed),
            self.forward_refused.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Inner {
    /// The last handle that keeps the sink alive is gone: its subscriptions end after what
    /// they hold, and its watches see this last change (every live signal is gone).
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, target) in state.registry.targets() {
            match target {
                Target::Subscriber(sub) => sub.ring.close(),
                Target::Watcher(watch) => watch.bump(),
                Target::Listener(_) => {}
            }
        }
    }
}

/// The error for a header key that is empty or too long, the key cut for the message.
#[cold]
fn bad_header_key(key: &str) -> RaiseError {
    let reason = if key.is_empty() {
        "empty".to_owned()
    } else {
        format!("{} bytes long", key.len())
    };
    let mut shown: String = key.chars().take(64).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    RaiseError::BadHeaderKey { key: shown, reason }
}
