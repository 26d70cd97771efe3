//! `Subscriber`: one subscriber's stream of a channel's messages.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::channel::Inner;
use super::shared::SubShared;
use super::stats::DeliveryStats;
use crate::Lagged;
use crate::lag::Cursor;

/// One subscriber of a [`Channel`](super::Channel): a `Stream<Item = Result<T, Lagged>>`.
///
/// It receives every message sent after it subscribed, in order per publisher. With
/// [`Overflow::DropOldest`](crate::Overflow) a full buffer drops its oldest message and the
/// next item is `Err(Lagged(n))`; then delivery carries on with the oldest retained message.
/// Expired messages are skipped (and counted in [`stats`](Self::stats)), never delivered.
///
/// When the channel closes (explicitly, or when its last [`Channel`](super::Channel) handle
/// is dropped) the subscriber drains what it holds, then the stream ends. Dropping the
/// subscriber unsubscribes it at once: its buffered messages are discarded and senders
/// waiting for room in it carry on.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::Channel;
///
/// let channel = Channel::<u32>::new();
/// let mut readings = channel.subscribe();
/// channel.send(7).await?;
/// channel.close();
///
/// assert_eq!(readings.recv().await, Some(Ok(7)));
/// assert_eq!(readings.recv().await, None); // closed and drained
/// # Ok(())
/// # }
/// ```
#[must_use = "a subscriber receives nothing unless it is polled"]
pub struct Subscriber<T> {
    pub(crate) shared: Arc<SubShared<T>>,
    pub(crate) channel: Weak<Inner<T>>,
    pub(crate) cursor: Cursor<T>,
}

// The cursor's private batch is never pinned: `Subscriber` only hands out owned messages.
impl<T> Unpin for Subscriber<T> {}

impl<T: Clone> Subscriber<T> {
    /// The next message, `Err(Lagged(n))` after a loss, or `None` once the channel is closed
    /// and this subscriber's buffer is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken from the buffer only when the future returns it, so
    /// using `recv` in a `tokio::select!` loop loses nothing.
    pub async fn recv(&mut self) -> Option<Result<T, Lagged>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next buffered item without waiting, or `None` when nothing is buffered (see
    /// [`is_closed`](Self::is_closed) to tell an ended stream apart).
    pub fn try_recv(&mut self) -> Option<Result<T, Lagged>> {
        self.cursor.try_recv().ok()
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Lagged>>> {
        self.cursor.poll_recv(cx)
    }
}

impl<T> Subscriber<T> {
    /// This subscriber's id, as used in [`DeliveryError`](super::DeliveryError) and stats.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Whether no more messages will be added (the channel is closed). Buffered ones can
    /// still be read.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared.ring.is_closed()
    }

    /// What this subscriber received, lost and holds.
    #[must_use]
    pub fn stats(&self) -> DeliveryStats {
        self.shared.stats()
    }

    /// How many messages are buffered now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared.stats().buffered
    }

    /// Whether nothing is buffered now.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Clone> Stream for Subscriber<T> {
    type Item = Result<T, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        if let Some(channel) = self.channel.upgrade() {
            channel.unregister(self.shared.id);
        }
        // The cursor, dropped after this, leaves the ring: its unread messages are discarded
        // for it, and senders never wait for it again.
    }
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("stats", &self.shared.stats())
            .finish()
    }
}
