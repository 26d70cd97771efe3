//! How state frames and polls travel: [`StateTransport`], implemented here for [`Bus`].
//!
//! The exchange needs two exact topics and nothing else: publishers listen for polls and
//! answer on the state topic; watchers listen on the state topic and poll. A transport that
//! can subscribe to one exact topic and publish to one (NATS subjects, say) implements it
//! in a few lines, and the format and the publisher stay as they are.
//!
//! The topics are the transport's own, never user topics: on the bus they travel as its
//! internal broadcasts (frame route 4, heard only by internal subscriptions), and over NATS
//! on the prefix's internal subjects. So `subscribe("*")` and `ephemeral watch '*'` see none
//! of this traffic, a user may publish on a topic spelled `_inspect.poll` without reaching a
//! publisher, and a watcher is never counted as a subscriber.

use std::future::Future;
use std::num::NonZeroUsize;

use ephemeral::{Buffer, Overflow};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::InspectError;
use crate::Bus;

/// The one place the exchange's topics are named: every topic below starts with it.
macro_rules! prefix {
    () => {
        "_inspect"
    };
}

/// The prefix of every topic of the exchange, in the transport's internal namespace.
pub const TOPIC_PREFIX: &str = prefix!();

/// The topic state frames are published on (internal: no user subscription sees it).
pub const STATE_TOPIC: &str = concat!(prefix!(), ".state");

/// The topic watchers poll on (internal: no user subscription sees it).
pub const POLL_TOPIC: &str = concat!(prefix!(), ".poll");

/// The payload of a poll (publishers of version 1 read nothing from it).
pub(crate) const POLL_PAYLOAD: &[u8] = b"{\"version\":1}";

/// Carries state frames and polls between publishers and watchers.
///
/// `send_*` return how many listeners the message reached when the transport knows, `None`
/// when it cannot tell (NATS): a watcher uses the count of polls delivered to know how many
/// publishers to wait for, and without one waits its whole timeout.
pub trait StateTransport: Clone + Send + Sync + 'static {
    /// Starts listening for polls (a publisher's side). One item per poll received; polls
    /// lost to a full buffer may be merged, since one frame answers any number of them.
    fn listen_polls(
        &self,
    ) -> impl Future<Output = Result<BoxStream<'static, ()>, InspectError>> + Send;

    /// Publishes one encoded frame; returns how many watchers it reached, if known.
    fn send_state(
        &self,
        frame: Vec<u8>,
    ) -> impl Future<Output = Result<Option<usize>, InspectError>> + Send;

    /// Starts listening for frames (a watcher's side). Frames lost to a full buffer are
    /// skipped: every frame is a whole state, and the next one replaces it.
    fn listen_states(
        &self,
    ) -> impl Future<Output = Result<BoxStream<'static, bytes::Bytes>, InspectError>> + Send;

    /// Sends one poll; returns how many publishers it reached, if known.
    fn send_poll(&self) -> impl Future<Output = Result<Option<usize>, InspectError>> + Send;

    /// The largest encoded frame [`send_state`](Self::send_state) carries, if the transport
    /// has a limit (the bus's `BusOptions::max_payload`, the NATS server's `max_payload`).
    /// A publisher cuts its samples until a frame fits, rather than having it refused. The
    /// default: no limit.
    fn max_frame(&self) -> Option<usize> {
        None
    }
}

impl StateTransport for Bus {
    async fn listen_polls(&self) -> Result<BoxStream<'static, ()>, InspectError> {
        // One slot, dropping the oldest: polls are interchangeable, and a publisher that is
        // still answering the last one has nothing to gain from a queue of them.
        let polls = self
            .listen_internal(
                POLL_TOPIC,
                Buffer::Bounded(NonZeroUsize::MIN),
                Overflow::DropOldest,
            )
            .await;
        Ok(polls.map(|_| ()).boxed())
    }

    async fn send_state(&self, frame: Vec<u8>) -> Result<Option<usize>, InspectError> {
        Ok(Some(self.broadcast(STATE_TOPIC, frame).await?))
    }

    async fn listen_states(&self) -> Result<BoxStream<'static, bytes::Bytes>, InspectError> {
        let capacity = NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN);
        let states = self
            .listen_internal(STATE_TOPIC, Buffer::Bounded(capacity), Overflow::DropOldest)
            .await;
        Ok(states
            .filter_map(|item| std::future::ready(item.ok().map(|m| m.payload)))
            .boxed())
    }

    async fn send_poll(&self) -> Result<Option<usize>, InspectError> {
        Ok(Some(self.broadcast(POLL_TOPIC, POLL_PAYLOAD).await?))
    }

    fn max_frame(&self) -> Option<usize> {
        Some(self.handle.shared.options.max_payload)
    }
}
