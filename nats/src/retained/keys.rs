//! Store keys ↔ KV keys: `[-/_=.a-zA-Z0-9]` only, escaped segment by segment.
//!
//! | segment | KV token |
//! |---|---|
//! | empty | `=` |
//! | anything else | itself, with every byte outside `[-/_a-zA-Z0-9]` (and `=`) written `=XX` |
//!
//! Injective, the identity on ordinary keys, and [`decode_key`] is its exact inverse
//! (refusing what [`encode_key`] cannot produce).

use ephemeral::Name;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_')
}

/// The KV key of a store key.
pub(crate) fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for (i, segment) in key.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if segment.is_empty() {
            out.push('=');
            continue;
        }
        for &byte in segment.as_bytes() {
            if plain(byte) {
                out.push(char::from(byte));
            } else {
                out.push('=');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
    }
    out
}

/// The store key of a KV key, if it is one [`encode_key`] produced.
pub(crate) fn decode_key(token: &str) -> Option<Name> {
    let mut bytes = Vec::with_capacity(token.len());
    for (i, segment) in token.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'.');
        }
        if segment == "=" {
            continue;
        }
        if segment.is_empty() {
            return None;
        }
        let mut rest = segment.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            if first == b'=' {
                let hex = tail.get(..2)?;
                let text = std::str::from_utf8(hex).ok()?;
                if text.bytes().any(|b| b.is_ascii_lowercase()) {
                    return None;
                }
                let byte = u8::from_str_radix(text, 16).ok()?;
                if plain(byte) {
                    return None;
                }
                bytes.push(byte);
                rest = &tail[2..];
            } else if plain(first) {
                bytes.push(first);
                rest = tail;
            } else {
                return None;
            }
        }
    }
    Name::new(&String::from_utf8(bytes).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_unchanged() {
        for key in ["a", "user.42", "sku-7/a", "A_b.c"] {
            assert_eq!(encode_key(key), key);
            assert_eq!(decode_key(key).as_deref(), Some(key));
        }
    }

    #[test]
    fn other_keys_round_trip_and_are_valid_kv_keys() {
        for key in [
            "a..b", ".a", "a.", "é.x", "a:b", "x=y", "$v", "a>b", "%", "a.>.b",
        ] {
            let token = encode_key(key);
            assert!(
                token.bytes().all(|b| plain(b) || b == b'.' || b == b'='),
                "{token}"
            );
            assert!(!token.starts_with('.') && !token.ends_with('.'), "{token}");
            assert_eq!(decode_key(&token).as_deref(), Some(key), "{token}");
        }
        assert_eq!(encode_key("a..b"), "a.=.b");
        assert_eq!(encode_key("x=y"), "x=3Dy");
    }

    #[test]
    fn tokens_no_key_produces_are_refused() {
        for token in ["a..b", "=3d", "=41", "==", "a=", "a b"] {
            assert_eq!(decode_key(token), None, "{token}");
        }
    }
}
