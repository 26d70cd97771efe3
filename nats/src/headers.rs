//! Headers on the wire: typed scalar values, escaped names, and the transport's own headers.
//!
//! A NATS header name is visible ASCII without `:`, a value one line of text that the client
//! trims. So a [`HeaderValue`] travels typed, `b:true`, `i:42`, `f:1.5` or `s:<text>` (in the
//! text, `%`, control characters and trailing whitespace are written `%XX`), and a key has
//! every byte outside visible ASCII, `:` and `%` written `%XX`. A value without a known type
//! prefix (a plain NATS client's) arrives as text, unchanged.
//!
//! The transport's own headers ([`PUB`], [`TTL`], [`TIMESTAMP`], [`ORIGIN`], [`HOPS`],
//! [`STATUS`]) are never user headers: a user key spelled like one travels with its first
//! byte escaped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use ephemeral::{HeaderValue, Headers, Name};
use ephemeral_bus::Message;

use ephemeral_bus::OutgoingParts;

/// Who published the message and its number on the topic: `<publisher, 16 hex>:<n>`.
pub const PUB: &str = "bus.pub";
/// The remaining time to live when sent, in whole milliseconds (rounded up).
pub const TTL: &str = "bus.ttl";
/// When it was published, in milliseconds since the Unix epoch (publisher's clock).
pub const TIMESTAMP: &str = "bus.ts";
/// The first publisher when a bridge forwarded the message (16 hex digits).
pub const ORIGIN: &str = "bus.origin";
/// How many bridges the message crossed, when not zero.
pub const HOPS: &str = "bus.hops";
/// On a reply: `ok`, `error` when the handler failed (the payload is then its message), or
/// `stopped` when the server was dropped before handling the request.
pub const STATUS: &str = "bus.status";

const RESERVED: [&str; 6] = [PUB, TTL, TIMESTAMP, ORIGIN, HOPS, STATUS];

fn hex_byte(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// The wire name of a user header key.
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    if key.is_empty() {
        out.push('%');
        return out;
    }
    let reserved = RESERVED.contains(&key);
    for (i, b) in key.bytes().enumerate() {
        let plain = b.is_ascii_graphic() && b != b':' && b != b'%';
        if plain && !(reserved && i == 0) {
            out.push(char::from(b));
        } else {
            hex_byte(&mut out, b);
        }
    }
    out
}

/// Percent-decodes `s`; `None` when a `%` is not followed by two hex digits.
fn unescape(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The user key of a wire name (a malformed escape is kept as it is).
pub(crate) fn decode_key(name: &str) -> String {
    if name == "%" {
        return String::new();
    }
    unescape(name).unwrap_or_else(|| name.to_owned())
}

/// The wire text of a value.
pub(crate) fn encode_value(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Bool(b) => format!("b:{b}"),
        HeaderValue::Int(i) => format!("i:{i}"),
        // `{:?}` is the shortest text that parses back to the same f64 (`1e300`, `NaN`, `inf`).
        HeaderValue::Float(x) => format!("f:{x:?}"),
        HeaderValue::Str(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push_str("s:");
            // The client trims trailing whitespace off a value: escape that run.
            let keep = s.trim_end().len();
            for (at, ch) in s.char_indices() {
                if ch == '%' || ch.is_control() || at >= keep {
                    let mut buf = [0u8; 4];
                    for b in ch.encode_utf8(&mut buf).bytes() {
                        hex_byte(&mut out, b);
                    }
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

/// The value of a wire text.
pub(crate) fn decode_value(text: &str) -> HeaderValue {
    let typed = match text.split_at_checked(2) {
        Some(("b:", v)) => v.parse().ok().map(HeaderValue::Bool),
        Some(("i:", v)) => v.parse().ok().map(HeaderValue::Int),
        Some(("f:", v)) => v.parse().ok().map(HeaderValue::Float),
        Some(("s:", v)) => unescape(v).map(HeaderValue::from),
        _ => None,
    };
    typed.unwrap_or_else(|| HeaderValue::from(text))
}

/// The size of a header block on the wire, as the server counts it against `max_payload`:
/// `NATS/1.0\r\n`, each `<key>: <value>\r\n`, then `\r\n`.
pub(crate) fn wire_len(headers: &HeaderMap) -> usize {
    if headers.is_empty() {
        return 0;
    }
    let mut len = 12;
    for (key, values) in headers.iter() {
        let key: &str = key.as_ref();
        for value in values {
            len += key.len() + 4 + value.as_str().len();
        }
    }
    len
}

/// The most a [`PUB`] header adds: key, `: `, 16 hex digits, `:`, 20 digits, CRLF.
pub(crate) const PUB_MAX_LEN: usize = PUB.len() + 2 + 16 + 1 + 20 + 2;

/// The headers of `out` without [`PUB`] (added once the size is checked, so a refused
/// message does not use up a number).
pub(crate) fn encode(out: &OutgoingParts, now: SystemTime) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (key, value) in &out.headers {
        map.append(encode_key(key).as_str(), encode_value(value).as_str());
    }
    if let Some(ttl) = out.ttl {
        map.insert(TTL, ceil_millis(ttl).to_string().as_str());
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    map.insert(TIMESTAMP, since_epoch.as_millis().to_string().as_str());
    if let Some(origin) = out.origin {
        map.insert(ORIGIN, format!("{origin:016x}").as_str());
    }
    if out.hops > 0 {
        map.insert(HOPS, out.hops.to_string().as_str());
    }
    map
}

/// Adds the publisher's number.
pub(crate) fn number(map: &mut HeaderMap, publisher: u64, n: u64) {
    map.insert(PUB, format!("{publisher:016x}:{n}").as_str());
}

fn ceil_millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// What a received header block says.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) publisher: Option<u64>,
    pub(crate) number: u64,
    pub(crate) ttl: Option<Duration>,
    pub(crate) timestamp: Option<SystemTime>,
    pub(crate) origin: Option<u64>,
    pub(crate) hops: u8,
    /// A reply's [`STATUS`].
    pub(crate) status: Option<Box<str>>,
}

impl Decoded {
    pub(crate) fn user_headers(&mut self) -> Headers {
        Arc::from(std::mem::take(&mut self.headers))
    }

    /// The message these headers came with, on `topic` (the user headers move into it).
    pub(crate) fn message(&mut self, topic: Name, payload: Bytes) -> Message {
        Message::new(topic, payload)
            .with_headers(self.user_headers())
            .with_id(self.origin.or(self.publisher).unwrap_or(0), self.number)
            .with_hops(self.hops)
            .with_timestamp(self.timestamp.unwrap_or_else(SystemTime::now))
            .with_ttl(self.ttl)
    }
}

/// Splits a received header block into the transport's fields and the user's headers
/// (sorted by key; a key's values keep their order).
pub(crate) fn decode(map: Option<&HeaderMap>) -> Decoded {
    let mut decoded = Decoded::default();
    let Some(map) = map else {
        return decoded;
    };
    for (key, values) in map.iter() {
        let key: &str = key.as_ref();
        let first = values.first().map(|v| v.as_str()).unwrap_or("");
        match key {
            PUB => {
                if let Some((publisher, n)) = first.split_once(':')
                    && let (Ok(publisher), Ok(n)) =
                        (u64::from_str_radix(publisher, 16), n.parse::<u64>())
                {
                    decoded.publisher = Some(publisher);
                    decoded.number = n;
                }
            }
            TTL => decoded.ttl = first.parse().ok().map(Duration::from_millis),
            TIMESTAMP => {
                decoded.timestamp = first
                    .parse()
                    .ok()
                    .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
            }
            ORIGIN => decoded.origin = u64::from_str_radix(first, 16).ok(),
            HOPS => decoded.hops = first.parse().unwrap_or(0),
            STATUS => decoded.status = Some(Box::from(first)),
            _ => {
                let key: Arc<str> = Arc::from(decode_key(key));
                for value in values {
                    decoded
                        .headers
                        .push((Arc::clone(&key), decode_value(value.as_str())));
                }
            }
        }
    }
    // Stable: a key's values keep their order.
    decoded.headers.sort_by(|a, b| a.0.cmp(&b.0));
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_their_type() {
        let values = [
            HeaderValue::Bool(true),
            HeaderValue::Bool(false),
            HeaderValue::Int(-42),
            HeaderValue::Int(i64::MAX),
            HeaderValue::Float(1.5),
            HeaderValue::Float(1e300),
            HeaderValue::Float(f64::NEG_INFINITY),
            HeaderValue::from("plain text"),
            HeaderValue::from("i:42"),
            HeaderValue::from("100% sure\r\nsecond line\t"),
            HeaderValue::from("  padded  "),
            HeaderValue::from("é ünï"),
            HeaderValue::from(""),
        ];
        for value in values {
            let wire = encode_value(&value);
            assert!(!wire.contains(['\r', '\n']), "{wire:?}");
            assert_eq!(wire.trim(), wire, "trimmed by the client: {wire:?}");
            assert_eq!(decode_value(&wire), value, "{wire:?}");
        }
        assert!(matches!(decode_value("f:NaN"), HeaderValue::Float(x) if x.is_nan()));
        assert_eq!(decode_value("foreign"), HeaderValue::from("foreign"));
        assert_eq!(
            decode_value("i:not a number"),
            HeaderValue::from("i:not a number")
        );
    }

    #[test]
    fn keys_round_trip_and_never_collide_with_the_transport() {
        for key in [
            "attempt",
            "signal.key",
            "a:b",
            "é",
            "50%",
            "a b",
            "",
            "bus.seq",
        ] {
            let wire = encode_key(key);
            assert!(
                wire.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
                "{wire}"
            );
            assert_eq!(decode_key(&wire), key);
        }
        for reserved in RESERVED {
            let wire = encode_key(reserved);
            assert_ne!(wire, reserved);
            assert_eq!(decode_key(&wire), reserved);
        }
    }

    #[test]
    fn the_transport_fields_come_back() {
        let out = crate::Outgoing::new("a.b")
            .unwrap()
            .header("bus.pub", "mine")
            .header("k", 1)
            .header("k", 2)
            .ttl(Duration::from_micros(1500))
            .into_parts();
        let mut map = encode(&out, UNIX_EPOCH + Duration::from_millis(1234));
        number(&mut map, 0xabc, 7);
        let mut d = decode(Some(&map));
        assert_eq!(d.publisher, Some(0xabc));
        assert_eq!(d.number, 7);
        assert_eq!(d.ttl, Some(Duration::from_millis(2)));
        assert_eq!(d.timestamp, Some(UNIX_EPOCH + Duration::from_millis(1234)));
        assert_eq!(
            &*d.user_headers(),
            &[
                (Arc::from("bus.pub"), HeaderValue::from("mine")),
                (Arc::from("k"), HeaderValue::Int(1)),
                (Arc::from("k"), HeaderValue::Int(2)),
            ]
        );
    }
}
