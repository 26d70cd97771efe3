//! Payloads: [`PayloadBytes`]. The message types themselves are the bus's, shared.
//!
//! [`Message`](crate::Message) and [`Outgoing`](crate::Outgoing) are
//! [`ephemeral_bus::Message`] and [`ephemeral_bus::Outgoing`], re-exported: one type on one
//! machine and on many, so code (and a [`Bridge`](crate::Bridge)) handles both alike.
//! Over NATS, a message's [`id`](crate::Message::id) counts what its publisher sent *on
//! that topic*, from 1 (`0` for a plain NATS client's), and its headers arrive sorted by
//! key (NATS headers are a map; values of one key keep their order).

use bytes::Bytes;

/// Payload bytes for [`Nats::publish`](crate::Nats::publish),
/// [`Nats::request`](crate::Nats::request) and the replies of [`Nats::serve`](crate::Nats::serve):
/// from `Bytes`, `Vec<u8>`, `String` (no copy), `&[u8]`, `&str` and byte arrays (one copy).
#[derive(Debug, Clone)]
pub struct PayloadBytes(pub(crate) Bytes);

impl From<Bytes> for PayloadBytes {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}
impl From<Vec<u8>> for PayloadBytes {
    fn from(b: Vec<u8>) -> Self {
        Self(Bytes::from(b))
    }
}
impl From<String> for PayloadBytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}
impl From<&[u8]> for PayloadBytes {
    fn from(b: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(b))
    }
}
impl From<&str> for PayloadBytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}
impl<const N: usize> From<&[u8; N]> for PayloadBytes {
    fn from(b: &[u8; N]) -> Self {
        Self(Bytes::copy_from_slice(b))
    }
}

impl ephemeral_bus::IntoPayload for PayloadBytes {
    fn as_payload(&self) -> &[u8] {
        &self.0
    }

    fn into_payload(self) -> Bytes {
        self.0
    }
}

impl AsRef<[u8]> for PayloadBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
