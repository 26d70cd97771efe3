//! The room on a JetStream limits stream, joined with an ordered consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{consumer, stream};
use bytes::Bytes;
use ephemeral::{Lagged, Name};
use ephemeral_bus::retained::backend::{RoomBackend, check_room};
use ephemeral_bus::retained::{RoomMessage, RoomOptions, StoreError};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::store::system_time;
use super::{OrFail, fnv, resource_name};
use crate::Nats;

/// The sender of a room message (hex).
const SENDER: &str = "Ephemeral-Sender";
/// The bytes a message's one header (its sender) takes on the wire, counted as the server
/// counts it against its `max_payload` (`NATS/1.0\r\n`, `Key: Value\r\n`, `\r\n`).
const SEND_HEADERS: usize = 12 + SENDER.len() + 4 + 16;

/// Stream metadata: the room's full name and its message size bound.
const META_NAME: &str = "ephemeral.name";
const META_MAX_SIZE: &str = "ephemeral.max_message_size";
/// Stream metadata: the room's max age in milliseconds, as asked (the stream's own is at
/// least the server's 100 ms floor).
const META_MAX_AGE: &str = "ephemeral.max_age_ms";

/// A room on the stream `stream`.
pub(crate) struct NatsRoom {
    nats: Nats,
    name: Name,
    options: RoomOptions,
    stream: stream::Stream,
    subject: String,
    /// The age joiners filter by themselves (below the server's floor), if any.
    read_age: Option<Duration>,
}

impl std::fmt::Debug for NatsRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRoom")
            .field("name", &self.name.as_str())
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsRoom {
    pub(crate) async fn open(
        nats: Nats,
        name: &str,
        options: RoomOptions,
    ) -> Result<Self, StoreError> {
        let name = check_room(name, &options)?;
        super::require_jetstream(&nats, "open a room").await?;
        let subject = format!("{}.room.{:016x}", nats.prefix(), fnv(&name));
        let metadata = HashMap::from([
            (META_NAME.to_owned(), name.to_string()),
            (
                META_MAX_SIZE.to_owned(),
                options.get_max_message_size().to_string(),
            ),
            (
                META_MAX_AGE.to_owned(),
                options.get_max_age().as_millis().to_string(),
            ),
        ]);
        let (max_age, _) = super::stream_age(options.get_max_age());
        let mut stream = nats
            .jetstream()
            .get_or_create_stream(stream::Config {
                name: resource_name(nats.prefix(), "ROOM", &name),
                description: Some(format!("ephemeral room {name}")),
                subjects: vec![subject.clone()],
                retention: stream::RetentionPolicy::Limits,
                discard: stream::DiscardPolicy::Old,
                max_messages: i64::try_from(options.get_max_messages()).unwrap_or(i64::MAX),
                max_age,
                metadata,
                ..Default::default()
            })
            .await
            .or_fail("open a room")?;
        // An existing room keeps the options it was created with.
        let config = stream.info().await.or_fail("open a room")?.config.clone();
        let mut options = options
            .max_messages(u64::try_from(config.max_messages).unwrap_or(u64::MAX))
            .max_age(if config.max_age.is_zero() {
                Duration::MAX
            } else {
                config.max_age
            });
        if let Some(size) = config
            .metadata
            .get(META_MAX_SIZE)
            .and_then(|s| s.parse().ok())
        {
            options = options.max_message_size(size);
        }
        // The largest message that fits the server's max_payload with its header: the
        // room's maximum in effect when it is lower than the options'.
        let fits = nats.max_payload().saturating_sub(SEND_HEADERS);
        if options.get_max_message_size() > fits {
            options = options.max_message_size(fits);
        }
        if let Some(ms) = config
            .metadata
            .get(META_MAX_AGE)
            .and_then(|s| s.parse().ok())
            .filter(|&ms| ms > 0)
        {
            options = options.max_age(Duration::from_millis(ms));
        }
        let (_, read_age) = super::stream_age(options.get_max_age());
        Ok(Self {
            nats,
            name,
            options,
            stream,
            subject,
            read_age,
        })
    }
}

impl RoomBackend for NatsRoom {
    fn name(&self) -> &Name {
        &self.name
    }

    fn options(&self) -> &RoomOptions {
        &self.options
    }

    fn send<'a>(&'a self, payload: &'a [u8]) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(SENDER, format!("{:016x}", self.nats.retained_id()).as_str());
            super::check_payload(&self.nats, payload.len(), &headers)?;
            let ack = self
                .nats
                .jetstream()
                .publish_with_headers(
                    self.subject.clone(),
                    headers,
                    Bytes::copy_from_slice(payload),
                )
                .await
                .or_fail("send to a room")?
                .await
                .or_fail("send to a room")?;
            Ok(ack.sequence)
        }
        .boxed()
    }

    fn join(
        &self,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RoomMessage, Lagged>>, StoreError>> {
        async move {
            // An ordered consumer delivers the stream in sequence order and, if it misses
            // anything (a reconnect, a lost heartbeat), starts again after the last sequence
            // it delivered: the history and the live messages meet with no gap and no
            // duplicate. What is left as a gap was dropped by the room's bounds.
            let consumer = self
                .stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: consumer::DeliverPolicy::All,
                    filter_subject: self.subject.clone(),
                    ..Default::default()
                })
                .await
                .or_fail("join a room")?;
            let messages = consumer.messages().await.or_fail("join a room")?;
            let mut last: Option<u64> = None;
            let read_age = self.read_age;
            let joined = messages
                .filter_map(|m| std::future::ready(m.ok()))
                .flat_map(move |message| {
                    let mut out = Vec::with_capacity(2);
                    if let Ok(info) = message.info() {
                        let seq = info.stream_sequence;
                        let sent_at = system_time(&info.published);
                        if last.is_some_and(|l| seq <= l) {
                            // Already delivered.
                            return futures::stream::iter(out);
                        }
                        if super::too_old(sent_at, read_age) {
                            // Dropped by the room's age, as the server would have: before
                            // the first message handed out, gone before this joiner came
                            // (not a lag); after it, a lag, reported here.
                            if let Some(l) = last {
                                out.push(Err(Lagged(seq - l)));
                                last = Some(seq);
                            }
                            return futures::stream::iter(out);
                        }
                        if let Some(l) = last
                            && seq > l + 1
                        {
                            out.push(Err(Lagged(seq - l - 1)));
                        }
                        last = Some(seq);
                        let sender = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(SENDER))
                            .and_then(|v| u64::from_str_radix(v.as_str(), 16).ok())
                            .unwrap_or(0);
                        out.push(Ok(RoomMessage::new(
                            seq,
                            sender,
                            sent_at,
                            Arc::from(&message.payload[..]),
                        )));
                    }
                    futures::stream::iter(out)
                });
            Ok(joined.boxed())
        }
        .boxed()
    }
}
