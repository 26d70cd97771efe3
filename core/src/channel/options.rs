//! `ChannelOptions`: the buffer, overflow, timeout, expiry and error callback of a channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::DeliveryError;
use crate::{Buffer, Overflow};

/// Called for every failed delivery: a send that timed out for one subscriber, a consumer
/// callback that panicked, or a consumer that lagged.
pub type DeliveryErrorCallback = Arc<dyn Fn(&DeliveryError) + Send + Sync>;

/// How a [`Channel`](super::Channel) buffers, waits, expires and reports.
///
/// The defaults: every subscriber gets [`Buffer::default()`] (1024 messages), senders
/// [`Overflow::Wait`] without a timeout, messages never expire, failed deliveries are only
/// counted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::{Buffer, ChannelOptions, Overflow};
///
/// let options = ChannelOptions::default()
///     .buffer(Buffer::bounded(64)?)
///     .overflow(Overflow::Wait)
///     .send_timeout(Duration::from_millis(250))
///     .expire_after(Duration::from_secs(5))
///     .on_error(|failure| eprintln!("{failure}"));
/// # let _ = options;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct ChannelOptions {
    pub(crate) buffer: Buffer,
    pub(crate) overflow: Overflow,
    pub(crate) send_timeout: Option<Duration>,
    pub(crate) expire_after: Option<Duration>,
    pub(crate) on_error: Option<DeliveryErrorCallback>,
}

impl ChannelOptions {
    /// The buffer every subscriber gets unless it asks for its own
    /// ([`Channel::subscribe_with`](super::Channel::subscribe_with)).
    pub fn buffer(mut self, buffer: Buffer) -> Self {
        self.buffer = buffer;
        self
    }

    /// What a sender does when a subscriber's buffer is full: wait ([`Overflow::Wait`], the
    /// default: nothing is lost) or drop that subscriber's oldest message
    /// ([`Overflow::DropOldest`]: the subscriber is told with [`Lagged`](crate::Lagged)).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Bounds how long one `send` may wait for room in full buffers (all subscribers
    /// together). After it, the send fails with
    /// [`SendError::TimedOut`](super::SendError::TimedOut), which gives the message back and
    /// says how many subscribers it reached. Only matters with [`Overflow::Wait`].
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// Messages older than this are skipped and counted as expired, never delivered. Must be
    /// greater than zero.
    pub fn expire_after(mut self, ttl: Duration) -> Self {
        self.expire_after = Some(ttl);
        self
    }

    /// Called for every failed delivery. It runs without any channel lock held; a panic
    /// inside it is caught and ignored.
    pub fn on_error(mut self, callback: impl Fn(&DeliveryError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }
}

impl fmt::Debug for ChannelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelOptions")
            .field("buffer", &self.buffer)
            .field("overflow", &self.overflow)
            .field("send_timeout", &self.send_timeout)
            .field("expire_after", &self.expire_after)
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}
