//! The hand-written `serde` impls (feature `serde`): names, ids, header values, signals and
//! signal builders. Stats and snapshots derive theirs next to their definitions.
//!
//! A [`Signal`] is written through a borrowed view of its public accessors, so its in-memory
//! layout can change without touching its JSON. It reads back as a [`SignalBuilder`]: the
//! sequence number, timestamp and held flag belong to the sink that raises it, so
//! deserializing re-raises a signal rather than restoring one.

use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::serde_ms::remaining_ms;
use crate::serde_payload::PayloadRef;
use crate::{HeaderValue, Name, OperationId, Signal, SignalBuilder};

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Name::new(&s).map_err(de::Error::custom)
    }
}

impl Serialize for OperationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.as_u64())
    }
}

impl<'de> Deserialize<'de> for OperationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(OperationId::from_raw)
    }
}

/// Header values are written as the bare scalar: `true`, `3`, `0.5`, `"text"`. A float that
/// is not finite is written `null` (JSON has no NaN or infinity), and `null` reads back as
/// NaN, so a signal carrying one still reads back as a signal that can be raised (an
/// infinity comes back as NaN).
impl Serialize for HeaderValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HeaderValue::Bool(b) => s.serialize_bool(*b),
            HeaderValue::Int(i) => s.serialize_i64(*i),
            HeaderValue::Float(x) => s.serialize_f64(*x),
            HeaderValue::Str(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, an integer, a number, a string or null (NaN)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HeaderValue, E> {
                i64::try_from(v).map(HeaderValue::Int).map_err(|_| {
                    E::custom(format!(
                        "header integer {v} is larger than i64::MAX: send it as a string"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::from(v))
            }
            // What a non-finite float becomes in JSON.
            fn visit_unit<E: de::Error>(self) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Float(f64::NAN))
            }
        }
        d.deserialize_any(Scalar)
    }
}

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

/// The stable public view of a signal that its JSON is made of.
#[derive(Serialize)]
struct SignalView<'a> {
    name: &'a Name,
    key: Option<&'a str>,
    operation: Option<OperationId>,
    sequence: u64,
    age_ms: u64,
    expires_in_ms: Option<u64>,
    payload: Option<PayloadRef<'a>>,
    headers: HeadersView<'a>,
    leaf: bool,
    terminal: bool,
    held: bool,
    causes: &'a [Name],
}

/// A signal as JSON: `name`, `key`, `operation` (raw id), `sequence`, `age_ms` (since it was
/// raised), `expires_in_ms` (left of its own expiry; `null` when it lives to the sink's max
/// age), `payload` (a string when UTF-8, else an array of bytes), `headers` (a map of
/// scalars), `leaf`, `terminal`, `held` and `causes` (oldest first).
impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignalView {
            name: self.name(),
            key: self.key(),
            operation: self.operation(),
            sequence: self.sequence(),
            age_ms: crate::serde_ms::age_ms(self.timestamp()),
            expires_in_ms: self.expires_at().map(remaining_ms),
            payload: self.payload().map(PayloadRef),
            headers: HeadersView(self.headers()),
            leaf: self.is_leaf(),
            terminal: self.is_terminal(),
            held: self.is_held(),
            causes: self.causes(),
        }
        .serialize(s)
    }
}

/// Fields it does not know are refused (`deny_unknown_fields`): a typo such as `ttl_ms` for
/// `expires_in_ms` would otherwise raise a signal living to the sink's max age without a
/// word. What [`Signal`]'s `Serialize` writes and a raise cannot take (`sequence`,
/// `age_ms`, `held`, `causes`) is read and ignored, so a written signal reads back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderWire {
    name: Name,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    operation: Option<OperationId>,
    #[serde(default)]
    expires_in_ms: Option<u64>,
    #[serde(default)]
    payload: Option<crate::serde_payload::Payload>,
    #[serde(default, deserialize_with = "headers_in_order")]
    headers: Vec<(String, HeaderValue)>,
    #[serde(default)]
    leaf: bool,
    #[serde(default)]
    terminal: bool,
    // Written by `Signal`'s `Serialize`, the raising sink's to give: read and ignored.
    #[serde(default, rename = "sequence")]
    _sequence: de::IgnoredAny,
    #[serde(default, rename = "age_ms")]
    _age_ms: de::IgnoredAny,
    #[serde(default, rename = "held")]
    _held: de::IgnoredAny,
    #[serde(default, rename = "causes")]
    _causes: de::IgnoredAny,
}

/// Reads what [`Signal`]'s `Serialize` writes (only `name` is required): the signal to raise
/// again. `sequence`, `age_ms`, `held` and `causes` are the raising sink's to give, so they
/// are ignored; `expires_in_ms` becomes [`expires_in`](SignalBuilder::expires_in). Any
/// other field is refused with serde's "unknown field" error, which lists the known ones (a
/// misspelt time to live must not be dropped silently).
impl<'de> Deserialize<'de> for SignalBuilder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = BuilderWire::deserialize(d)?;
        let mut b = SignalBuilder::new(w.name);
        if let Some(key) = w.key {
            b = b.key(key);
        }
        if let Some(op) = w.operation {
            b = b.operation(op);
        }
        if let Some(ms) = w.expires_in_ms {
            b = b.expires_in(Duration::from_millis(ms));
        }
        if let Some(p) = w.payload {
            b = b.payload(Arc::<[u8]>::from(p.0));
        }
        for (k, v) in w.headers {
            b = b.header(&k, v);
        }
        if w.leaf {
            b = b.leaf();
        }
        if w.terminal {
            b = b.terminal();
        }
        Ok(b)
    }
}

/// A map of headers, kept in the order written.
fn headers_in_order<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, HeaderValue)>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, HeaderValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of header names to scalars")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    d.deserialize_map(Pairs)
}
