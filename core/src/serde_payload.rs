//! How this crate's `serde` support writes payloads (feature `serde`), public so that the
//! bus and your own types read and write them the same way.
//!
//! A payload is written as a **string** when it is UTF-8 (what people send), else as an
//! **array of byte values**; it is read back from either. Bad input is refused with a message
//! that says what a payload is ("expected a payload: a string, or an array of byte values
//! from 0 to 255"), or which byte value is out of range.
//!
//! # Examples
//!
//! ```
//! use ephemeral::serde_payload::Payload;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Note {
//!     #[serde(serialize_with = "ephemeral::serde_payload::serialize")]
//!     body: Vec<u8>,
//! }
//!
//! assert_eq!(serde_json::to_string(&Note { body: b"hi".to_vec() })?, r#"{"body":"hi"}"#);
//! assert_eq!(serde_json::to_string(&Note { body: vec![0xff] })?, r#"{"body":[255]}"#);
//! let Payload(bytes) = serde_json::from_str(r#"[104, 105]"#)?;
//! assert_eq!(bytes, b"hi");
//! let err = serde_json::from_str::<Payload>("[256]").unwrap_err().to_string();
//! assert!(err.contains("from 0 to 255"), "{err}");
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Writes `payload` as a string when it is UTF-8, else as an array of byte values.
///
/// # Errors
///
/// What the serializer returns.
pub fn serialize<S: Serializer>(payload: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(payload) {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.collect_seq(payload),
    }
}

/// A borrowed payload, written as [`serialize`] writes it: for a payload field of a view
/// that derives `Serialize` (the signal's and the bus message's JSON use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadRef<'a>(pub &'a [u8]);

impl Serialize for PayloadRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, s)
    }
}

/// A payload read back: a string (its UTF-8 bytes) or an array of byte values (the shape
/// [`serialize`] writes). Bad input says what a payload is, and which byte value is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expected;
        impl<'de> Visitor<'de> for Expected {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a payload: a string, or an array of byte values from 0 to 255")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Payload, E> {
                Ok(Payload(v.as_bytes().to_vec()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Payload, E> {
                Ok(Payload(v.into_bytes()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(v.to_vec()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(ByteValue(byte)) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(Payload(bytes))
            }
        }
        d.deserialize_any(Expected)
    }
}

/// One element of a binary payload's array.
struct ByteValue(u8);

impl<'de> Deserialize<'de> for ByteValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Byte;
        impl Visitor<'_> for Byte {
            type Value = ByteValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a payload byte value from 0 to 255 (send text payloads as a string, not an array)",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteValue, E> {
                u8::try_from(v)
                    .map(ByteValue)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteValue, E> {
                u8::try_from(v)
                    .map(ByteValue)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_u8(Byte)
    }
}
