//! The hand-written `serde` impls of the bus (feature `serde`): messages and options.
//! Stats derive theirs next to their definitions.
//!
//! Time follows `ephemeral::serde_ms`: durations are whole milliseconds (`ttl_ms`,
//! `send_timeout_ms`) and a message's wall-clock timestamp is UNIX milliseconds
//! (`timestamp_ms`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ephemeral::serde_payload::{Payload, PayloadRef};
use ephemeral::{HeaderValue, Headers};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::{BusOptions, Message, MessageKind, Name, ReplyStatus, ServeOptions};

/// Headers as a map in their original order.
struct HeadersView<'a>(&'a [(Arc<str>, HeaderValue)]);

impl Serialize for HeadersView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(&**k, v)?;
        }
        map.end()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
struct MessageView<'a> {
    topic: &'a Name,
    kind: MessageKind,
    payload: PayloadRef<'a>,
    headers: HeadersView<'a>,
    origin: u64,
    id: u64,
    hops: u8,
    timestamp_ms: u64,
    ttl_ms: Option<u64>,
    correlation: Option<u64>,
    reply_status: Option<ReplyStatus>,
}

/// A message as JSON: `topic`, `kind`, `payload` (a string when UTF-8, else an array of
/// bytes), `headers` (a map of scalars), `origin`, `id`, `hops`, `timestamp_ms` (UNIX
/// milliseconds), `ttl_ms` (time left when sent, or `null`), and for requests and replies
/// `correlation` and `reply_status`.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageView {
            topic: self.topic(),
            kind: self.kind(),
            payload: PayloadRef(self.payload()),
            headers: HeadersView(self.headers()),
            origin: self.origin(),
            id: self.id(),
            hops: self.hops(),
            timestamp_ms: unix_ms(self.timestamp()),
            ttl_ms: self
                .ttl()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            correlation: self.correlation(),
            reply_status: self.reply_status(),
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
struct MessageWire {
    topic: Name,
    #[serde(default)]
    payload: Option<Payload>,
    #[serde(default, deserialize_with = "headers_in_order")]
    headers: Vec<(Arc<str>, HeaderValue)>,
    #[serde(default)]
    origin: u64,
    #[serde(default)]
    id: u64,
    #[serde(default)]
    hops: u8,
    #[serde(default)]
    timestamp_ms: Option<u64>,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

/// Reads what `Serialize` writes (only `topic` is required) as a published message, as
/// [`Message::new`] and the `with_*` methods build it: `kind`, `correlation` and
/// `reply_status` belong to the bus's request routing and are ignored. A missing
/// `timestamp_ms` means now.
impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = MessageWire::deserialize(d)?;
        let payload = w.payload.map_or_else(Bytes::new, |p| Bytes::from(p.0));
        let headers: Headers = Arc::from(w.headers);
        let mut m = Message::new(w.topic, payload)
            .with_headers(headers)
            .with_id(w.origin, w.id)
            .with_hops(w.hops)
            .with_ttl(w.ttl_ms.map(Duration::from_millis));
        if let Some(ms) = w.timestamp_ms {
            m = m.with_timestamp(UNIX_EPOCH + Duration::from_millis(ms));
        }
        Ok(m)
    }
}

/// A map of headers, kept in the order written.
fn headers_in_order<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(Arc<str>, HeaderValue)>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(Arc<str>, HeaderValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of header names to scalars")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some((k, v)) = map.next_entry::<String, HeaderValue>()? {
                pairs.push((Arc::from(k), v));
            }
            Ok(pairs)
        }
    }
    d.deserialize_map(Pairs)
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
struct BusOptionsWire {
    dir: Option<PathBuf>,
    max_payload: usize,
    #[serde(with = "ephemeral::serde_ms::duration")]
    send_timeout_ms: Duration,
    peer_queue_bytes: usize,
    #[serde(with = "ephemeral::serde_ms::duration")]
    handshake_timeout_ms: Duration,
}

impl Default for BusOptionsWire {
    fn default() -> Self {
        BusOptions::default().into()
    }
}

impl From<BusOptions> for BusOptionsWire {
    fn from(o: BusOptions) -> Self {
        Self {
            dir: o.dir,
            max_payload: o.max_payload,
            send_timeout_ms: o.send_timeout,
            peer_queue_bytes: o.peer_queue_bytes,
            handshake_timeout_ms: o.handshake_timeout,
        }
    }
}

/// Options as JSON: `dir`, `max_payload`, `send_timeout_ms`, `peer_queue_bytes`,
/// `handshake_timeout_ms`.
impl Serialize for BusOptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BusOptionsWire::from(self.clone()).serialize(s)
    }
}

/// Reads what `Serialize` writes; a missing field keeps its default, and every value goes
/// through its setter, so the setters' bounds hold.
impl<'de> Deserialize<'de> for BusOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = BusOptionsWire::deserialize(d)?;
        let mut o = BusOptions::default()
            .max_payload(w.max_payload)
            .send_timeout(w.send_timeout_ms)
            .peer_queue_bytes(w.peer_queue_bytes)
            .handshake_timeout(w.handshake_timeout_ms);
        if let Some(dir) = w.dir {
            o = o.dir(dir);
        }
        Ok(o)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
struct ServeOptionsWire {
    max_concurrent: usize,
    max_queued: usize,
}

impl Default for ServeOptionsWire {
    fn default() -> Self {
        let o = ServeOptions::default();
        Self {
            max_concurrent: o.get_max_concurrent(),
            max_queued: o.get_max_queued(),
        }
    }
}

/// Options as JSON: `max_concurrent`, `max_queued`.
impl Serialize for ServeOptions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ServeOptionsWire {
            max_concurrent: self.get_max_concurrent(),
            max_queued: self.get_max_queued(),
        }
        .serialize(s)
    }
}

/// Reads what `Serialize` writes, through the setters; a missing field keeps its default.
impl<'de> Deserialize<'de> for ServeOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ServeOptionsWire::deserialize(d)?;
        Ok(ServeOptions::default()
            .max_concurrent(w.max_concurrent)
            .max_queued(w.max_queued))
    }
}
