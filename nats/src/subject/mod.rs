//! Names and patterns ↔ NATS subjects.
//!
//! A [`Name`] may hold what a NATS subject may not: empty segments (`a..b`, `.a`, `a.`) and a
//! segment that is exactly `>` (a NATS wildcard). The server silently drops a publish to a
//! subject with an empty token, so such names are escaped, with `%` as the escape character,
//! segment by segment:
//!
//! | segment | token |
//! |---|---|
//! | empty | `%` |
//! | exactly `>` | `%3E` |
//! | anything else | itself, with each `%` written `%25` |
//!
//! The encoding is injective and leaves ordinary names (no `%`, no empty segment, no `>`
//! segment) unchanged; [`decode`] is its exact inverse and refuses every token [`encode`]
//! cannot produce, so a subject maps back to at most one name.

use ephemeral::Name;

use crate::NatsError;

/// The NATS subject prefix of messages (`<prefix>.s.<name>`).
pub(crate) const MESSAGES: &str = "s";
/// The NATS subject prefix of requests (`<prefix>.q.<topic>`).
pub(crate) const REQUESTS: &str = "q";
/// The NATS subject prefix of this crate's own traffic (`<prefix>.i.<topic>`: the state
/// exchange of `ephemeral top`), apart from messages, so no user subscription sees it.
pub(crate) const INTERNAL: &str = "i";

/// The NATS subject token of work queues (`<prefix>.wq.<queue>…`).
pub(crate) const QUEUES: &str = "wq";

/// The tokens this crate writes right after the prefix: `s` (messages), `q` (requests),
/// `i` (its own traffic), `wq` (work queues), `room` and `kvstats` (retained state). No
/// prefix ([`NatsOptions::prefix`](crate::NatsOptions::prefix)) may have
/// a segment that is one of them, so a subject names its prefix unambiguously: the first
/// reserved token ends it. (Were `app.s` a prefix, its message `x` and prefix `app`'s
/// message `s.x` would both be `app.s.s.x`.)
pub const RESERVED: [&str; 6] = [MESSAGES, REQUESTS, INTERNAL, QUEUES, "room", "kvstats"];

/// Checks a subject prefix: one or more dot-separated tokens of ASCII letters, digits, `-`
/// and `_` (no wildcard, no empty token, nothing the server or other clients may read
/// differently), none of them [`RESERVED`].
pub(crate) fn check_prefix(prefix: &str) -> Result<(), NatsError> {
    let bad = |reason| {
        Err(NatsError::BadPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return bad("it is empty");
    }
    if prefix.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return bad("it has an empty segment");
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("it has a character other than letters, digits, `-`, `_` and `.`");
        }
        if RESERVED.contains(&token) {
            return bad(
                "a segment is one of the words the crate's own subjects put after the prefix \
                 (s, q, i, wq, room, kvstats), so another prefix's subjects could be read as its own",
            );
        }
    }
    Ok(())
}

/// The JetStream-name token of a (checked) prefix, injective: a prefix of lowercase letters,
/// digits, `-` and `.` is upper-cased with `_` for `.` (`shop.prod` → `SHOP_PROD`); any
/// other (upper-case letters or `_`, which would meet those) also gets `_h` and a hash of
/// the prefix, in lower-case hex (`Shop` → `SHOP_h…`), which no token of the first kind
/// holds. So different prefixes never share a stream or a bucket.
pub(crate) fn resource_token(prefix: &str) -> String {
    let upper: String = prefix
        .chars()
        .map(|c| {
            if c == '.' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    let plain = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if plain {
        upper
    } else {
        format!("{upper}_h{:016x}", crate::retained::fnv(prefix))
    }
}

/// The token of one name segment.
fn push_segment(out: &mut String, segment: &str) {
    match segment {
        "" => out.push('%'),
        ">" => out.push_str("%3E"),
        s if s.contains('%') => out.push_str(&s.replace('%', "%25")),
        s => out.push_str(s),
    }
}

/// The subject tokens of `name` (without a prefix), e.g. `a..b` → `a.%.b`.
#[must_use]
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, segment) in name.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_segment(&mut out, segment);
    }
    out
}

/// The name whose [`encode`]ing is `tokens`, or `None` when no name encodes to it (a token
/// with a `%` that `encode` would not write, or a decoded string that is not a valid name).
#[must_use]
pub fn decode(tokens: &str) -> Option<Name> {
    let mut name = String::with_capacity(tokens.len());
    for (i, token) in tokens.split('.').enumerate() {
        if i > 0 {
            name.push('.');
        }
        match token {
            "%" => {}
            "%3E" => name.push('>'),
            t if t.contains('%') => {
                let decoded = t.replace("%25", "%");
                // Only `%25` may appear: re-encoding must give the token back exactly.
                if decoded.replace('%', "%25") != t {
                    return None;
                }
                name.push_str(&decoded);
            }
            // `encode` never writes an empty token or a bare `>` (the server would drop the
            // one and read the other as a wildcard); a foreign publisher might.
            "" | ">" => return None,
            t => name.push_str(t),
        }
    }
    Name::new(&name).ok()
}

/// `<prefix>.<kind>.<encoded name>`.
pub(crate) fn subject(prefix: &str, kind: &str, name: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + kind.len() + name.len() + 6);
    out.push_str(prefix);
    out.push('.');
    out.push_str(kind);
    out.push('.');
    for (i, segment) in name.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_segment(&mut out, segment);
    }
    out
}

/// The name of a subject under `<prefix>.<kind>.`, if it is one.
pub(crate) fn name_of(prefix: &str, kind: &str, subject: &str) -> Option<Name> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let rest = rest.strip_prefix(kind)?.strip_prefix('.')?;
    decode(rest)
}

mod route;
pub(crate) use route::routed;
pub use route::{Route, route};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_tokens_differ_for_different_prefixes() {
        assert_eq!(resource_token("ephemeral"), "EPHEMERAL");
        assert_eq!(resource_token("shop.prod-2"), "SHOP_PROD-2");
        let tokens: Vec<String> = ["app", "App", "APP", "x.y", "x_y", "X.y", "x.y.h0", "a_b"]
            .iter()
            .map(|p| resource_token(p))
            .collect();
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(resource_token("App").starts_with("APP_h"));
    }

    #[test]
    fn ordinary_names_are_unchanged() {
        for name in [
            "a",
            "error.db.timeout",
            "é.x",
            "a:b.c",
            "a+b",
            "$x.y",
            "a>b",
        ] {
            assert_eq!(encode(name), name);
            assert_eq!(decode(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn awkward_names_are_escaped() {
        let cases = [
            ("a..b", "a.%.b"),
            (".a", "%.a"),
            ("a.", "a.%"),
            ("a.>", "a.%3E"),
            ("50%.off", "50%25.off"),
            ("%", "%25"),
            ("%3E", "%253E"),
            (".", "%.%"),
        ];
        for (name, subject) in cases {
            assert_eq!(encode(name), subject, "{name}");
            assert_eq!(decode(subject).unwrap().as_str(), name, "{subject}");
        }
    }

    #[test]
    fn foreign_tokens_do_not_decode() {
        for subject in [
            "a.%41", "%2", "a..b", "%%", "a.%3e", "a.%25%", "a b", "", "a.>", "a.*",
        ] {
            assert!(decode(subject).is_none(), "{subject}");
        }
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("ephemeral").is_ok());
        assert!(check_prefix("app-1.prod_eu").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", "é", ".a"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
