//! How keys and records are laid out in the database.
//!
//! Every integer in a *key* is big-endian, so LMDB's byte order is numeric order (a range
//! of revisions is a range of keys); every integer in a *record* is little-endian. Names
//! and keys follow the naming rule, which forbids control characters, so a `0` byte is a
//! safe separator after them.
//!
//! | table | key | record |
//! |---|---|---|
//! | `names` | `s\0<store>`, `r\0<room>`, `d\0<durable>`, `\0format`, `\0next_id` | id (u32) + JSON options |
//! | `counters` | id | `[u64; 8]` |
//! | `kv` | id, key | [`KvRecord`] |
//! | `hist` | id, key, `\0`, revision | [`KvRecord`] |
//! | `exp` | expiry ms, id, key | revision |
//! | `own` | owner, id, key | revision |
//! | `log` | id, revision | event |
//! | `msg` | id, sequence | message |

use std::sync::Arc;

use ephemeral::{HeaderValue, Name};

/// Bytes of a `kv` record before the value.
pub(crate) const KV_HEADER: usize = 32;

/// The fixed part of every store, room and durable id key.
pub(crate) fn id_key(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// A key of `kv`: the store id, then the key.
pub(crate) fn kv_key(id: u32, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A key of `kv` on the stack (keys are names: at most 255 bytes), for the read path.
pub(crate) struct KvKey {
    buf: [u8; 4 + ephemeral::MAX_NAME_LEN],
    len: usize,
}

impl KvKey {
    /// `id` then `key`; a key longer than a name may be is cut (it cannot be stored either).
    pub(crate) fn new(id: u32, key: &str) -> Self {
        let mut buf = [0u8; 4 + ephemeral::MAX_NAME_LEN];
        buf[..4].copy_from_slice(&id.to_be_bytes());
        let n = key.len().min(ephemeral::MAX_NAME_LEN);
        buf[4..4 + n].copy_from_slice(&key.as_bytes()[..n]);
        Self { buf, len: 4 + n }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The prefix of every `hist` key of one key of one store.
pub(crate) fn hist_prefix(id: u32, key: &str) -> Vec<u8> {
    let mut k = kv_key(id, key);
    k.push(0);
    k
}

/// A key of `hist`.
pub(crate) fn hist_key(id: u32, key: &str, revision: u64) -> Vec<u8> {
    let mut k = hist_prefix(id, key);
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

/// A key of `exp`: the expiry first, so the earliest expiry of every store is the first key.
pub(crate) fn exp_key(expires_ms: u64, id: u32, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&expires_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A key of `exp`, split: (expiry, store id, key).
pub(crate) fn split_exp_key(k: &[u8]) -> Option<(u64, u32, &str)> {
    let expires = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let id = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?);
    let key = std::str::from_utf8(k.get(12..)?).ok()?;
    Some((expires, id, key))
}

/// A key of `own`: the owner first, so one owner's values are one range.
pub(crate) fn own_key(owner: u64, id: u32, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(12 + key.len());
    k.extend_from_slice(&owner.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// A key of `own`, split: (owner, store id, key).
pub(crate) fn split_own_key(k: &[u8]) -> Option<(u64, u32, &str)> {
    let owner = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let id = u32::from_be_bytes(k.get(8..12)?.try_into().ok()?);
    let key = std::str::from_utf8(k.get(12..)?).ok()?;
    Some((owner, id, key))
}

/// A key of `log` or `msg`: the id, then a revision or sequence.
pub(crate) fn seq_key(id: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence of a `log` or `msg` key.
pub(crate) fn seq_of(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(4..12)?.try_into().ok()?))
}

/// A key of `names`.
pub(crate) fn name_key(kind: u8, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len());
    k.push(kind);
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The kind byte of a store's name key.
pub(crate) const STORE: u8 = b's';
/// The kind byte of a room's name key.
pub(crate) const ROOM: u8 = b'r';
/// The kind byte of a durable subscription's name key.
pub(crate) const DURABLE: u8 = b'd';

/// A `names` record: the id, then the options as JSON.
pub(crate) fn encode_named(id: u32, options_json: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(4 + options_json.len());
    r.extend_from_slice(&id.to_le_bytes());
    r.extend_from_slice(options_json);
    r
}

/// A `names` record, split: (id, options JSON).
pub(crate) fn decode_named(r: &[u8]) -> Option<(u32, &[u8])> {
    let id = u32::from_le_bytes(r.get(..4)?.try_into().ok()?);
    Some((id, r.get(4..)?))
}

/// Eight counters per id.
pub(crate) type Counters = [u64; 8];

pub(crate) fn encode_counters(c: &Counters) -> [u8; 64] {
    let mut r = [0u8; 64];
    for (i, v) in c.iter().enumerate() {
        r[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    r
}

pub(crate) fn decode_counters(r: Option<&[u8]>) -> Counters {
    let mut c = [0u64; 8];
    if let Some(r) = r {
        for (i, v) in c.iter_mut().enumerate() {
            if let Some(bytes) = r.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()) {
                *v = u64::from_le_bytes(bytes);
            }
        }
    }
    c
}

/// A value as stored in `kv` and `hist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvRecord<'a> {
    pub(crate) revision: u64,
    pub(crate) set_at_ms: u64,
    /// 0: never.
    pub(crate) expires_ms: u64,
    /// 0: not owned.
    pub(crate) owner: u64,
    pub(crate) value: &'a [u8],
}

impl KvRecord<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(KV_HEADER + self.value.len());
        r.extend_from_slice(&self.revision.to_le_bytes());
        r.extend_from_slice(&self.set_at_ms.to_le_bytes());
        r.extend_from_slice(&self.expires_ms.to_le_bytes());
        r.extend_from_slice(&self.owner.to_le_bytes());
        r.extend_from_slice(self.value);
        r
    }
}

pub(crate) fn decode_kv(r: &[u8]) -> Option<KvRecord<'_>> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(r.get(i..i + 8)?.try_into().ok()?)) };
    Some(KvRecord {
        revision: u(0)?,
        set_at_ms: u(8)?,
        expires_ms: u(16)?,
        owner: u(24)?,
        value: r.get(KV_HEADER..)?,
    })
}

/// What a `log` entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Set = 1,
    Deleted = 2,
    Expired = 3,
}

/// Why a value was deleted, in a `log` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    None = 0,
    Deleted = 1,
    Cleared = 2,
    OwnerGone = 3,
}

/// A `log` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub(crate) kind: EventKind,
    pub(crate) cause: Cause,
    pub(crate) at_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) owner: u64,
    pub(crate) key: &'a str,
    pub(crate) value: &'a [u8],
}

impl Event<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(28 + self.key.len() + self.value.len());
        r.push(self.kind as u8);
        r.push(self.cause as u8);
        r.extend_from_slice(&self.at_ms.to_le_bytes());
        r.extend_from_slice(&self.expires_ms.to_le_bytes());
        r.extend_from_slice(&self.owner.to_le_bytes());
        // Keys are names: at most 255 bytes.
        r.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        r.extend_from_slice(self.key.as_bytes());
        r.extend_from_slice(self.value);
        r
    }
}

pub(crate) fn decode_event(r: &[u8]) -> Option<Event<'_>> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(r.get(i..i + 8)?.try_into().ok()?)) };
    let kind = match *r.first()? {
        1 => EventKind::Set,
        2 => EventKind::Deleted,
        3 => EventKind::Expired,
        _ => return None,
    };
    let cause = match *r.get(1)? {
        0 => Cause::None,
        1 => Cause::Deleted,
        2 => Cause::Cleared,
        3 => Cause::OwnerGone,
        _ => return None,
    };
    let key_len = usize::from(u16::from_le_bytes(r.get(26..28)?.try_into().ok()?));
    let key = std::str::from_utf8(r.get(28..28 + key_len)?).ok()?;
    Some(Event {
        kind,
        cause,
        at_ms: u(2)?,
        expires_ms: u(10)?,
        owner: u(18)?,
        key,
        value: r.get(28 + key_len..)?,
    })
}

/// A message of a room or a durable subscription, as stored in `msg`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MsgRecord<'a> {
    /// The sender (rooms) or origin (durable subscriptions).
    pub(crate) sender: u64,
    pub(crate) at_ms: u64,
    /// 0: never (the message's own time to live).
    pub(crate) expires_ms: u64,
    /// Empty for rooms.
    pub(crate) topic: &'a str,
    pub(crate) headers: &'a [(Arc<str>, HeaderValue)],
    pub(crate) payload: &'a [u8],
}

impl MsgRecord<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(30 + self.topic.len() + self.payload.len());
        r.extend_from_slice(&self.sender.to_le_bytes());
        r.extend_from_slice(&self.at_ms.to_le_bytes());
        r.extend_from_slice(&self.expires_ms.to_le_bytes());
        r.extend_from_slice(&(self.topic.len() as u16).to_le_bytes());
        r.extend_from_slice(self.topic.as_bytes());
        // Headers are few and short (a frame holds them); saturate rather than wrap.
        let count = u16::try_from(self.headers.len()).unwrap_or(u16::MAX);
        r.extend_from_slice(&count.to_le_bytes());
        for (k, v) in self.headers.iter().take(usize::from(count)) {
            put_str(&mut r, k);
            match v {
                HeaderValue::Bool(b) => {
                    r.push(1);
                    r.push(u8::from(*b));
                }
                HeaderValue::Int(i) => {
                    r.push(2);
                    r.extend_from_slice(&i.to_le_bytes());
                }
                HeaderValue::Float(f) => {
                    r.push(3);
                    r.extend_from_slice(&f.to_le_bytes());
                }
                HeaderValue::Str(s) => {
                    r.push(4);
                    put_str(&mut r, s);
                }
            }
        }
        r.extend_from_slice(self.payload);
        r
    }
}

fn put_str(r: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&s.as_bytes()[..len as usize]);
}

/// A decoded `msg` record, owning its parts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Msg {
    pub(crate) sender: u64,
    pub(crate) at_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) topic: Option<Name>,
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) payload: Arc<[u8]>,
}

/// The fixed fields of a `msg` record: (sender, at, expires).
pub(crate) fn msg_times(r: &[u8]) -> Option<(u64, u64)> {
    let at = u64::from_le_bytes(r.get(8..16)?.try_into().ok()?);
    let expires = u64::from_le_bytes(r.get(16..24)?.try_into().ok()?);
    Some((at, expires))
}

pub(crate) fn decode_msg(r: &[u8]) -> Option<Msg> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(r.get(i..i + 8)?.try_into().ok()?)) };
    let sender = u(0)?;
    let at_ms = u(8)?;
    let expires_ms = u(16)?;
    let topic_len = usize::from(u16::from_le_bytes(r.get(24..26)?.try_into().ok()?));
    let topic = std::str::from_utf8(r.get(26..26 + topic_len)?).ok()?;
    let topic = if topic.is_empty() {
        None
    } else {
        Some(Name::new(topic).ok()?)
    };
    let mut at = 26 + topic_len;
    let count = u16::from_le_bytes(r.get(at..at + 2)?.try_into().ok()?);
    at += 2;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (key, next) = get_str(r, at)?;
        at = next;
        let value = match *r.get(at)? {
            1 => {
                at += 2;
                HeaderValue::Bool(*r.get(at - 1)? != 0)
            }
            2 => {
                at += 9;
                HeaderValue::Int(i64::from_le_bytes(r.get(at - 8..at)?.try_into().ok()?))
            }
            3 => {
                at += 9;
                HeaderValue::Float(f64::from_le_bytes(r.get(at - 8..at)?.try_into().ok()?))
            }
            4 => {
                let (s, next) = get_str(r, at + 1)?;
                at = next;
                HeaderValue::Str(Arc::from(s))
            }
            _ => return None,
        };
        headers.push((Arc::from(key), value));
    }
    Some(Msg {
        sender,
        at_ms,
        expires_ms,
        topic,
        headers,
        payload: Arc::from(r.get(at..)?),
    })
}

fn get_str(r: &[u8], at: usize) -> Option<(&str, usize)> {
    let len = u32::from_le_bytes(r.get(at..at + 4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(r.get(at + 4..at + 4 + len)?).ok()?;
    Some((s, at + 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let kv = KvRecord {
            revision: 7,
            set_at_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_060_000,
            owner: 0xdead_beef,
            value: b"hello",
        };
        assert_eq!(decode_kv(&kv.encode()), Some(kv));

        let event = Event {
            kind: EventKind::Deleted,
            cause: Cause::OwnerGone,
            at_ms: 5,
            expires_ms: 0,
            owner: 9,
            key: "a.b:c",
            value: b"",
        };
        assert_eq!(decode_event(&event.encode()), Some(event));

        let headers = vec![
            (Arc::from("b"), HeaderValue::Bool(true)),
            (Arc::from("i"), HeaderValue::Int(-42)),
            (Arc::from("f"), HeaderValue::Float(1.5)),
            (Arc::from("s"), HeaderValue::Str(Arc::from("é:x"))),
        ];
        let msg = MsgRecord {
            sender: 3,
            at_ms: 4,
            expires_ms: 5,
            topic: "orders.created",
            headers: &headers,
            payload: b"42",
        };
        let decoded = decode_msg(&msg.encode()).unwrap();
        assert_eq!(decoded.topic.as_deref(), Some("orders.created"));
        assert_eq!(decoded.headers, headers);
        assert_eq!(&*decoded.payload, b"42");
        assert_eq!(
            (decoded.sender, decoded.at_ms, decoded.expires_ms),
            (3, 4, 5)
        );
        assert_eq!(msg_times(&msg.encode()), Some((4, 5)));
    }

    #[test]
    fn keys_sort_numerically() {
        assert!(seq_key(1, 255) < seq_key(1, 256));
        assert!(seq_key(1, u64::MAX) < seq_key(2, 0));
        assert!(exp_key(10, 9, "z") < exp_key(11, 1, "a"));
        assert_eq!(split_exp_key(&exp_key(10, 9, "z.y")), Some((10, 9, "z.y")));
        assert_eq!(split_own_key(&own_key(3, 9, "k")), Some((3, 9, "k")));
        assert!(hist_key(1, "a", 2) < hist_key(1, "a", 10));
        // "a" and "a.b" do not share a history prefix.
        assert!(!hist_key(1, "a.b", 1).starts_with(&hist_prefix(1, "a")));
    }

    #[test]
    fn truncated_records_are_refused() {
        assert_eq!(decode_kv(&[0; 10]), None);
        assert_eq!(decode_event(&[9; 40]), None);
        assert_eq!(decode_msg(&[0; 20]), None);
    }
}
