//! The `Signal` value and the builder for its optional parts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::stamp::Stamp;
use crate::{Name, NameError, OperationId};

/// The longest header key a signal may carry, in bytes (a key must also be non-empty): what
/// the bus carries, so that any raised signal can cross it. A raise with a key outside this
/// is refused with [`RaiseError::BadHeaderKey`](crate::RaiseError::BadHeaderKey).
pub const MAX_HEADER_KEY_LEN: usize = 255;

/// A scalar header value carried by a [`Signal`] (or a bus message).
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A short string.
    Str(Arc<str>),
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderValue::Bool(b) => write!(f, "{b}"),
            HeaderValue::Int(i) => write!(f, "{i}"),
            HeaderValue::Float(x) => write!(f, "{x}"),
            HeaderValue::Str(s) => f.write_str(s),
        }
    }
}

impl From<bool> for HeaderValue {
    fn from(v: bool) -> Self {
        HeaderValue::Bool(v)
    }
}
impl From<i64> for HeaderValue {
    fn from(v: i64) -> Self {
        HeaderValue::Int(v)
    }
}
impl From<u32> for HeaderValue {
    fn from(v: u32) -> Self {
        HeaderValue::Int(i64::from(v))
    }
}
impl From<i32> for HeaderValue {
    fn from(v: i32) -> Self {
        HeaderValue::Int(i64::from(v))
    }
}
impl From<f64> for HeaderValue {
    fn from(v: f64) -> Self {
        HeaderValue::Float(v)
    }
}
impl From<&str> for HeaderValue {
    fn from(v: &str) -> Self {
        HeaderValue::Str(Arc::from(v))
    }
}
impl From<String> for HeaderValue {
    fn from(v: String) -> Self {
        HeaderValue::Str(Arc::from(v))
    }
}

/// Scalar headers: a short list of `(key, value)` pairs, in the order they were added.
pub type Headers = Arc<[(Arc<str>, HeaderValue)]>;

/// Where a signal stands in a chain of signals that caused each other (see
/// [`SignalSink::raise_caused`](crate::SignalSink::raise_caused)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lineage {
    /// The names of the causes, oldest first (the direct cause last).
    pub(crate) ancestors: Arc<[Name]>,
}

/// A short-lived named signal: an event in a [`SignalSink`](crate::SignalSink)'s window.
///
/// A signal has a [`Name`], an optional key (a customer, a shard, a coordinator id), the
/// [`OperationId`] that raised it if any, a sink-wide sequence number, the time it was raised
/// on tokio's clock, an optional expiry (clamped to the sink's max age), and an optional small
/// payload and scalar headers. "Later" always means a higher [`sequence`](Self::sequence):
/// several signals can share one instant, notably under tokio's paused clock.
///
/// Cloning a signal only bumps reference counts.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ephemeral::{Signal, SignalSink};
///
/// let sink = SignalSink::default();
/// let signal = sink.raise_with(
///     Signal::build("error.db.timeout")?
///         .key("orders")
///         .expires_in(Duration::from_secs(5))
///         .header("attempt", 3),
/// )?;
/// assert_eq!(signal.name(), "error.db.timeout");
/// assert_eq!(signal.key(), Some("orders"));
/// assert_eq!(signal.header("attempt").map(|v| v.to_string()).as_deref(), Some("3"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Signal {
    pub(crate) name: Name,
    pub(crate) sequence: u64,
    pub(crate) timestamp: Stamp,
    /// The raw operation id; meaningful only when `flags.operation` is set (an
    /// `Option<OperationId>` would take twice the room).
    pub(crate) operation: u64,
    pub(crate) flags: Flags,
    /// Everything most signals do not have, behind one pointer: a signal stays one cache line
    /// (64 bytes), and cloning one without rare parts bumps only its name's count.
    pub(crate) rare: Option<Arc<Rare>>,
}

/// The optional parts of a [`Signal`] that most signals do not have.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rare {
    pub(crate) key: Option<Arc<str>>,
    /// The instant this signal stops being live, already clamped to the sink's max age at the
    /// time it was raised. `None` means "at the sink's max age" (which may change at run time).
    pub(crate) expires_at: Option<Instant>,
    pub(crate) payload: Option<Arc<[u8]>>,
    pub(crate) headers: Option<Headers>,
    pub(crate) lineage: Option<Lineage>,
    /// Sinks this signal has already passed through (forwarding loop guard).
    pub(crate) route: Option<Arc<[u64]>>,
}

impl Rare {
    /// Whether there is nothing to keep (so the signal needs no `Rare` at all).
    pub(crate) fn is_empty(&self) -> bool {
        self.key.is_none()
            && self.expires_at.is_none()
            && self.payload.is_none()
            && self.headers.is_none()
            && self.lineage.is_none()
            && self.route.is_none()
    }

    /// `Some` when there is something to keep.
    pub(crate) fn into_shared(self) -> Option<Arc<Rare>> {
        (!self.is_empty()).then(|| Arc::new(self))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub(crate) leaf: bool,
    pub(crate) terminal: bool,
    pub(crate) held: bool,
    /// `Signal::operation` holds an operation id.
    pub(crate) operation: bool,
}

impl Signal {
    /// Starts building a signal with optional parts; raise it with
    /// [`SignalSink::raise_with`](crate::SignalSink::raise_with).
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] when `name` breaks the naming rule.
    pub fn build(name: &str) -> Result<SignalBuilder, NameError> {
        Ok(SignalBuilder::new(Name::new(name)?))
    }

    /// The signal's name.
    #[must_use]
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The key, if one was given.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.rare.as_deref().and_then(|r| r.key.as_deref())
    }

    /// The operation that raised this signal, if any.
    #[must_use]
    pub fn operation(&self) -> Option<OperationId> {
        self.flags
            .operation
            .then(|| OperationId::from_raw(self.operation))
    }

    /// The sink-wide sequence number: a higher number was raised later.
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// When the signal was raised, on tokio's clock.
    #[must_use]
    pub fn timestamp(&self) -> Instant {
        self.timestamp.instant()
    }

    /// The signal's own expiry, if it has one shorter than the sink's max age.
    #[must_use]
    pub fn expires_at(&self) -> Option<Instant> {
        self.rare.as_deref().and_then(|r| r.expires_at)
    }

    /// The payload bytes, if any.
    #[must_use]
    pub fn payload(&self) -> Option<&[u8]> {
        self.rare.as_deref().and_then(|r| r.payload.as_deref())
    }

    /// The payload as UTF-8 text, if there is a payload and it is valid UTF-8.
    #[must_use]
    pub fn payload_str(&self) -> Option<&str> {
        self.payload().and_then(|p| std::str::from_utf8(p).ok())
    }

    /// All headers, in the order they were added.
    #[must_use]
    pub fn headers(&self) -> &[(Arc<str>, HeaderValue)] {
        self.rare
            .as_deref()
            .and_then(|r| r.headers.as_deref())
            .unwrap_or(&[])
    }

    /// The first header named `key`.
    #[must_use]
    pub fn header(&self, key: &str) -> Option<&HeaderValue> {
        self.headers()
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| v)
    }

    /// Whether this is a leaf signal: it is never forwarded to other sinks and never causes
    /// another signal.
    #[must_use]
    pub fn is_leaf(&self) -> bool {
        self.flags.leaf
    }

    /// Whether this is a terminal signal: it ends a chain of causes.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        self.flags.terminal
    }

    /// Whether this signal is a held condition (see [`SignalSink::hold`](crate::SignalSink::hold)).
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.flags.held
    }

    /// Its place in a chain of causes, counted as the original counts it: 1 for a signal
    /// raised on its own (an operation's signal included), 2 for one it caused, and so on.
    #[must_use]
    pub fn depth(&self) -> usize {
        1 + self.causes().len()
    }

    /// The names of the signals that caused this one, oldest first.
    #[must_use]
    pub fn causes(&self) -> &[Name] {
        self.rare
            .as_deref()
            .and_then(|r| r.lineage.as_ref())
            .map_or(&[], |l| &l.ancestors)
    }

    /// How long this signal has left to live at `now`, given the sink's max age.
    #[must_use]
    pub fn remaining(&self, now: Instant, max_age: Duration) -> Duration {
        let by_age = self
            .timestamp()
            .checked_add(max_age)
            .unwrap_or_else(far_future);
        let deadline = self.expires_at().map_or(by_age, |e| e.min(by_age));
        deadline.saturating_duration_since(now)
    }
}

/// An instant far enough away to stand for "never" without overflowing.
pub(crate) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Signal");
        d.field("name", &self.name)
            .field("sequence", &self.sequence);
        if let Some(key) = self.key() {
            d.field("key", &key);
        }
        if let Some(op) = self.operation() {
            d.field("operation", &op);
        }
        if let Some(p) = self.payload() {
            d.field("payload_len", &p.len());
        }
        if !self.headers().is_empty() {
            d.field("headers", &self.headers());
        }
        if self.flags != Flags::default() {
            d.field("flags", &self.flags);
        }
        d.finish_non_exhaustive()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.sequence)?;
        if let Some(key) = self.key() {
            write!(f, " key={key}")?;
        }
        if let Some(op) = self.operation() {
            write!(f, " {op}")?;
        }
        Ok(())
    }
}

/// The optional parts of a signal, before a sink gives it a sequence number and a timestamp.
///
/// Made by [`Signal::build`] or [`SignalBuilder::new`]; raised by
/// [`SignalSink::raise_with`](crate::SignalSink::raise_with).
#[derive(Debug, Clone)]
#[must_use = "a signal builder does nothing until it is raised"]
pub struct SignalBuilder {
    pub(crate) name: Name,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) operation: Option<OperationId>,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) payload: Option<Arc<[u8]>>,
    pub(crate) headers: Vec<(Arc<str>, HeaderValue)>,
    pub(crate) flags: Flags,
    pub(crate) lineage: Option<Lineage>,
    pub(crate) route: Option<Arc<[u64]>>,
}

impl SignalBuilder {
    /// Starts a builder for an already validated name.
    pub fn new(name: Name) -> Self {
        Self {
            name,
            key: None,
            operation: None,
            expires_in: None,
            payload: None,
            headers: Vec::new(),
            flags: Flags::default(),
            lineage: None,
            route: None,
        }
    }

    /// Attaches a key (a customer, a shard, a coordinator id...).
    pub fn key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Marks the signal as raised by this operation.
    pub fn operation(mut self, id: OperationId) -> Self {
        self.operation = Some(id);
        self
    }

    /// Expires the signal after `ttl` instead of the sink's max age (a longer `ttl` is clamped
    /// to the max age). The time to live holds for subscriptions too: a signal still waiting
    /// in a subscription's buffer when it runs out is skipped and counted as expired, never
    /// delivered. A zero `ttl` is refused by the raise ([`RaiseError::ZeroTimeToLive`](crate::RaiseError::ZeroTimeToLive)):
    /// such a signal would never be live, yet take a place in the window.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires_in = Some(ttl);
        self
    }

    /// Attaches a small payload of bytes (the sink refuses one larger than its
    /// [`max_payload`](crate::SinkOptions::max_payload)): a `Vec<u8>` or a `&[u8]`
    /// (`&b"..."[..]`). For text, [`payload_str`](Self::payload_str).
    pub fn payload(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.payload = Some(bytes.into());
        self
    }

    /// Attaches a UTF-8 payload.
    pub fn payload_str(self, text: &str) -> Self {
        self.payload(text.as_bytes())
    }

    /// Adds a scalar header.
    pub fn header(mut self, key: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.push((Arc::from(key), value.into()));
        self
    }

    /// Makes this a leaf signal: it is not forwarded to other sinks and cannot cause another.
    pub fn leaf(mut self) -> Self {
        self.flags.leaf = true;
        self
    }

    /// Makes this a terminal signal: nothing may be raised as caused by it.
    pub fn terminal(mut self) -> Self {
        self.flags.terminal = true;
        self
    }

    /// The name this builder will raise.
    #[must_use]
    pub fn name(&self) -> &Name {
        &self.name
    }
}

impl From<Name> for SignalBuilder {
    fn from(name: Name) -> Self {
        Self::new(name)
    }
}

impl From<&Signal> for SignalBuilder {
    /// A builder carrying everything of `signal` but its sequence number and timestamp; the
    /// expiry becomes the time it had left (on tokio's clock).
    fn from(signal: &Signal) -> Self {
        let rare = signal.rare.as_deref();
        Self {
            name: signal.name.clone(),
            key: rare.and_then(|r| r.key.clone()),
            operation: signal.operation(),
            expires_in: signal
                .expires_at()
                .map(|e| e.saturating_duration_since(Instant::now())),
            payload: rare.and_then(|r| r.payload.clone()),
            headers: signal.headers().to_vec(),
            flags: Flags {
                held: false,
                operation: false,
                ..signal.flags
            },
            lineage: rare.and_then(|r| r.lineage.clone()),
            route: rare.and_then(|r| r.route.clone()),
        }
    }
}

// A signal is copied into the window, into every subscription and back to the caller on each
// raise: it must stay within one cache line.
const _: () = assert!(std::mem::size_of::<Signal>() <= 64);
