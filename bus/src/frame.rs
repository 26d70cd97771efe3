//! The wire format: how frames travel between peers, and the pure decoder.
//!
//! Every frame starts with a 4-byte little-endian length (of what follows), then the format
//! [`VERSION`] byte and a kind byte. A frame with another version, an unknown kind, a bad name,
//! a truncated field or trailing bytes is refused with a [`FrameError`]; the receiving peer
//! counts it and carries on with the next frame. [`decode`] is a pure function over bytes, so
//! it can be fuzzed on its own.
//!
//! | kind | body (little-endian) |
//! |---|---|
//! | 1 message | id u64, origin u64, hops u8, timestamp µs since the epoch u64, remaining ttl µs u64 (`u64::MAX` = none), route, topic (u8 len + bytes), headers (u8 count; each: u8 key len + key, u8 tag, value), payload (u32 len + bytes) |
//! | 2 hello | peer id u64, subscriptions (u16 count; each: u8 interest, u16 len + pattern) |
//! | 3 subscriptions | sequence u64, subscriptions |
//! | 4 subscriptions ack | sequence u64 |
//! | 5 lag | topic, dropped count u64 |
//!
//! Header value tags: 0 bool (u8), 1 int (i64), 2 float (f64 bits), 3 string (u16 len + bytes).
//!
//! A route is one byte: 0 for a published message; 1 a request, 2 a reply, 3 a cancel, each
//! followed by the addressee peer u64, the sender peer u64 and the correlation id u64, and
//! for a reply its status u8 (1 ok, 2 item, 3 end, 4 failed, 5 busy, 6 gone; see
//! [`ReplyStatus`]); 4 the bus's own broadcast (the state exchange of
//! [`inspect`](crate::inspect)), with nothing after it. Requests, replies and broadcasts
//! never reach subscriptions, so no user topic is taken by them: a server registers with
//! interest [`Interest::Serve`], an observer of requests and replies with
//! [`Interest::Observe`], a listener to broadcasts with [`Interest::Internal`].
//!
//! Interest bytes: 0 messages, 1 serve, 2 observe, 3 internal.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ephemeral::{HeaderValue, Name, NameError};

use crate::message::{Leg, Route};
use crate::{Message, ReplyStatus};

/// The frame format version this build speaks; frames with any other version are refused.
pub const VERSION: u8 = 3;

/// Bytes of the length prefix that starts every frame.
pub const LEN_PREFIX: usize = 4;

const KIND_MESSAGE: u8 = 1;
const KIND_HELLO: u8 = 2;
const KIND_SUBS: u8 = 3;
const KIND_SUBS_ACK: u8 = 4;
const KIND_LAG: u8 = 5;
const NO_TTL: u64 = u64::MAX;

/// What a subscription entry announces: which traffic the peer wants on its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interest {
    /// Published messages whose topic matches the pattern (a subscription).
    Messages,
    /// Requests on exactly the topic the pattern spells (a server).
    Serve,
    /// Copies of requests and replies whose topic matches the pattern (an observer).
    Observe,
    /// The bus's own broadcasts whose topic matches the pattern (the state exchange of
    /// [`inspect`](crate::inspect)): a namespace apart from user topics.
    Internal,
}

impl Interest {
    fn to_byte(self) -> u8 {
        match self {
            Interest::Messages => 0,
            Interest::Serve => 1,
            Interest::Observe => 2,
            Interest::Internal => 3,
        }
    }

    fn from_byte(byte: u8) -> Result<Self, FrameError> {
        match byte {
            0 => Ok(Interest::Messages),
            1 => Ok(Interest::Serve),
            2 => Ok(Interest::Observe),
            3 => Ok(Interest::Internal),
            other => Err(FrameError::Interest(other)),
        }
    }
}

/// One announced subscription: its interest and its pattern.
pub type Announced = (Interest, String);

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// A published message.
    Message(Message),
    /// The first frame on a connection: who the sender is and what it subscribes to.
    Hello {
        /// The sending peer's id.
        peer: u64,
        /// The sender's subscriptions, one entry per subscription.
        subscriptions: Vec<Announced>,
    },
    /// The sender's subscriptions changed; the receiver answers with [`Frame::SubscriptionsAck`].
    Subscriptions {
        /// Increases with every change, so acknowledgements can be matched.
        sequence: u64,
        /// The full new list of subscriptions.
        subscriptions: Vec<Announced>,
    },
    /// The receiver of [`Frame::Subscriptions`] now routes by that list.
    SubscriptionsAck {
        /// The sequence acknowledged.
        sequence: u64,
    },
    /// The sender dropped `count` messages on `topic` for the receiver (its queue stayed full
    /// past the bounded wait); the receiver reports them as `Lagged`.
    Lag {
        /// The topic of the dropped messages.
        topic: Name,
        /// How many were dropped.
        count: u64,
    },
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than a field needs.
    #[error("frame truncated: needed {needed} more bytes at offset {at}")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Bytes missing.
        needed: usize,
    },
    /// The length prefix does not match the bytes given.
    #[error("frame length prefix says {declared} bytes but {actual} follow it")]
    Length {
        /// What the prefix says.
        declared: usize,
        /// What follows.
        actual: usize,
    },
    /// The frame was written by another format version.
    #[error(
        "frame format version {found} is not the supported version {VERSION}: run the same ephemeral-bus version in every peer"
    )]
    Version {
        /// The version found.
        found: u8,
    },
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// An unknown header value tag.
    #[error("unknown header value tag {0}")]
    HeaderTag(u8),
    /// An unknown route marker or reply status.
    #[error("unknown route byte {0}")]
    Route(u8),
    /// An unknown subscription interest.
    #[error("unknown subscription interest {0}")]
    Interest(u8),
    /// A string field is not UTF-8.
    #[error("a string field at offset {at} is not valid UTF-8")]
    Utf8 {
        /// Offset of the field.
        at: usize,
    },
    /// The topic is not a valid name.
    #[error("the topic is not a valid name: {0}")]
    Topic(#[from] NameError),
    /// Bytes were left over after the last field.
    #[error("{0} unexpected bytes after the end of the frame")]
    Trailing(usize),
}

/// Decodes one complete frame, length prefix included.
///
/// # Errors
///
/// Returns a [`FrameError`] saying what is wrong; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    decode_cached(bytes, &mut TopicCache::default())
}

/// The last topic decoded on a connection: a stream of messages on one topic then costs no
/// name validation or allocation per message.
#[derive(Default)]
pub(crate) struct TopicCache {
    last: Option<Name>,
    empty_headers: Option<ephemeral::Headers>,
}

/// [`decode`], reusing the previous topic when it repeats.
pub(crate) fn decode_cached(bytes: &[u8], cache: &mut TopicCache) -> Result<Frame, FrameError> {
    let mut r = Reader {
        bytes,
        at: 0,
        cache,
    };
    let declared = r.u32()? as usize;
    let actual = bytes.len() - LEN_PREFIX;
    if declared != actual {
        return Err(FrameError::Length { declared, actual });
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(FrameError::Version { found: version });
    }
    let frame = match r.u8()? {
        KIND_MESSAGE => Frame::Message(r.message()?),
        KIND_HELLO => Frame::Hello {
            peer: r.u64()?,
            subscriptions: r.patterns()?,
        },
        KIND_SUBS => Frame::Subscriptions {
            sequence: r.u64()?,
            subscriptions: r.patterns()?,
        },
        KIND_SUBS_ACK => Frame::SubscriptionsAck { sequence: r.u64()? },
        KIND_LAG => Frame::Lag {
            topic: r.topic()?,
            count: r.u64()?,
        },
        other => return Err(FrameError::Kind(other)),
    };
    if r.at != bytes.len() {
        return Err(FrameError::Trailing(bytes.len() - r.at));
    }
    Ok(frame)
}

/// Appends the encoding of `frame` to `out`.
///
/// Encoding cannot fail for values built through this crate's API: names are at most 255
/// bytes, header keys and string values longer than their length fields are cut at a
/// character boundary, and payloads are bounded by the bus's maximum well below 4 GiB.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = begin(out);
    match frame {
        Frame::Message(m) => {
            out.push(KIND_MESSAGE);
            put_message_body(&MessageRef::of(m), out);
        }
        Frame::Hello {
            peer,
            subscriptions,
        } => {
            out.push(KIND_HELLO);
            out.extend_from_slice(&peer.to_le_bytes());
            put_patterns(subscriptions, out);
        }
        Frame::Subscriptions {
            sequence,
            subscriptions,
        } => {
            out.push(KIND_SUBS);
            out.extend_from_slice(&sequence.to_le_bytes());
            put_patterns(subscriptions, out);
        }
        Frame::SubscriptionsAck { sequence } => {
            out.push(KIND_SUBS_ACK);
            out.extend_from_slice(&sequence.to_le_bytes());
        }
        Frame::Lag { topic, count } => {
            out.push(KIND_LAG);
            put_short(topic.as_bytes(), out);
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    finish(start, out);
}

fn begin(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(VERSION);
    start
}

fn finish(start: usize, out: &mut [u8]) {
    let len = u32::try_from(out.len() - start - LEN_PREFIX).unwrap_or(u32::MAX);
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
}

/// A message's fields by reference, so a publisher can encode without building a
/// [`Message`] (no payload copy into a shared buffer when no local subscriber needs one).
pub(crate) struct MessageRef<'a> {
    pub(crate) topic: &'a Name,
    pub(crate) payload: &'a [u8],
    pub(crate) headers: &'a [(Arc<str>, HeaderValue)],
    pub(crate) id: u64,
    pub(crate) origin: u64,
    pub(crate) hops: u8,
    pub(crate) timestamp: SystemTime,
    pub(crate) ttl: Option<Duration>,
    pub(crate) route: Option<Route>,
}

impl<'a> MessageRef<'a> {
    pub(crate) fn of(m: &'a Message) -> Self {
        Self {
            topic: &m.topic,
            payload: &m.payload,
            headers: &m.headers,
            id: m.id,
            origin: m.origin,
            hops: m.hops,
            timestamp: m.timestamp,
            ttl: m.ttl,
            route: m.route(),
        }
    }
}

/// Appends the frame of a message given by reference.
pub(crate) fn encode_message(m: &MessageRef<'_>, out: &mut Vec<u8>) {
    let start = begin(out);
    out.push(KIND_MESSAGE);
    put_message_body(m, out);
    finish(start, out);
}

fn put_message_body(m: &MessageRef<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&m.id.to_le_bytes());
    out.extend_from_slice(&m.origin.to_le_bytes());
    out.push(m.hops);
    out.extend_from_slice(&micros_since_epoch(m.timestamp).to_le_bytes());
    let ttl = m.ttl.map_or(NO_TTL, |t| {
        u64::try_from(t.as_micros()).unwrap_or(NO_TTL - 1)
    });
    out.extend_from_slice(&ttl.to_le_bytes());
    match &m.route {
        None => out.push(0),
        Some(route) if route.leg == Leg::Broadcast => out.push(4),
        Some(route) => {
            out.push(match route.leg {
                Leg::Request => 1,
                Leg::Reply(_) => 2,
                Leg::Cancel => 3,
                Leg::Broadcast => 4,
            });
            out.extend_from_slice(&route.to.to_le_bytes());
            out.extend_from_slice(&route.from.to_le_bytes());
            out.extend_from_slice(&route.correlation.to_le_bytes());
            if let Leg::Reply(status) = route.leg {
                out.push(status.to_byte());
            }
        }
    }
    put_short(m.topic.as_bytes(), out);
    let headers = &m.headers[..m.headers.len().min(255)];
    out.push(headers.len() as u8);
    for (key, value) in headers {
        put_short(cut(key, 255).as_bytes(), out);
        match value {
            HeaderValue::Bool(b) => {
                out.push(0);
                out.push(u8::from(*b));
            }
            HeaderValue::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_le_bytes());
            }
            HeaderValue::Float(x) => {
                out.push(2);
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            HeaderValue::Str(s) => {
                out.push(3);
                put_long16(cut(s, usize::from(u16::MAX)).as_bytes(), out);
            }
        }
    }
    let len = u32::try_from(m.payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&m.payload[..len as usize]);
}

fn put_patterns(patterns: &[Announced], out: &mut Vec<u8>) {
    let patterns = &patterns[..patterns.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(patterns.len() as u16).to_le_bytes());
    for (interest, p) in patterns {
        out.push(interest.to_byte());
        put_long16(cut(p, usize::from(u16::MAX)).as_bytes(), out);
    }
}

fn put_short(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_long16(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn micros_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

struct Reader<'a, 'c> {
    bytes: &'a [u8],
    at: usize,
    cache: &'c mut TopicCache,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let rest = self.bytes.len() - self.at;
        if rest < n {
            return Err(FrameError::Truncated {
                at: self.at,
                needed: n - rest,
            });
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.array().map(u64::from_le_bytes)
    }

    fn str(&mut self, len: usize) -> Result<&'a str, FrameError> {
        let at = self.at;
        std::str::from_utf8(self.take(len)?).map_err(|_| FrameError::Utf8 { at })
    }

    fn topic(&mut self) -> Result<Name, FrameError> {
        let len = usize::from(self.u8()?);
        let at = self.at;
        let raw = self.take(len)?;
        if let Some(last) = &self.cache.last
            && last.as_bytes() == raw
        {
            return Ok(last.clone());
        }
        let text = std::str::from_utf8(raw).map_err(|_| FrameError::Utf8 { at })?;
        let name = Name::new(text)?;
        self.cache.last = Some(name.clone());
        Ok(name)
    }

    fn patterns(&mut self) -> Result<Vec<Announced>, FrameError> {
        let count = self.u16()?;
        let mut out = Vec::with_capacity(usize::from(count).min(64));
        for _ in 0..count {
            let interest = Interest::from_byte(self.u8()?)?;
            let len = usize::from(self.u16()?);
            out.push((interest, self.str(len)?.to_owned()));
        }
        Ok(out)
    }

    fn route(&mut self) -> Result<Option<Route>, FrameError> {
        let kind = self.u8()?;
        if kind == 0 {
            return Ok(None);
        }
        if kind == 4 {
            return Ok(Some(Route::broadcast()));
        }
        if kind > 4 {
            return Err(FrameError::Route(kind));
        }
        let to = self.u64()?;
        let from = self.u64()?;
        let correlation = self.u64()?;
        let leg = match kind {
            1 => Leg::Request,
            3 => Leg::Cancel,
            _ => {
                let byte = self.u8()?;
                Leg::Reply(ReplyStatus::from_byte(byte).ok_or(FrameError::Route(byte))?)
            }
        };
        Ok(Some(Route {
            to,
            from,
            correlation,
            leg,
        }))
    }

    fn message(&mut self) -> Result<Message, FrameError> {
        let id = self.u64()?;
        let origin = self.u64()?;
        let hops = self.u8()?;
        let micros = self.u64()?;
        let ttl = self.u64()?;
        let route = self.route()?;
        let topic = self.topic()?;
        let count = self.u8()?;
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = usize::from(self.u8()?);
            let key: Arc<str> = Arc::from(self.str(len)?);
            let value = match self.u8()? {
                0 => HeaderValue::Bool(self.u8()? != 0),
                1 => HeaderValue::Int(self.array().map(i64::from_le_bytes)?),
                2 => HeaderValue::Float(f64::from_bits(self.u64()?)),
                3 => {
                    let len = usize::from(self.u16()?);
                    HeaderValue::Str(Arc::from(self.str(len)?))
                }
                tag => return Err(FrameError::HeaderTag(tag)),
            };
            headers.push((key, value));
        }
        let len = self.u32()? as usize;
        let payload: Arc<[u8]> = Arc::from(self.take(len)?);
        let headers = if headers.is_empty() {
            // One shared empty list instead of an allocation per message.
            self.cache
                .empty_headers
                .get_or_insert_with(|| Vec::new().into())
                .clone()
        } else {
            headers.into()
        };
        Ok(Message {
            route: route.map(Box::new),
            topic,
            payload,
            headers,
            id,
            origin,
            hops,
            timestamp: UNIX_EPOCH
                .checked_add(Duration::from_micros(micros))
                .unwrap_or(UNIX_EPOCH),
            ttl: (ttl != NO_TTL).then(|| Duration::from_micros(ttl)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            route: None,
            topic: Name::new("orders.created").unwrap(),
            payload: Arc::from(&b"hello"[..]),
            headers: vec![
                (Arc::from("attempt"), HeaderValue::Int(-3)),
                (Arc::from("ok"), HeaderValue::Bool(true)),
                (Arc::from("ratio"), HeaderValue::Float(0.25)),
                (Arc::from("who"), HeaderValue::Str(Arc::from("caf\u{e9}"))),
            ]
            .into(),
            id: 42,
            origin: 7,
            hops: 2,
            timestamp: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            ttl: Some(Duration::from_millis(1500)),
        }
    }

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::Message(sample()),
            Frame::Message(Message {
                ttl: None,
                headers: Vec::new().into(),
                payload: Arc::from(&[][..]),
                ..sample()
            }),
            Frame::Message(Message {
                route: Some(Box::new(Route {
                    to: 1,
                    from: u64::MAX,
                    correlation: 77,
                    leg: Leg::Request,
                })),
                ..sample()
            }),
            Frame::Message(Message {
                route: Some(Box::new(Route {
                    to: u64::MAX,
                    from: 1,
                    correlation: 77,
                    leg: Leg::Reply(ReplyStatus::Gone),
                })),
                ..sample()
            }),
            Frame::Message(Message {
                route: Some(Box::new(Route {
                    to: 3,
                    from: 4,
                    correlation: 5,
                    leg: Leg::Cancel,
                })),
                ..sample()
            }),
            Frame::Message(Message {
                route: Some(Box::new(Route::broadcast())),
                ..sample()
            }),
            Frame::Hello {
                peer: u64::MAX,
                subscriptions: vec![
                    (Interest::Messages, "news.+".into()),
                    (Interest::Observe, "error.*,timeout.*".into()),
                    (Interest::Serve, "math.double".into()),
                    (Interest::Internal, "_inspect.poll".into()),
                ],
            },
            Frame::Subscriptions {
                sequence: 9,
                subscriptions: vec![],
            },
            Frame::SubscriptionsAck { sequence: 9 },
            Frame::Lag {
                topic: Name::new("a.b").unwrap(),
                count: 12,
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for frame in all_kinds() {
            let mut buf = Vec::new();
            encode(&frame, &mut buf);
            assert_eq!(decode(&buf), Ok(frame));
        }
    }

    #[test]
    fn another_version_is_refused() {
        let mut buf = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut buf);
        buf[LEN_PREFIX] = VERSION + 1;
        assert_eq!(
            decode(&buf),
            Err(FrameError::Version { found: VERSION + 1 })
        );
    }

    #[test]
    fn unknown_kind_and_tag_are_refused() {
        let mut buf = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut buf);
        buf[LEN_PREFIX + 1] = 99;
        assert_eq!(decode(&buf), Err(FrameError::Kind(99)));

        let mut buf = Vec::new();
        encode(&Frame::Message(sample()), &mut buf);
        // The first header's tag sits after the fixed fields, the route byte, the topic and
        // the key.
        let tag_at = LEN_PREFIX + 2 + 8 + 8 + 1 + 8 + 8 + 1 + 1 + 14 + 1 + 1 + 7;
        assert_eq!(buf[tag_at], 1);
        buf[tag_at] = 200;
        assert_eq!(decode(&buf), Err(FrameError::HeaderTag(200)));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for frame in all_kinds() {
            let mut buf = Vec::new();
            encode(&frame, &mut buf);
            for cut_at in 0..buf.len() {
                let short = &buf[..cut_at];
                assert!(decode(short).is_err(), "prefix of {cut_at} bytes accepted");
                // Also with a length prefix that agrees with the short buffer.
                if cut_at >= LEN_PREFIX {
                    let mut fixed = short.to_vec();
                    let len = (cut_at - LEN_PREFIX) as u32;
                    fixed[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
                    assert!(
                        decode(&fixed).is_err(),
                        "consistent prefix {cut_at} accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_route_interest_and_status_bytes_are_refused() {
        let mut buf = Vec::new();
        encode(&Frame::Message(sample()), &mut buf);
        let route_at = LEN_PREFIX + 2 + 8 + 8 + 1 + 8 + 8;
        assert_eq!(buf[route_at], 0);
        buf[route_at] = 9;
        assert_eq!(decode(&buf), Err(FrameError::Route(9)));

        let mut buf = Vec::new();
        let reply = Message {
            route: Some(Box::new(Route {
                to: 1,
                from: 2,
                correlation: 3,
                leg: Leg::Reply(ReplyStatus::Ok),
            })),
            ..sample()
        };
        encode(&Frame::Message(reply), &mut buf);
        let status_at = route_at + 1 + 24;
        assert_eq!(buf[status_at], 1);
        buf[status_at] = 0;
        assert_eq!(decode(&buf), Err(FrameError::Route(0)));

        let mut buf = Vec::new();
        encode(
            &Frame::Subscriptions {
                sequence: 1,
                subscriptions: vec![(Interest::Serve, "a".into())],
            },
            &mut buf,
        );
        let interest_at = LEN_PREFIX + 2 + 8 + 2;
        buf[interest_at] = 7;
        assert_eq!(decode(&buf), Err(FrameError::Interest(7)));
    }

    #[test]
    fn trailing_bytes_bad_topic_and_bad_utf8_are_refused() {
        let mut buf = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut buf);
        buf.push(0);
        let len = (buf.len() - LEN_PREFIX) as u32;
        buf[..LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
        assert_eq!(decode(&buf), Err(FrameError::Trailing(1)));

        let mut buf = Vec::new();
        encode(
            &Frame::Lag {
                topic: Name::new("a.b").unwrap(),
                count: 1,
            },
            &mut buf,
        );
        let topic_at = LEN_PREFIX + 3;
        buf[topic_at] = b'*';
        assert!(matches!(decode(&buf), Err(FrameError::Topic(_))));
        buf[topic_at] = 0xff;
        assert!(matches!(decode(&buf), Err(FrameError::Utf8 { .. })));
    }

    #[test]
    fn cached_decoding_agrees_with_plain_decoding() {
        let mut cache = TopicCache::default();
        let other = Message {
            topic: Name::new("orders.shipped").unwrap(),
            ..sample()
        };
        for m in [sample(), sample(), other.clone(), sample(), other] {
            let mut buf = Vec::new();
            encode(&Frame::Message(m.clone()), &mut buf);
            assert_eq!(decode_cached(&buf, &mut cache), Ok(Frame::Message(m)));
        }
        // A cached topic never lets an invalid one through.
        let mut buf = Vec::new();
        encode(&Frame::Message(sample()), &mut buf);
        let topic_at = LEN_PREFIX + 2 + 8 + 8 + 1 + 8 + 8 + 1 + 1;
        buf[topic_at] = b'*';
        assert!(matches!(
            decode_cached(&buf, &mut cache),
            Err(FrameError::Topic(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic scramble of valid frames: flip every byte to several values.
        for frame in all_kinds() {
            let mut buf = Vec::new();
            encode(&frame, &mut buf);
            for i in 0..buf.len() {
                for v in [0u8, 1, 0x7f, 0xff] {
                    let mut bad = buf.clone();
                    bad[i] = v;
                    let _ = decode(&bad);
                }
            }
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[0xff; 3]).is_err());
    }
}
