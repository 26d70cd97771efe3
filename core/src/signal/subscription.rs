//! `Subscription`: a stream of the signals raised on a sink that match a pattern.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::registration::Registration;
use crate::lag::{Cursor, ReaderShared, Ring};
use crate::{Lagged, Pattern, Signal};

/// What the sink knows of one subscription: its pattern, the ring it reads (shared with the
/// other subscriptions of the same pattern and buffer; the sink pushes into it under its
/// lock) and its reader's counts there.
pub(crate) struct SubShared {
    pub(crate) pattern: Pattern,
    pub(crate) ring: Arc<Ring<Signal>>,
    pub(crate) reader: Arc<ReaderShared>,
}

/// The signals raised on a sink that match a pattern, as a
/// `Stream<Item = Result<Signal, Lagged>>`.
///
/// Each subscription has its own buffer (bounded by the sink's
/// [`subscription_buffer`](crate::SinkOptions::subscription_buffer), or as given to
/// [`subscribe_with`](crate::SignalSink::subscribe_with); `Buffer::Unbounded` keeps
/// everything until read, so memory then grows with a reader that falls behind) with
/// [`Overflow::DropOldest`](crate::Overflow) semantics (subscriptions with the same pattern and buffer size share one
/// [`lag::Ring`](crate::lag::Ring), each reading at its own cursor, so a raise stores the
/// signal once for all of them; each still sees exactly what a buffer of its own would
/// give it), so [`raise`](crate::SignalSink::raise) never waits for a slow reader: when the
/// buffer is full the oldest buffered signal is dropped, and the next item the reader gets is
/// `Err(Lagged(n))` saying how many it missed; delivery then carries on with the oldest retained
/// signal. Signals arrive in sequence order. Held conditions are delivered when taken.
///
/// A signal is never delivered after it stopped being live: one whose time ran out while it
/// waited in the buffer (its own time to live, [`expires_in`](crate::SignalBuilder::expires_in),
/// else the sink's max age as it was when the signal was raised) is skipped and counted in
/// [`expired`](Self::expired), apart from lag. Held conditions never expire. (A signal that
/// left the window early, evicted by capacity or retracted, is still delivered: it was live
/// when raised, and the subscription keeps its own copy.)
///
/// Dropping the subscription unsubscribes and frees its buffer. A subscription does not keep
/// the sink alive: when the last handle that does is gone, the stream ends after the buffered
/// signals.
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
    pub(crate) cursor: Cursor<Signal>,
    /// Unregisters when dropped, after the cursor left its ring (fields drop in order).
    pub(crate) _registration: Registration,
}

impl Subscription {
    /// The next signal, `Err(Lagged(n))` after a loss, or `None` once the sink is gone and the
    /// buffer is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a signal is taken from the buffer only when the future returns it, so
    /// using `recv` in a `tokio::select!` loop loses nothing.
    pub async fn recv(&mut self) -> Option<Result<Signal, Lagged>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next buffered item without waiting, or `None` when nothing is buffered (see
    /// [`is_closed`](Self::is_closed) to tell an ended subscription apart).
    pub fn try_recv(&mut self) -> Option<Result<Signal, Lagged>> {
        self.cursor.try_recv().ok()
    }

    /// Whether nothing more will arrive: the sink is gone (every handle that kept it alive
    /// was dropped). Signals still buffered can be read; once they are, the stream has
    /// ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// let mut errors = sink.subscribe("error.*");
    /// sink.raise("error.db")?;
    /// assert!(!errors.is_closed());
    /// drop(sink);
    /// assert!(errors.is_closed());
    /// assert!(errors.try_recv().is_some()); // still buffered
    /// assert!(errors.try_recv().is_none()); // and now ended, not merely empty
    /// # Ok::<(), ephemeral::RaiseError>(())
    /// ```
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.ring.is_closed()
    }

    /// The pattern this subscription matches.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.shared.pattern
    }

    /// How many signals this subscription has lost to a full buffer so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.cursor.stats().dropped
    }

    /// How many signals expired while they waited in this subscription's buffer (skipped,
    /// never delivered).
    #[must_use]
    pub fn expired(&self) -> u64 {
        self.cursor.stats().expired
    }

    /// How many signals are buffered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cursor.stats().buffered
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
        self.get_mut().cursor.poll_recv(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = self.cursor.stats();
        f.debug_struct("Subscription")
            .field("pattern", &self.shared.pattern)
            .field("delivered", &stats.pushed)
            .field("dropped", &stats.dropped)
            .field("expired", &stats.expired)
            .field("buffered", &stats.buffered)
            .finish()
    }
}
