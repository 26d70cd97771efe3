//! The room on a JetStream limits stream, joined with an ordered consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            // A purge keeps the stream's last sequence: the next message sent carries on
            // from it, and a joiner that had not read what was purged sees the gap (a lag).
            let purged = self.stream.purge().await.or_fail("clear a room")?;
            Ok(purged.purged)
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn join(
        &self,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RoomMessage, Lagged>>, StoreError>> {
        async move {
            // Where the joiner starts is fixed now, before the consumer exists, not at its
            // first read: anything from here on that the room drops before it is read is a
            // lag, never lost silently.
            let mut owed = Owed {
                next: self.start().await?,
                read_age: self.read_age,
            };
            // An ordered consumer delivers the stream in sequence order and, if it misses
            // anything (a reconnect, a lost heartbeat), starts again after the last sequence
            // it delivered: the history and the live messages meet with no gap and no
            // duplicate. What is left as a gap was dropped by the room's bounds. It starts
            // at the stream's first message, never before `owed.next` (the stream only
            // loses messages from its front).
            let config = consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                filter_subject: self.subject.clone(),
                ..Default::default()
            };
            let messages = super::resume::open(&self.stream, config, &self.nats, "join a room")
                .await?
                .messages;
            let joined = messages.flat_map(move |message| {
                let mut out = Vec::with_capacity(2);
                if let Ok(info) = message.info() {
                    let seq = info.stream_sequence;
                    let sent_at = system_time(&info.published);
                    let (lag, deliver) = owed.see(seq, sent_at);
                    out.extend(lag.map(Err));
                    if deliver {
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
                }
                futures::stream::iter(out)
            });
            Ok(joined.boxed())
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }
}

impl NatsRoom {
    /// The first sequence a joiner is owed: the oldest message the room keeps now (young
    /// enough, when the joiner filters by age itself), or the next one sent. Older ones
    /// were gone before it came: not a lag.
    async fn start(&self) -> Result<u64, StoreError> {
        let state = self.stream.get_info().await.or_fail("join a room")?.state;
        let next_sent = state.last_sequence.saturating_add(1);
        if state.messages == 0 {
            return Ok(next_sent);
        }
        let Some(age) = self.read_age else {
            return Ok(state.first_sequence);
        };
        // The server keeps messages up to its 100 ms floor, longer than this age: find the
        // first one young enough. Send times grow with the sequence, and the stream loses
        // messages only from its front, so a binary search over the sequences holds.
        let since = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // The answer is in `lo..=hi`; `hi` is a young message or `next_sent`.
        let (mut lo, mut hi) = (state.first_sequence, next_sent);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self
                .stream
                .get_first_raw_message_by_subject(&self.subject, mid)
                .await
            {
                Ok(m) if m.sequence < hi => {
                    if system_time(&m.time) >= since {
                        hi = m.sequence;
                    } else {
                        lo = m.sequence + 1;
                    }
                }
                // Nothing left from `mid` to `hi`, so nothing before it either (dropped
                // from the front while this looked): `hi` is the oldest kept.
                Ok(_) => lo = hi,
                Err(e) if crate::queue::error::no_message(&e) => lo = hi,
                Err(e) => return Err(e).or_fail("join a room"),
            }
        }
        Ok(hi)
    }
}

/// What a joiner is owed: every message from `next` on, each delivered once, or counted in
/// a `Lagged` when it is gone by the time the joiner reads.
struct Owed {
    /// The next sequence the joiner is owed (fixed first when `join` returns).
    next: u64,
    /// The age the joiner filters by itself (below the server's floor), if any.
    read_age: Option<Duration>,
}

impl Owed {
    /// Message `seq`, sent at `sent_at`, as the consumer delivered it: the lag to report
    /// before it (the owed messages the room dropped), and whether to hand it out.
    fn see(&mut self, seq: u64, sent_at: SystemTime) -> (Option<Lagged>, bool) {
        if seq < self.next {
            // Delivered already, or older than the start: not owed.
            return (None, false);
        }
        let gap = seq - self.next;
        self.next = seq + 1;
        if super::too_old(sent_at, self.read_age) {
            // Dropped by the room's age, as the server would have. It was young when the
            // joiner came (it is not older than the start): a lag, with the gap before it.
            return (Some(Lagged(gap + 1)), false);
        }
        ((gap > 0).then_some(Lagged(gap)), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed(next: u64, read_age: Option<Duration>) -> Owed {
        Owed { next, read_age }
    }

    #[test]
    fn a_gap_before_the_first_message_read_is_a_lag() {
        let now = SystemTime::now();
        let mut o = owed(1, None);
        assert_eq!(o.see(5, now), (Some(Lagged(4)), true));
        assert_eq!(o.see(6, now), (None, true));
        // Delivered again after a consumer reset: once only.
        assert_eq!(o.see(6, now), (None, false));
        assert_eq!(o.see(9, now), (Some(Lagged(2)), true));
    }

    #[test]
    fn messages_older_than_the_start_are_not_owed() {
        let now = SystemTime::now();
        let mut o = owed(7, None);
        assert_eq!(o.see(5, now), (None, false));
        assert_eq!(o.see(6, now), (None, false));
        assert_eq!(o.see(7, now), (None, true));
    }

    #[test]
    fn an_owed_message_too_old_when_read_is_a_lag_with_the_gap_before_it() {
        let age = Duration::from_millis(90);
        let now = SystemTime::now();
        let old = now - Duration::from_secs(1);
        let mut o = owed(3, Some(age));
        assert_eq!(o.see(4, old), (Some(Lagged(2)), false));
        assert_eq!(o.see(5, old), (Some(Lagged(1)), false));
        assert_eq!(o.see(6, now), (None, true));
    }
}
