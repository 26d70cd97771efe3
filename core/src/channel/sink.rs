//! [`ChannelSink`]: a [`Channel`]'s sending side as a [`futures::Sink`].

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;

use super::{Channel, SendError};

/// A [`Channel`]'s sending side as a [`futures::Sink`], so `stream.forward(channel.sink())`
/// publishes a stream with the channel's back-pressure.
///
/// Each item is one [`Channel::send`]: `start_send` begins it, and `poll_ready` or
/// `poll_flush` wait until it is done (with [`Overflow::Wait`](crate::Overflow), until every
/// subscriber had room), so at most one send is in flight per sink. A failed send (the
/// channel closed, or its send timeout passed) is reported by the next `poll_ready` or
/// `poll_flush`, with the message given back in the [`SendError`]. A `start_send` while a
/// send is still in flight (no ready `poll_ready` in between) is refused with
/// [`SendError::NotReady`], its message given back. Closing the sink flushes
/// it but does **not** close the channel, which other senders share; call
/// [`Channel::close`] for that.
///
/// # Examples
///
/// ```
/// use ephemeral::Channel;
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let channel: Channel<u32> = Channel::new();
/// let mut subscriber = channel.subscribe();
/// futures::stream::iter(1..=3u32)
///     .map(Ok)
///     .forward(channel.sink())
///     .await?;
/// for expected in 1..=3 {
///     assert_eq!(subscriber.recv().await, Some(Ok(expected)));
/// }
/// # Ok(())
/// # }
/// ```
#[must_use = "a sink does nothing unless items are sent into it"]
pub struct ChannelSink<T> {
    channel: Channel<T>,
    sending: Option<BoxFuture<'static, Result<usize, SendError<T>>>>,
}

impl<T: Clone + Send + 'static> ChannelSink<T> {
    /// Drives the send in flight, if any, to its end.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError<T>>> {
        if let Some(sending) = self.sending.as_mut() {
            let sent = ready!(sending.as_mut().poll(cx));
            self.sending = None;
            sent?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T> Clone for ChannelSink<T> {
    /// Another sink into the same channel, with no send in flight.
    fn clone(&self) -> Self {
        Self {
            channel: self.channel.clone(),
            sending: None,
        }
    }
}

impl<T> fmt::Debug for ChannelSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSink")
            .field("sending", &self.sending.is_some())
            .finish_non_exhaustive()
    }
}

// No field is structurally pinned: the send in flight is boxed.
impl<T> Unpin for ChannelSink<T> {}

impl<T: Clone + Send + 'static> futures::Sink<T> for ChannelSink<T> {
    type Error = SendError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_sent(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = self.get_mut();
        // The `Sink` contract asks for `poll_ready` first; without it a send may still be in
        // flight, and replacing it would drop its message unsent. The new one is given back.
        if this.sending.is_some() {
            return Err(SendError::NotReady(item));
        }
        let channel = this.channel.clone();
        this.sending = Some(Box::pin(async move { channel.send(item).await }));
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_sent(cx)
    }
}

impl<T: Clone + Send + 'static> Channel<T> {
    /// This channel's sending side as a [`futures::Sink`] (see [`ChannelSink`]).
    pub fn sink(&self) -> ChannelSink<T> {
        ChannelSink {
            channel: self.clone(),
            sending: None,
        }
    }
}
