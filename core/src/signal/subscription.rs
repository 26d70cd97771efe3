//! `Subscription`: a stream of the signals raised on a sink that match a pattern.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use futures_core::Stream;

use super::sink::Inner;
use crate::{Lagged, Pattern, Signal};

/// The receiving half shared between the sink (which pushes under its lock) and the
/// subscription (which pops). Its mutex is a leaf: nothing else is locked while it is held.
pub(crate) struct SubShared {
    pub(crate) pattern: Pattern,
    ring: Mutex<Ring>,
    waker: AtomicWaker,
}

struct Ring {
    buffer: VecDeque<Signal>,
    capacity: Option<usize>,
    /// Dropped since the subscriber was last told.
    unreported: u64,
    dropped: u64,
    delivered: u64,
    closed: bool,
}

impl SubShared {
    pub(crate) fn new(pattern: Pattern, capacity: Option<usize>) -> Self {
        Self {
            pattern,
            ring: Mutex::new(Ring {
                buffer: VecDeque::with_capacity(capacity.unwrap_or(16).min(1024)),
                capacity,
                unreported: 0,
                dropped: 0,
                delivered: 0,
                closed: false,
            }),
            waker: AtomicWaker::new(),
        }
    }

    /// Buffers `signal`, dropping the oldest buffered one when full: `raise` never waits.
    pub(crate) fn push(&self, signal: Signal) {
        {
            let mut ring = lock(&self.ring);
            if ring.closed {
                return;
            }
            if ring.capacity.is_some_and(|cap| ring.buffer.len() >= cap) {
                ring.buffer.pop_front();
                ring.unreported += 1;
                ring.dropped += 1;
            }
            ring.buffer.push_back(signal);
            ring.delivered += 1;
        }
        self.waker.wake();
    }

    pub(crate) fn close(&self) {
        lock(&self.ring).closed = true;
        self.waker.wake();
    }

    pub(crate) fn counters(&self) -> (u64, u64, usize) {
        let ring = lock(&self.ring);
        (ring.delivered, ring.dropped, ring.buffer.len())
    }

    fn pop(&self) -> Poll<Option<Result<Signal, Lagged>>> {
        let mut ring = lock(&self.ring);
        if ring.unreported > 0 {
            let n = std::mem::take(&mut ring.unreported);
            return Poll::Ready(Some(Err(Lagged(n))));
        }
        match ring.buffer.pop_front() {
            Some(signal) => Poll::Ready(Some(Ok(signal))),
            None if ring.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the ring's data is
/// still consistent (every update is a single push or pop), so carry on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The signals raised on a sink that match a pattern, as a
/// `Stream<Item = Result<Signal, Lagged>>`.
///
/// Each subscription has its own bounded buffer with [`Overflow::DropOldest`](crate::Overflow)
/// semantics, so [`raise`](crate::SignalSink::raise) never waits for a slow reader: when the
/// buffer is full the oldest buffered signal is dropped, and the next item the reader gets is
/// `Err(Lagged(n))` saying how many it missed; delivery then carries on with the oldest retained
/// signal. Signals arrive in sequence order. Held conditions are delivered when taken.
///
/// Dropping the subscription unsubscribes. When every handle of the sink is gone the stream
/// ends after the buffered signals.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
///
/// let sink = SignalSink::default();
/// let mut errors = sink.subscribe("error.*");
/// sink.raise("error.db")?;
/// sink.raise("info.started")?;
///
/// let first = errors.recv().await.expect("sink is alive")?;
/// assert_eq!(first.name(), "error.db");
/// assert!(errors.try_recv().is_none());
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscription receives nothing unless it is polled"]
pub struct Subscription {
    pub(crate) shared: Arc<SubShared>,
    pub(crate) sink: Weak<Inner>,
    pub(crate) id: u64,
}

impl Subscription {
    /// The next signal, `Err(Lagged(n))` after a loss, or `None` once the sink is gone and the
    /// buffer is empty.
    pub async fn recv(&mut self) -> Option<Result<Signal, Lagged>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next buffered item without waiting, or `None` when nothing is buffered.
    pub fn try_recv(&mut self) -> Option<Result<Signal, Lagged>> {
        match self.shared.pop() {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// The pattern this subscription matches.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.shared.pattern
    }

    /// How many signals this subscription has lost to a full buffer so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.counters().1
    }

    /// How many signals are buffered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.counters().2
    }

    /// Whether nothing is buffered now.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Stream for Subscription {
    type Item = Result<Signal, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.shared.pop() {
            return Poll::Ready(item);
        }
        // Register before the second look, so a push between the two wakes us.
        self.shared.waker.register(cx.waker());
        self.shared.pop()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(inner) = self.sink.upgrade() {
            inner.unregister(self.id);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (delivered, dropped, buffered) = self.shared.counters();
        f.debug_struct("Subscription")
            .field("pattern", &self.shared.pattern)
            .field("delivered", &delivered)
            .field("dropped", &dropped)
            .field("buffered", &buffered)
            .finish()
    }
}
