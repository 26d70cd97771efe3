//! How `watch` shows one item: a text line or a JSON object.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use ephemeral_bus::{BRIDGE_HEADERS, Bridged, KEY_HEADER, Message, MessageKind};

use crate::top::fmt::one_line;

/// At most this many characters of a text payload are shown on a text line.
const SUMMARY_CHARS: usize = 60;

/// What a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A signal raised in a bridged sink (or by `ephemeral raise`).
    Signal,
    /// A hold began (first lease refresh seen).
    Held,
    /// A hold was released by its holder.
    Released,
    /// A hold's lease ran out without a release (its holder died or stopped).
    Lapsed,
    /// A copy of a request to a server (`watch --requests`).
    Request,
    /// A copy of a reply to a request.
    Reply,
    /// A copy of a requester giving up on a stream of replies.
    Cancel,
    /// A plain message.
    Message,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Held => "held",
            Kind::Released => "released",
            Kind::Lapsed => "lapsed",
            Kind::Request => "request",
            Kind::Reply => "reply",
            Kind::Cancel => "cancel",
            Kind::Message => "message",
        }
    }

    /// Classifies a message: requests and replies by their kind, signals by what bridges
    /// publish for them.
    pub(crate) fn of(message: &Message) -> Kind {
        match message.kind() {
            MessageKind::Request => return Kind::Request,
            MessageKind::Reply => return Kind::Reply,
            MessageKind::Cancel => return Kind::Cancel,
            _ => {}
        }
        match Bridged::of(message) {
            Some(Bridged::Release { .. }) => Kind::Released,
            Some(Bridged::Hold { .. }) => Kind::Held,
            Some(_) => Kind::Signal,
            None => Kind::Message,
        }
    }
}

/// How much of a line the text form shows.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Style {
    /// The whole payload (text as it is, binary as hex) instead of a summary.
    pub(crate) full: bool,
    /// Stdout is a terminal: a whole payload's control characters (but line breaks and
    /// tabs) are escaped, as `request` does with a reply, so no message can send escape
    /// sequences to the terminal.
    pub(crate) terminal: bool,
    /// The message id (origin and sequence), and on request, reply and cancel lines the
    /// request they belong to (requester and correlation).
    pub(crate) ids: bool,
}

/// One line of `watch` output.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) time: SystemTime,
    pub(crate) kind: Kind,
    pub(crate) topic: String,
    pub(crate) key: Option<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) origin: Option<u64>,
    /// The publisher's sequence number of the message.
    pub(crate) seq: u64,
    /// The peer that sent the request a request, reply or cancel belongs to.
    pub(crate) requester: Option<u64>,
    /// The requester's number for that request.
    pub(crate) correlation: Option<u64>,
}

impl Line {
    pub(crate) fn from_message(message: &Message, kind: Kind) -> Self {
        let key = message.header(KEY_HEADER).map(ToString::to_string);
        let headers = message
            .headers()
            .iter()
            .filter(|(k, _)| !BRIDGE_HEADERS.contains(&&**k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            time: message.timestamp(),
            kind,
            topic: message.topic().to_string(),
            key,
            ttl: message.ttl().filter(|_| kind == Kind::Signal),
            payload: message.payload().to_vec(),
            headers,
            origin: Some(message.origin()),
            seq: message.id(),
            requester: message.requester(),
            correlation: message.correlation(),
        }
    }

    /// The text form: `HH:MM:SS.mmm kind topic key=.. ttl=.. payload headers`, then with
    /// `ids` the message id `id=<origin>/<sequence>`, and for requests, replies and cancels
    /// `request=<requester>/<correlation>`: the same on a request and on every reply and
    /// cancel of it, and on no other request's (the message id of a reply is its server's).
    pub(crate) fn text(&self, style: Style) -> String {
        let mut out = format!(
            "{} {:<8} {}",
            clock(self.time),
            self.kind.as_str(),
            self.topic
        );
        // Keys and headers are any process's text: control characters are shown as spaces,
        // so nothing on the bus can send escape sequences to the terminal (as in `top`).
        if let Some(key) = &self.key {
            let _ = write!(out, " key={}", one_line(key));
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, " ttl={}", ttl_text(ttl));
        }
        if !self.payload.is_empty() {
            if style.full {
                let _ = write!(out, " {}", full(&self.payload, style.terminal));
            } else {
                let _ = write!(out, " {}", summary(&self.payload));
            }
        }
        for (k, v) in &self.headers {
            let _ = write!(out, " {}={}", one_line(k), one_line(v));
        }
        if style.ids {
            if let Some(origin) = self.origin {
                let _ = write!(out, " id={origin:016x}/{}", self.seq);
            }
            if let (Some(requester), Some(correlation)) = (self.requester, self.correlation) {
                let _ = write!(out, " request={requester:016x}/{correlation}");
            }
        }
        out
    }

    /// The JSON form, one object per line (the shape of [`LineJson`]).
    pub(crate) fn json(&self) -> String {
        let text = std::str::from_utf8(&self.payload).ok();
        let json = LineJson {
            time: rfc3339(self.time),
            kind: self.kind.as_str(),
            topic: &self.topic,
            key: self.key.as_deref(),
            ttl_ms: self.ttl.map(|t| t.as_millis() as u64),
            payload: text,
            payload_hex: text.is_none().then(|| hex(&self.payload)),
            payload_len: self.payload.len(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            origin: self.origin.map(|o| format!("{o:016x}")),
            seq: self.seq,
            requester: self.requester.map(|r| format!("{r:016x}")),
            correlation: self.correlation,
        };
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// One `watch --json` line: RFC 3339 UTC `time`, `kind`, `topic`, `key`, `ttl_ms`,
/// `payload` (text, or `null` with `payload_hex` for binary), `payload_len`, `headers`
/// (sorted by name), `origin` (16 hex digits), `seq`, and `requester` (16 hex digits) and
/// `correlation`, which pair a reply or cancel with its request (both `null` on other lines).
#[derive(serde::Serialize)]
struct LineJson<'a> {
    time: String,
    kind: &'static str,
    topic: &'a str,
    key: Option<&'a str>,
    ttl_ms: Option<u64>,
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
    payload_len: usize,
    headers: std::collections::BTreeMap<&'a str, &'a str>,
    origin: Option<String>,
    seq: u64,
    requester: Option<String>,
    correlation: Option<u64>,
}

/// A `watch --json` lag notice.
#[derive(serde::Serialize)]
struct LaggedJson {
    time: String,
    kind: &'static str,
    missed: u64,
}

/// A lag notice: this watcher missed `missed` items because it fell behind.
pub(crate) fn lagged_text(missed: u64) -> String {
    format!(
        "{} lagged   missed {missed} item(s): this watcher fell behind, or lost the connection meanwhile",
        clock(SystemTime::now())
    )
}

/// A lag notice as JSON.
pub(crate) fn lagged_json(missed: u64) -> String {
    serde_json::to_string(&LaggedJson {
        time: rfc3339(SystemTime::now()),
        kind: "lagged",
        missed,
    })
    .unwrap_or_default()
}

/// A remaining time to live as a text line shows it: to the nearest tenth of a second from
/// one second up, to the millisecond below. What is left on arrival is a few milliseconds
/// short of what was sent: a signal raised with `--ttl 30s` reads `30s`, not `29s 998ms`.
/// `--json` keeps the exact milliseconds.
pub(crate) fn ttl_text(ttl: Duration) -> String {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let shown = if ms >= 1000 {
        ms.saturating_add(50) / 100 * 100
    } else {
        ms
    };
    humantime::format_duration(Duration::from_millis(shown)).to_string()
}

/// Wall-clock time of day in the local time zone (`TZ`, else the system's) with
/// milliseconds: `06:03:01.123`. `--json` lines carry full RFC 3339 UTC times instead.
pub(crate) fn clock(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%H:%M:%S%.3f")
        .to_string()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A short, single-line, quoted summary of a payload.
pub(crate) fn summary(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => {
            let count = text.chars().count();
            let shown: String = text.chars().take(SUMMARY_CHARS).collect();
            let mut out = format!("{shown:?}");
            if count > SUMMARY_CHARS {
                let _ = write!(out, "…({} bytes)", payload.len());
            }
            out
        }
        Err(_) => {
            let head = &payload[..payload.len().min(16)];
            let ellipsis = if payload.len() > 16 { "…" } else { "" };
            format!("<{} bytes: {}{ellipsis}>", payload.len(), hex(head))
        }
    }
}

/// A value or reply as `kv get` and `request` print it: as it is into a pipe or a file, and
/// on a terminal made harmless: text with its control characters (but line breaks and tabs)
/// escaped as `\u{1b}`, anything else as `<N bytes: hex>`, so no stored value or reply can
/// send escape sequences to the terminal.
pub(crate) fn raw_or_escaped(value: &[u8], terminal: bool) -> std::borrow::Cow<'_, [u8]> {
    let escaped = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !terminal {
        return value.into();
    }
    match std::str::from_utf8(value) {
        Ok(text) if !text.contains(escaped) => value.into(),
        Ok(text) => text
            .chars()
            .fold(String::new(), |mut s, c| {
                if escaped(c) {
                    s.extend(c.escape_default());
                } else {
                    s.push(c);
                }
                s
            })
            .into_bytes()
            .into(),
        Err(_) => format!("<{} bytes: {}>", value.len(), hex(value))
            .into_bytes()
            .into(),
    }
}

/// A whole payload: text as it is (on a `terminal`, its control characters but line breaks
/// and tabs escaped, as [`raw_or_escaped`] does), anything else as hex.
pub(crate) fn full(payload: &[u8], terminal: bool) -> String {
    match std::str::from_utf8(payload) {
        Ok(_) => String::from_utf8_lossy(&raw_or_escaped(payload, terminal)).into_owned(),
        Err(_) => hex(payload),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_short_quoted_and_single_line() {
        assert_eq!(summary(b"hello"), "\"hello\"");
        assert_eq!(summary(b"a\nb"), "\"a\\nb\"");
        let long = "x".repeat(100);
        let s = summary(long.as_bytes());
        assert!(s.starts_with(&format!("\"{}\"", "x".repeat(60))));
        assert!(s.ends_with("…(100 bytes)"));
        assert_eq!(summary(&[0xff, 0x00]), "<2 bytes: ff00>");
        assert_eq!(&*raw_or_escaped(b"a\x1b[2Jb", false), b"a\x1b[2Jb");
        assert_eq!(
            &*raw_or_escaped(b"a\x1b[2J\tb\n", true),
            b"a\\u{1b}[2J\tb\n"
        );
        assert_eq!(&*raw_or_escaped(&[0xff, 0x00], true), b"<2 bytes: ff00>");
    }

    #[test]
    fn full_payloads_are_text_as_is_or_hex() {
        let long = "x".repeat(100);
        assert_eq!(full(long.as_bytes(), false), long);
        assert_eq!(full(b"a\nb", false), "a\nb");
        assert_eq!(full(&[0xff, 0x00, 0x10], false), "ff0010");
        // On a terminal no escape sequence gets through; line breaks and tabs do.
        assert_eq!(full(b"a\x1b[2J\tb\n", false), "a\x1b[2J\tb\n");
        assert_eq!(full(b"a\x1b[2J\tb\n", true), "a\\u{1b}[2J\tb\n");
        assert_eq!(full(&[0xff, 0x00, 0x10], true), "ff0010");
    }

    /// A line with nothing but a signal's remaining time to live.
    fn signal_with_ttl(ttl: Duration) -> Line {
        Line {
            time: SystemTime::UNIX_EPOCH,
            kind: Kind::Signal,
            topic: "error.payment".to_owned(),
            key: None,
            ttl: Some(ttl),
            payload: Vec::new(),
            headers: Vec::new(),
            origin: None,
            seq: 0,
            requester: None,
            correlation: None,
        }
    }

    /// `watch` printed keys and headers raw, so any process on the bus could send escape
    /// sequences to the terminal (`key=k\u{1}z` reached it as the byte 001).
    #[test]
    fn control_characters_in_keys_and_headers_never_reach_the_terminal() {
        let mut line = signal_with_ttl(Duration::from_secs(1));
        line.key = Some("k\u{1}\u{1b}[2Jz".to_owned());
        line.headers = vec![("h\u{7}".to_owned(), "v\r\nx".to_owned())];
        let text = line.text(Style::default());
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains(" key=k  [2Jz"), "{text:?}");
        assert!(text.contains(" h =v  x"), "{text:?}");
    }

    #[test]
    fn text_ttls_are_tenths_of_a_second_from_one_second_and_json_ttls_exact() {
        for (ms, text) in [
            (29_999, "ttl=30s"),
            (29_951, "ttl=30s"),
            (29_949, "ttl=29s 900ms"),
            (1_234, "ttl=1s 200ms"),
            (1_250, "ttl=1s 300ms"),
            (1_000, "ttl=1s"),
            (999, "ttl=999ms"),
            (7, "ttl=7ms"),
            (3_599_990, "ttl=1h"),
        ] {
            let line = signal_with_ttl(Duration::from_millis(ms));
            assert!(
                line.text(Style::default()).ends_with(&format!(" {text}")),
                "{ms} ms: {}",
                line.text(Style::default())
            );
            assert!(
                line.json().contains(&format!("\"ttl_ms\":{ms},")),
                "{}",
                line.json()
            );
        }
    }

    #[test]
    fn clock_is_local_time_of_day() {
        use chrono::Offset;
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_651_723_456);
        // The local offset at that instant, applied to the UTC rendering by hand.
        let offset = chrono::DateTime::<chrono::Local>::from(t)
            .offset()
            .fix()
            .local_minus_utc();
        let shifted = if offset >= 0 {
            t + Duration::from_secs(offset.unsigned_abs().into())
        } else {
            t - Duration::from_secs(offset.unsigned_abs().into())
        };
        let utc = rfc3339(shifted);
        assert_eq!(clock(t), utc[11..23]);
        assert_eq!(clock(t).len(), "01:02:03.456".len());
    }
}
