//! The wire format: how frames travel between peers, and the pure decoder.
//!
//! Every frame starts with a 4-byte little-endian length (of what follows), then the format
//! [`VERSION`] byte and a kind byte. A frame with another version, an unknown kind, a bad name,
//! a truncated field or trailing bytes is refused with a [`FrameError`]; the receiving peer
//! counts it and carries on with the next frame. [`decode`] is a pure function over bytes, so
//! it can be fuzzed on its own.
//!
//! On a connection, [`FrameCodec`] cuts the stream into frames with `tokio_util`'s
//! [`LengthDelimitedCodec`] (the length prefix kept in each frame) and decodes each one; a
//! length above the bound it was made with ends the stream with
//! [`FramingError::TooLong`], since nothing after it can be trusted. A decoded message's
//! payload is a slice of the read buffer, never a copy.
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

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ephemeral::{HeaderValue, Name, NameError};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

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

/// Decodes one complete frame, length prefix included (the payload of a message is copied
/// out of `bytes`; [`FrameCodec`] decodes without that copy).
///
/// # Errors
///
/// Returns a [`FrameError`] saying what is wrong; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
    decode_cached(&Bytes::copy_from_slice(bytes), &mut TopicCache::default())
}

/// The last topic decoded on a connection: a stream of messages on one topic then costs no
/// name validation or allocation per message.
#[derive(Debug, Default)]
pub(crate) struct TopicCache {
    last: Option<Name>,
    empty_headers: Option<ephemeral::Headers>,
}

/// [`decode`] of shared bytes, reusing the previous topic when it repeats; a message's
/// payload is a slice of `bytes`.
pub(crate) fn decode_cached(bytes: &Bytes, cache: &mut TopicCache) -> Result<Frame, FrameError> {
    let mut r = Reader {
        shared: bytes,
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

/// Why a stream of frames cannot go on (a bad frame whose length was sound is not one of
/// these: [`FrameCodec`] yields it as a [`FrameError`] and carries on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A length prefix above the bound: the stream is out of step (or a peer sends larger
    /// frames than this one accepts) and nothing after it can be trusted.
    #[error(
        "frame of {declared} bytes is longer than the maximum of {max} bytes: the stream is corrupt, or peers disagree on BusOptions::max_payload (use the same in every peer)"
    )]
    TooLong {
        /// What the length prefix says.
        declared: usize,
        /// The bound.
        max: usize,
    },
    /// Reading or writing the stream failed, or it ended inside a frame.
    #[error("the frame stream failed: {0}")]
    Io(#[from] io::Error),
}

/// The bus's framing on a byte stream: `tokio_util`'s [`LengthDelimitedCodec`] (4-byte
/// little-endian length prefix, kept in the frame) around [`decode`] and [`encode`], with a
/// bound on the frame length. Use it with `FramedRead` / `FramedWrite`, or on your own
/// buffers.
///
/// Decoding yields one item per frame: `Ok(frame)`, or `Err(FrameError)` for a frame whose
/// length was sound but whose contents are not (the stream stays in step, so the next frame
/// can be read). A length above the bound is a [`FramingError::TooLong`], which ends the
/// stream. A message's payload is a slice of the read buffer (no copy).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::{SinkExt, StreamExt};
/// use tokio_util::codec::{FramedRead, FramedWrite};
/// use ephemeral_bus::frame::{Frame, FrameCodec};
///
/// let (a, b) = tokio::io::duplex(4096);
/// let mut tx = FramedWrite::new(a, FrameCodec::new(1024));
/// let mut rx = FramedRead::new(b, FrameCodec::new(1024));
/// tx.send(&Frame::SubscriptionsAck { sequence: 7 }).await?;
/// let frame = rx.next().await.unwrap()??;
/// assert_eq!(frame, Frame::SubscriptionsAck { sequence: 7 });
/// # Ok(())
/// # }
/// ```
pub struct FrameCodec {
    framing: LengthDelimitedCodec,
    max: usize,
    cache: TopicCache,
}

impl FrameCodec {
    /// A codec for frames whose length prefix says at most `max_frame` bytes (everything
    /// after the prefix; the bus uses `max_payload` plus room for the topic and headers).
    #[must_use]
    pub fn new(max_frame: usize) -> Self {
        let max = max_frame.min(u32::MAX as usize);
        let framing = LengthDelimitedCodec::builder()
            .little_endian()
            .length_field_length(LEN_PREFIX)
            // The prefix counts what follows it; the frame handed to `decode` starts with it.
            .length_adjustment(LEN_PREFIX as isize)
            .num_skip(0)
            .max_frame_length(max)
            .new_codec();
        Self {
            framing,
            max,
            cache: TopicCache::default(),
        }
    }

    /// The bound on a frame's length prefix.
    #[must_use]
    pub fn max_frame(&self) -> usize {
        self.max
    }
}

impl fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCodec")
            .field("max_frame", &self.max)
            .finish_non_exhaustive()
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Frame, FrameError>;
    type Error = FramingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, FramingError> {
        // The head is never skipped, so `src` starts with the current frame's prefix whether
        // or not the inner codec has read it already: check it here for a typed error.
        if let Some(&[a, b, c, d]) = src.get(..LEN_PREFIX) {
            let declared = u32::from_le_bytes([a, b, c, d]) as usize;
            if declared > self.max {
                return Err(FramingError::TooLong {
                    declared,
                    max: self.max,
                });
            }
        }
        Ok(self
            .framing
            .decode(src)?
            .map(|frame| decode_cached(&frame.freeze(), &mut self.cache)))
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = FramingError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FramingError> {
        let start = dst.len();
        encode(frame, dst);
        let declared = dst.len() - start - LEN_PREFIX;
        if declared > self.max {
            dst.truncate(start);
            return Err(FramingError::TooLong {
                declared,
                max: self.max,
            });
        }
        Ok(())
    }
}

/// A buffer frames are encoded into: `Vec<u8>` or `BytesMut` (a [`BufMut`] whose written
/// bytes can be patched, for the length prefix).
pub trait FrameBuf: BufMut + AsMut<[u8]> {}

impl<B: BufMut + AsMut<[u8]>> FrameBuf for B {}

/// Appends the encoding of `frame` to `out`.
///
/// Encoding cannot fail for values built through this crate's API: names are at most 255
/// bytes, header keys and string values longer than their length fields are cut at a
/// character boundary, and payloads are bounded by the bus's maximum well below 4 GiB.
pub fn encode(frame: &Frame, out: &mut impl FrameBuf) {
    let start = begin(out);
    match frame {
        Frame::Message(m) => {
            out.put_u8(KIND_MESSAGE);
            put_message_body(&MessageRef::of(m), out);
        }
        Frame::Hello {
            peer,
            subscriptions,
        } => {
            out.put_u8(KIND_HELLO);
            out.put_u64_le(*peer);
            put_patterns(subscriptions, out);
        }
        Frame::Subscriptions {
            sequence,
            subscriptions,
        } => {
            out.put_u8(KIND_SUBS);
            out.put_u64_le(*sequence);
            put_patterns(subscriptions, out);
        }
        Frame::SubscriptionsAck { sequence } => {
            out.put_u8(KIND_SUBS_ACK);
            out.put_u64_le(*sequence);
        }
        Frame::Lag { topic, count } => {
            out.put_u8(KIND_LAG);
            put_short(topic.as_bytes(), out);
            out.put_u64_le(*count);
        }
    }
    finish(start, out);
}

fn begin(out: &mut impl FrameBuf) -> usize {
    let start = out.as_mut().len();
    out.put_slice(&[0; LEN_PREFIX]);
    out.put_u8(VERSION);
    start
}

fn finish(start: usize, out: &mut impl FrameBuf) {
    let out = out.as_mut();
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

impl MessageRef<'_> {
    /// The length of this message's frame, length prefix included: what
    /// [`encode_message`] appends.
    pub(crate) fn encoded_len(&self) -> usize {
        let route = match &self.route {
            None => 1,
            Some(route) => match route.leg {
                Leg::Broadcast => 1,
                Leg::Reply(_) => 1 + 24 + 1,
                Leg::Request | Leg::Cancel => 1 + 24,
            },
        };
        let headers: usize = self.headers[..self.headers.len().min(255)]
            .iter()
            .map(|(key, value)| {
                1 + cut(key, 255).len()
                    + 1
                    + match value {
                        HeaderValue::Bool(_) => 1,
                        HeaderValue::Int(_) | HeaderValue::Float(_) => 8,
                        HeaderValue::Str(s) => 2 + cut(s, usize::from(u16::MAX)).len(),
                    }
            })
            .sum();
        let payload = self.payload.len().min(u32::MAX as usize);
        LEN_PREFIX
            + 2
            + 8
            + 8
            + 1
            + 8
            + 8
            + route
            + 1
            + self.topic.len()
            + 1
            + headers
            + 4
            + payload
    }
}

/// Appends the frame of a message given by reference.
pub(crate) fn encode_message(m: &MessageRef<'_>, out: &mut impl FrameBuf) {
    let start = begin(out);
    out.put_u8(KIND_MESSAGE);
    put_message_body(m, out);
    finish(start, out);
}

fn put_message_body(m: &MessageRef<'_>, out: &mut impl FrameBuf) {
    out.put_u64_le(m.id);
    out.put_u64_le(m.origin);
    out.put_u8(m.hops);
    out.put_u64_le(micros_since_epoch(m.timestamp));
    let ttl = m.ttl.map_or(NO_TTL, |t| {
        u64::try_from(t.as_micros()).unwrap_or(NO_TTL - 1)
    });
    out.put_u64_le(ttl);
    match &m.route {
        None => out.put_u8(0),
        Some(route) if route.leg == Leg::Broadcast => out.put_u8(4),
        Some(route) => {
            out.put_u8(match route.leg {
                Leg::Request => 1,
                Leg::Reply(_) => 2,
                Leg::Cancel => 3,
                Leg::Broadcast => 4,
            });
            out.put_u64_le(route.to);
            out.put_u64_le(route.from);
            out.put_u64_le(route.correlation);
            if let Leg::Reply(status) = route.leg {
                out.put_u8(status.to_byte());
            }
        }
    }
    put_short(m.topic.as_bytes(), out);
    // `Bus::build` refuses what is over these limits; the cuts only keep a frame well formed.
    let headers = &m.headers[..m.headers.len().min(crate::MAX_HEADERS)];
    out.put_u8(headers.len() as u8);
    for (key, value) in headers {
        put_short(cut(key, crate::MAX_HEADER_KEY).as_bytes(), out);
        match value {
            HeaderValue::Bool(b) => {
                out.put_u8(0);
                out.put_u8(u8::from(*b));
            }
            HeaderValue::Int(i) => {
                out.put_u8(1);
                out.put_i64_le(*i);
            }
            HeaderValue::Float(x) => {
                out.put_u8(2);
                out.put_u64_le(x.to_bits());
            }
            HeaderValue::Str(s) => {
                out.put_u8(3);
                put_long16(cut(s, crate::MAX_HEADER_STR).as_bytes(), out);
            }
        }
    }
    let len = u32::try_from(m.payload.len()).unwrap_or(u32::MAX);
    out.put_u32_le(len);
    out.put_slice(&m.payload[..len as usize]);
}

fn put_patterns(patterns: &[Announced], out: &mut impl FrameBuf) {
    let patterns = &patterns[..patterns.len().min(usize::from(u16::MAX))];
    out.put_u16_le(patterns.len() as u16);
    for (interest, p) in patterns {
        out.put_u8(interest.to_byte());
        put_long16(cut(p, usize::from(u16::MAX)).as_bytes(), out);
    }
}

fn put_short(bytes: &[u8], out: &mut impl FrameBuf) {
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

fn put_long16(bytes: &[u8], out: &mut impl FrameBuf) {
    out.put_u16_le(bytes.len() as u16);
    out.put_slice(bytes);
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
    /// The frame, for slicing payloads out of it without a copy.
    shared: &'a Bytes,
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
        let start = self.at;
        self.take(len)?;
        let payload = self.shared.slice(start..self.at);
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
            payload: Bytes::from_static(b"hello"),
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
                payload: Bytes::new(),
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
    fn encoded_len_is_the_length_encoded() {
        let long = "x".repeat(70_000);
        let mut frames = all_kinds();
        frames.push(Frame::Message(Message {
            headers: vec![
                (
                    Arc::from("k".repeat(300).as_str()),
                    HeaderValue::Str(Arc::from(long.as_str())),
                ),
                (Arc::from("f"), HeaderValue::Float(1.5)),
            ]
            .into(),
            ..sample()
        }));
        for frame in frames {
            let Frame::Message(m) = &frame else { continue };
            let mut buf = Vec::new();
            encode(&frame, &mut buf);
            assert_eq!(MessageRef::of(m).encoded_len(), buf.len(), "{m:?}");
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
            assert_eq!(
                decode_cached(&Bytes::from(buf), &mut cache),
                Ok(Frame::Message(m))
            );
        }
        // A cached topic never lets an invalid one through.
        let mut buf = Vec::new();
        encode(&Frame::Message(sample()), &mut buf);
        let topic_at = LEN_PREFIX + 2 + 8 + 8 + 1 + 8 + 8 + 1 + 1;
        buf[topic_at] = b'*';
        assert!(matches!(
            decode_cached(&Bytes::from(buf), &mut cache),
            Err(FrameError::Topic(_))
        ));
    }

    /// Everything `codec` yields from `stream`, fed `chunk` bytes at a time as a socket
    /// would, then the end of the stream.
    fn feed(
        codec: &mut FrameCodec,
        stream: &[u8],
        chunk: usize,
    ) -> (Vec<Result<Frame, FrameError>>, Option<FramingError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(item)) => out.push(item),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn the_codec_cuts_a_stream_into_its_frames_whatever_the_reads() {
        let frames = all_kinds();
        let mut stream = BytesMut::new();
        let mut encoder = FrameCodec::new(1024);
        for frame in &frames {
            encoder.encode(frame, &mut stream).unwrap();
        }
        // The codec's encoding is `encode`'s, byte for byte.
        let mut plain = Vec::new();
        for frame in &frames {
            encode(frame, &mut plain);
        }
        assert_eq!(stream[..], plain[..]);
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let (got, end) = feed(&mut FrameCodec::new(1024), &stream, chunk);
            assert!(end.is_none(), "chunks of {chunk}: {end:?}");
            let want: Vec<_> = frames.iter().cloned().map(Ok).collect();
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_bad_frame_is_an_item_and_the_stream_stays_in_step() {
        let mut stream = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut stream);
        let mut foreign = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 2 }, &mut foreign);
        foreign[LEN_PREFIX] = VERSION + 1;
        stream.extend_from_slice(&foreign);
        encode(&Frame::SubscriptionsAck { sequence: 3 }, &mut stream);
        let (got, end) = feed(&mut FrameCodec::new(1024), &stream, 5);
        assert!(end.is_none());
        assert_eq!(
            got,
            [
                Ok(Frame::SubscriptionsAck { sequence: 1 }),
                Err(FrameError::Version { found: VERSION + 1 }),
                Ok(Frame::SubscriptionsAck { sequence: 3 }),
            ]
        );
    }

    #[test]
    fn a_length_above_the_bound_is_a_typed_error_before_any_of_it_arrives() {
        let mut stream = Vec::new();
        encode(&Frame::SubscriptionsAck { sequence: 1 }, &mut stream);
        stream.extend_from_slice(&1025u32.to_le_bytes());
        let (got, end) = feed(&mut FrameCodec::new(1024), &stream, 3);
        assert_eq!(got, [Ok(Frame::SubscriptionsAck { sequence: 1 })]);
        assert!(
            matches!(
                end,
                Some(FramingError::TooLong {
                    declared: 1025,
                    max: 1024
                })
            ),
            "{end:?}"
        );
        // Exactly the bound is fine (and, cut short, an error at the end, not a frame).
        let mut at_bound = 1024u32.to_le_bytes().to_vec();
        at_bound.extend_from_slice(&[VERSION; 100]);
        let (got, end) = feed(&mut FrameCodec::new(1024), &at_bound, 64);
        assert!(got.is_empty());
        assert!(matches!(end, Some(FramingError::Io(_))), "{end:?}");
        // Encoding refuses what the other side would refuse, and writes nothing.
        let big = Frame::Message(Message {
            payload: Bytes::from(vec![0u8; 2000]),
            ..sample()
        });
        let mut dst = BytesMut::new();
        let refused = FrameCodec::new(1024).encode(&big, &mut dst);
        assert!(matches!(
            refused,
            Err(FramingError::TooLong { max: 1024, .. })
        ));
        assert!(dst.is_empty());
    }

    #[test]
    fn a_decoded_payload_is_a_slice_of_the_read_buffer() {
        let mut stream = BytesMut::new();
        let mut codec = FrameCodec::new(1024);
        codec
            .encode(&Frame::Message(sample()), &mut stream)
            .unwrap();
        let range = stream.as_ptr_range();
        let Some(Ok(Frame::Message(m))) = codec.decode(&mut stream).unwrap() else {
            panic!("a message")
        };
        assert_eq!(m.payload(), b"hello");
        assert!(
            range.contains(&m.payload_shared().as_ptr()),
            "the payload was copied"
        );
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
