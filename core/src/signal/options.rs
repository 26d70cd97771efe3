//! `SinkOptions`: capacity, age and the bounds of every internal table.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::Buffer;

/// A callback told about failures that must not disturb `raise`: a panicking listener, a
/// failing or panicking async handler, a forwarded copy its target refused
/// ([`SignalSink::forward_to`](crate::SignalSink::forward_to)).
///
/// Lag is not reported here: a subscription that fell behind tells its own reader with a
/// [`Lagged(n)`](crate::Lagged) item, and the drops are counted in
/// [`SinkStats::subscriber_dropped`](crate::SinkStats::subscriber_dropped) (per
/// subscription in `subscribers`); an async handler's dropped signals are counted in
/// [`SinkStats::handler_dropped`](crate::SinkStats::handler_dropped).
pub type ErrorCallback = Arc<dyn Fn(&HandlerFailure) + Send + Sync>;

/// What went wrong in a listener or handler (or a forwarding, whose `pattern` is the one given
/// to [`forward_to`](crate::SignalSink::forward_to)), as given to the sink's error callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFailure {
    /// The pattern the listener or handler was registered with.
    pub pattern: String,
    /// The name of the signal being handled.
    pub signal: String,
    /// Whether it panicked (as opposed to returning an error).
    pub panicked: bool,
    /// The panic message or the error's `Display`.
    pub message: String,
}

/// Configuration of a [`SignalSink`](crate::SignalSink).
///
/// Every bound has a default; capacity and max age can also be changed at run time with
/// [`SignalSink::set_capacity`](crate::SignalSink::set_capacity) and
/// [`SignalSink::set_max_age`](crate::SignalSink::set_max_age).
///
/// | option | default | what it bounds |
/// |---|---|---|
/// | `capacity` | 1000 | raised signals live at once (oldest evicted first) |
/// | `max_age` | 60 s | how long a raised signal stays live |
/// | `max_holds` | 1024 | held conditions at once (beyond: a typed error) |
/// | `max_idle_names` | 1024 | interned names with no live signal kept for reuse |
/// | `max_patterns` | 1024 | memoised pattern results |
/// | `subscription_buffer` | 1024 | signals a subscription buffers before `Lagged` |
/// | `max_payload` | 64 KiB | payload bytes per signal |
/// | `max_headers` | 32 | headers per signal |
/// | `max_depth` | 10 | chain length for [`raise_caused`](crate::SignalSink::raise_caused) |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::{SignalSink, SinkOptions};
///
/// let sink = SignalSink::new(
///     SinkOptions::default()
///         .capacity(10_000)
///         .max_age(Duration::from_secs(300)),
/// )?;
/// assert_eq!(sink.capacity(), 10_000);
/// # Ok::<(), ephemeral::SinkConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SinkOptions {
    pub(crate) capacity: usize,
    pub(crate) max_age: Duration,
    pub(crate) max_holds: usize,
    pub(crate) max_idle_names: usize,
    pub(crate) max_patterns: usize,
    pub(crate) subscription_buffer: Buffer,
    pub(crate) max_payload: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_depth: usize,
    pub(crate) on_error: Option<ErrorCallback>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: 1000,
            max_age: Duration::from_secs(60),
            max_holds: 1024,
            max_idle_names: 1024,
            max_patterns: 1024,
            subscription_buffer: Buffer::default(),
            max_payload: 64 * 1024,
            max_headers: 32,
            max_depth: 10,
            on_error: None,
        }
    }
}

/// A [`SinkOptions`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkConfigError {
    /// A bound that must be at least one was zero.
    #[error("sink option `{option}` is zero: it must be at least 1")]
    Zero {
        /// The option's name.
        option: &'static str,
    },
    /// The max age was zero.
    #[error("sink max age is zero: signals would expire as they are raised; use at least 1ms")]
    ZeroAge,
    /// The max age is too long to compute deadlines with.
    #[error("sink max age {age:?} is too long: keep it under 100 years")]
    AgeTooLong {
        /// The rejected age.
        age: Duration,
    },
}

impl SinkOptions {
    /// How many raised signals may be live at once (held conditions do not count).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a raised signal stays live.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How many held conditions may exist at once.
    pub fn max_holds(mut self, max_holds: usize) -> Self {
        self.max_holds = max_holds;
        self
    }

    /// How many interned names with no live signal are kept for reuse before they are
    /// reclaimed.
    pub fn max_idle_names(mut self, n: usize) -> Self {
        self.max_idle_names = n;
        self
    }

    /// How many patterns' match results are memoised.
    pub fn max_patterns(mut self, n: usize) -> Self {
        self.max_patterns = n;
        self
    }

    /// The default buffer of a [`Subscription`](crate::Subscription).
    pub fn subscription_buffer(mut self, buffer: Buffer) -> Self {
        self.subscription_buffer = buffer;
        self
    }

    /// The largest payload accepted, in bytes.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// The most headers accepted on one signal.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// The deepest signal [`raise_caused`](crate::SignalSink::raise_caused) accepts: a signal
    /// raised on its own has depth 1, one it caused depth 2, so `max_depth(2)` refuses the
    /// third link of a chain. It also bounds how deeply listeners may nest on one thread
    /// (a listener that raises runs that signal's listeners): see
    /// [`Listener`](crate::Listener).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// A callback told about panicking listeners, failing or panicking handlers and forwarded
    /// copies a target refused; see [`ErrorCallback`] (lag is not reported to it). It runs
    /// outside the sink's lock; a panic in it is caught.
    pub fn on_error(mut self, f: impl Fn(&HandlerFailure) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(f));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), SinkConfigError> {
        for (option, value) in [
            ("capacity", self.capacity),
            ("max_holds", self.max_holds),
            ("max_patterns", self.max_patterns),
            ("max_depth", self.max_depth),
        ] {
            if value == 0 {
                return Err(SinkConfigError::Zero { option });
            }
        }
        validate_age(self.max_age)
    }
}

pub(crate) fn validate_age(age: Duration) -> Result<(), SinkConfigError> {
    if age.is_zero() {
        return Err(SinkConfigError::ZeroAge);
    }
    if age > Duration::from_secs(100 * 365 * 86_400) {
        return Err(SinkConfigError::AgeTooLong { age });
    }
    Ok(())
}

impl fmt::Debug for SinkOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkOptions")
            .field("capacity", &self.capacity)
            .field("max_age", &self.max_age)
            .field("max_holds", &self.max_holds)
            .field("max_idle_names", &self.max_idle_names)
            .field("max_patterns", &self.max_patterns)
            .field("subscription_buffer", &self.subscription_buffer)
            .field("max_payload", &self.max_payload)
            .field("max_headers", &self.max_headers)
            .field("max_depth", &self.max_depth)
            .field("on_error", &self.on_error.is_some())
            .finish()
    }
}
