//! Ordered consumers that start again after the last message delivered as soon as the
//! connection comes back.
//!
//! async-nats's ordered consumer recreates itself when it sees a gap, a deleted consumer or
//! two missed idle heartbeats, but a server that restarted is noticed only that way: a store
//! watch (whose consumer, on a KV stream, saw none of those) delivered nothing for 15 s
//! after a restart, and a room join or a durable subscription for 4 s. Here the consumer is
//! also made again, from the next stream sequence owed, each time the connection is back,
//! so a reader delivers again about as soon as the server answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use ephemeral_bus::retained::StoreError;

use super::OrFail;
use crate::connection::ConnectionState;

/// The pause between two attempts to make the consumer again (the server may still be
/// recovering its streams after a restart).
const RETRY: Duration = Duration::from_millis(250);

/// What [`resumable`] keeps between two messages.
struct Resume {
    stream: stream::Stream,
    config: consumer::pull::OrderedConfig,
    messages: Option<consumer::pull::Ordered>,
    /// The first stream sequence not delivered yet.
    next: u64,
    /// Wakes at every change of the connection (its sender lives in `state`).
    connected: watch::Receiver<bool>,
    state: Arc<ConnectionState>,
    /// The connection's count of connections when the consumer was made: a larger one
    /// means it was lost and made again since (however quickly: changes of `connected`
    /// seen late come together).
    connects: u64,
}

/// A resumable reader opened by [`open`]: its messages, and the name of its first consumer.
pub(crate) struct Opened {
    pub(crate) messages: BoxStream<'static, jetstream::Message>,
    pub(crate) consumer: String,
}

/// Makes an ordered consumer on `stream` with `config` (its pull requests bounded by
/// [`ORDERED_MAX_EXPIRES`](super::ORDERED_MAX_EXPIRES)) and reads it with [`resumable`]: a
/// failure is a backend error while doing `op`.
pub(crate) async fn open(
    stream: &stream::Stream,
    config: consumer::pull::OrderedConfig,
    nats: &crate::Nats,
    op: &'static str,
) -> Result<Opened, StoreError> {
    let config = consumer::pull::OrderedConfig {
        max_expires: super::ORDERED_MAX_EXPIRES,
        ..config
    };
    let consumer = stream.create_consumer(config.clone()).await.or_fail(op)?;
    let info = consumer.cached_info();
    // The first sequence owed: the start asked for, or what the policy starts after (the
    // stream's end for `New`).
    let next = match config.deliver_policy {
        consumer::DeliverPolicy::ByStartSequence { start_sequence } => start_sequence,
        _ => info.delivered.stream_sequence + 1,
    };
    let name = info.name.clone();
    let messages = consumer.messages().await.or_fail(op)?;
    Ok(Opened {
        messages: resumable(stream.clone(), config, messages, next, nats.connection()),
        consumer: name,
    })
}

/// The messages of `messages`, an ordered consumer made on `stream` with `config` whose
/// first message owed is at stream sequence `next`, in stream order, each once: when the
/// connection (`state`) was lost and made again, the consumer is made again from the first
/// sequence not delivered yet (retried every 250 ms until the server takes it). Messages
/// the consumer fails to hand over are skipped, as the callers did.
fn resumable(
    stream: stream::Stream,
    config: consumer::pull::OrderedConfig,
    messages: consumer::pull::Ordered,
    next: u64,
    state: Arc<ConnectionState>,
) -> BoxStream<'static, jetstream::Message> {
    let state = Resume {
        stream,
        config,
        messages: Some(messages),
        next,
        connected: state.connected(),
        connects: state.connects.load(Ordering::Relaxed),
        state,
    };
    futures::stream::unfold(state, |mut s| async move {
        let message = s.next_message().await?;
        Some((message, s))
    })
    .boxed()
}

impl Resume {
    async fn next_message(&mut self) -> Option<jetstream::Message> {
        loop {
            let Some(messages) = self.messages.as_mut() else {
                match remake(self.stream.clone(), self.config.clone(), self.next).await {
                    Some(messages) => self.messages = Some(messages),
                    None => tokio::time::sleep(RETRY).await,
                }
                continue;
            };
            tokio::select! {
                item = messages.next() => match item {
                    None => return None,
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let seq = info.stream_sequence;
                        if seq < self.next {
                            continue;
                        }
                        self.next = seq + 1;
                        return Some(message);
                    }
                    Some(Err(_)) => {}
                },
                // Never an error: `state` keeps the sender alive.
                _ = self.connected.changed() => {
                    // Relaxed: counted before `connected` changes, which woke this.
                    let connects = self.state.connects.load(Ordering::Relaxed);
                    if connects != self.connects {
                        self.connects = connects;
                        self.messages = None;
                    }
                }
            }
        }
    }
}

/// The consumer on `stream` with `config` made again from `next`, or `None` if the server
/// did not take it.
async fn remake(
    stream: stream::Stream,
    config: consumer::pull::OrderedConfig,
    next: u64,
) -> Option<consumer::pull::Ordered> {
    let config = consumer::pull::OrderedConfig {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: next.max(1),
        },
        ..config
    };
    let consumer = stream.create_consumer(config).await.ok()?;
    consumer.messages().await.ok()
}
