//! What a queue is called on the server: streams, subjects, consumers; keys as subject tokens.

use super::error::{QueueError, shorten};

/// The names of one queue's server objects.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// The queue's own name.
    pub(crate) queue: String,
    /// The work stream, `<PREFIX>_WQ_<queue>`.
    pub(crate) stream: String,
    /// The dead-letter stream, `<PREFIX>_WQ_<queue>_DEAD`.
    pub(crate) dead_stream: String,
    /// `<prefix>.wq.<queue>`.
    pub(crate) base: String,
}

/// What the dead-letter stream's name adds to the work stream's; no queue name ends in it.
const DEAD_SUFFIX: &str = "_DEAD";

/// The consumer of a plain queue.
pub(crate) const PLAIN_CONSUMER: &str = "work";
/// The priority group of keyed partition consumers.
pub(crate) const GROUP: &str = "ephemeral";

impl Names {
    pub(crate) fn new(prefix: &str, queue: &str) -> Result<Self, QueueError> {
        check_queue_name(queue)?;
        let upper = crate::subject::resource_token(prefix);
        Ok(Self {
            queue: queue.to_owned(),
            stream: format!("{upper}_WQ_{queue}"),
            dead_stream: format!("{upper}_WQ_{queue}{DEAD_SUFFIX}"),
            base: format!("{prefix}.{}.{queue}", crate::subject::QUEUES),
        })
    }

    /// Where plain jobs are pushed.
    pub(crate) fn jobs(&self) -> String {
        format!("{}.j", self.base)
    }

    /// Where keyed jobs are pushed (`k.<key token>`), before the stream's transform.
    pub(crate) fn keyed(&self, token: &str) -> String {
        format!("{}.k.{token}", self.base)
    }

    /// The most bytes the stored subject of a job pushed to `subject` takes: a keyed job's
    /// `k.<token>` is stored as `p.<partition>.<token>` (at most 4 digits: 1024 partitions
    /// at most), a plain job's as it was pushed.
    pub(crate) fn stored_len(&self, subject: &str) -> usize {
        if subject == self.jobs() {
            subject.len()
        } else {
            subject.len() + ".p.1023.".len() - ".k.".len()
        }
    }

    /// The stream subject keyed pushes match.
    pub(crate) fn keyed_wildcard(&self) -> String {
        format!("{}.k.*", self.base)
    }

    /// The stored subject of a keyed job: `p.<partition>.<key token>`.
    pub(crate) fn partition_transform(&self, partitions: u16) -> String {
        format!(
            "{}.p.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}",
            self.base
        )
    }

    /// The filter of partition `n`'s consumer.
    pub(crate) fn partition_filter(&self, n: u16) -> String {
        format!("{}.p.{n}.*", self.base)
    }

    /// The consumer of partition `n`.
    pub(crate) fn partition_consumer(n: u16) -> String {
        format!("part-{n}")
    }

    /// Where dead letters go.
    pub(crate) fn dead(&self) -> String {
        format!("{}.dead", self.base)
    }

    /// Where the nodes of a keyed queue announce themselves (core NATS).
    pub(crate) fn members(&self) -> String {
        format!("{}.members", self.base)
    }

    /// The key token of a stored subject (`…p.<n>.<token>` or `…k.<token>`).
    pub(crate) fn key_of(&self, subject: &str) -> Option<String> {
        let rest = subject
            .strip_prefix(self.base.as_str())?
            .strip_prefix('.')?;
        let token = if let Some(rest) = rest.strip_prefix("p.") {
            rest.split_once('.')?.1
        } else {
            rest.strip_prefix("k.")?
        };
        decode_key(token)
    }

    /// The KV bucket of idempotency claims.
    pub(crate) fn claims_bucket(&self) -> String {
        format!("{}_CLAIMS", self.stream)
    }

    /// The advisory subject for jobs that ran out of deliveries, for every consumer.
    pub(crate) fn max_deliveries_advisory(&self) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*",
            self.stream
        )
    }
}

fn check_queue_name(queue: &str) -> Result<(), QueueError> {
    let bad = |reason| {
        Err(QueueError::BadName {
            name: shorten(queue),
            reason,
        })
    };
    if queue.is_empty() {
        return bad("it is empty");
    }
    if queue.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    if !queue
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("it has a character other than letters, digits, `-` and `_`");
    }
    // Queue `x`'s dead-letter stream is `<PREFIX>_WQ_x_DEAD`, which is queue `x_DEAD`'s
    // work stream: one of the two would bind the other's stream as its own.
    if queue.ends_with(DEAD_SUFFIX) {
        return bad(
            "it ends in `_DEAD`, which is reserved: the dead-letter stream of the queue named without it (`<PREFIX>_WQ_<name>_DEAD`) would be this queue's work stream",
        );
    }
    Ok(())
}

/// Checks a job id: it travels as the `Nats-Msg-Id` header, whose value NATS trims of
/// leading and trailing whitespace (` a` would be deduplicated against `a`, and `a ` be
/// delivered as `a`), so such an id is refused rather than changed.
pub(crate) fn check_id(id: &str) -> Result<(), QueueError> {
    let bad = |reason| {
        Err(QueueError::BadId {
            id: shorten(id),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if id.chars().any(char::is_control) {
        return bad("it has a control character");
    }
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return bad(
            "it starts or ends with whitespace, which NATS headers do not keep (` a` would be the job `a`)",
        );
    }
    Ok(())
}

/// A key as one subject token: `%`, `.`, `*`, `>`, spaces and control bytes are written
/// `%XX`; the empty key is `%`. Injective, and ordinary keys (`alice`, `order-42`) are
/// unchanged.
pub(crate) fn encode_key(key: &str) -> Result<String, QueueError> {
    if key.len() > 255 {
        return Err(QueueError::BadKey {
            key: shorten(key),
            reason: "it is longer than 255 bytes",
        });
    }
    if key.is_empty() {
        return Ok("%".to_owned());
    }
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        match c {
            '%' | '.' | '*' | '>' => push_escaped(&mut out, c),
            c if c.is_ascii() && (c.is_ascii_whitespace() || c.is_ascii_control()) => {
                push_escaped(&mut out, c);
            }
            c if c.is_whitespace() || c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    use std::fmt::Write;
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = write!(out, "%{:02X}", u32::from(c));
}

/// The key a token encodes, or `None` for a token [`encode_key`] cannot produce.
pub(crate) fn decode_key(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("app.prod", "orders").unwrap();
        assert_eq!(names.stream, "APP_PROD_WQ_orders");
        assert_eq!(names.dead_stream, "APP_PROD_WQ_orders_DEAD");
        assert_eq!(names.jobs(), "app.prod.wq.orders.j");
        assert_eq!(names.partition_filter(3), "app.prod.wq.orders.p.3.*");
        assert_eq!(
            names.partition_transform(8),
            "app.prod.wq.orders.p.{{partition(8,1)}}.{{wildcard(1)}}"
        );
        // Prefixes that differ only in case or in `.` against `_` get streams of their own.
        let upper = Names::new("App", "orders").unwrap();
        let underscore = Names::new("app_prod", "orders").unwrap();
        assert!(upper.stream.starts_with("APP_h"), "{}", upper.stream);
        assert_ne!(underscore.stream, names.stream);
        assert_ne!(upper.stream, Names::new("app", "orders").unwrap().stream);
        // Only the exact suffix is the dead-letter stream's (stream names are case-sensitive).
        for good in ["DEAD", "x_DEADx", "x_dead", "x-DEAD"] {
            assert!(Names::new("p", good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a b", "é", &"x".repeat(65), "x_DEAD", "_DEAD"] {
            assert!(Names::new("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_round_trip_through_one_token() {
        for key in [
            "alice",
            "",
            "a.b",
            "50%",
            "a b",
            "*",
            ">",
            "é",
            "a\u{2003}b",
            "tab\t",
        ] {
            let token = encode_key(key).unwrap();
            assert!(
                !token.is_empty()
                    && !token.contains(['.', '*', '>', ' ', '\t'])
                    && !token.chars().any(char::is_whitespace),
                "{key:?} -> {token}"
            );
            assert_eq!(decode_key(&token).as_deref(), Some(key), "{token}");
        }
        assert_eq!(encode_key("order-42").unwrap(), "order-42");
        assert!(encode_key(&"k".repeat(256)).is_err());
        assert_eq!(decode_key("%G1"), None);
        assert_eq!(decode_key("%4"), None);
    }

    #[test]
    fn subjects_give_back_key_and_partition() {
        let names = Names::new("e", "q").unwrap();
        assert_eq!(names.key_of("e.wq.q.p.7.a%2Eb").as_deref(), Some("a.b"));
        assert_eq!(names.key_of("e.wq.q.k.bob").as_deref(), Some("bob"));
        assert_eq!(names.key_of("e.wq.other.k.bob"), None);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("order-1").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("a\r\nb").is_err());
        assert!(check_id(&"x".repeat(1025)).is_err());
        for bad in [" a", "a ", " ", "a\u{2003}", "\u{a0}a"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id("a b").is_ok());
    }
}
