//! Options of the [`SignalingLayer`](super::SignalingLayer) and their validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use ephemeral::NameError;

/// Decides which response statuses are errors worth a signal.
type Classifier = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// What the [`SignalingLayer`](super::SignalingLayer) signals and when.
///
/// The defaults: signal names start with `http`; every status from 400 up is an error
/// (`http.error.404`, `http.error.503`); no timeout; no slow threshold.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_patterns::http::SignalingOptions;
///
/// let options = SignalingOptions::default()
///     .timeout(Duration::from_secs(2))
///     .slow_after(Duration::from_millis(300))
///     // Only server errors and throttling are worth a signal here.
///     .error_when(|status| status.is_server_error() || status.as_u16() == 429);
/// assert_eq!(
///     options.failure_pattern(),
///     "http.error.5*,http.error.transport,http.timeout"
/// );
/// ```
#[derive(Clone)]
#[must_use]
pub struct SignalingOptions {
    pub(crate) prefix: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) slow_after: Option<Duration>,
    pub(crate) is_error: Classifier,
}

impl Default for SignalingOptions {
    fn default() -> Self {
        Self {
            prefix: "http".to_owned(),
            timeout: None,
            slow_after: None,
            is_error: Arc::new(|status: StatusCode| status.as_u16() >= 400),
        }
    }
}

impl fmt::Debug for SignalingOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalingOptions")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("slow_after", &self.slow_after)
            .finish_non_exhaustive()
    }
}

impl SignalingOptions {
    /// The first segments of the signal names (default `http`, giving `http.error.<status>`,
    /// `http.error.transport`, `http.timeout` and `http.slow`). An empty prefix is refused
    /// ([`SignalingConfigError::EmptyPrefix`]), and so is one that starts or ends with a dot
    /// ([`SignalingConfigError::PrefixDot`]): the dot after it is added.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Gives up on a call that has no response after `timeout`: the call ends with
    /// [`SignalingError::Timeout`](super::SignalingError::Timeout) and `http.timeout` is
    /// raised. Measured to the response head; the body streams afterwards, untimed.
    ///
    /// The timeout runs on tokio's timer, so calls must then be made inside a tokio runtime
    /// with the time driver enabled: outside any runtime a call fails with
    /// [`SignalingError::NoRuntime`](super::SignalingError::NoRuntime) (see
    /// [`Signaling`](super::Signaling) for a runtime without the time driver).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Raises `http.slow` (with the elapsed milliseconds) for a call whose response, or
    /// error, took at least `threshold`. Raised when the call ends, alongside any error
    /// signal; a call that timed out raises `http.timeout` instead, so a threshold longer
    /// than the [`timeout`](Self::timeout) is refused
    /// ([`SignalingConfigError::SlowPastTimeout`]): no call could ever be slow.
    pub fn slow_after(mut self, threshold: Duration) -> Self {
        self.slow_after = Some(threshold);
        self
    }

    /// Which response statuses raise `http.error.<status>` (default: 400 and above). The
    /// response is returned to the caller either way.
    pub fn error_when(
        mut self,
        is_error: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.is_error = Arc::new(is_error);
        self
    }

    /// A failure pattern for a [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker)
    /// fed by these signals: server errors, transport errors and timeouts
    /// (`http.error.5*,http.error.transport,http.timeout` with the default prefix). Client
    /// errors (4xx) and slow calls are left out: they say nothing about the server being down.
    #[must_use]
    pub fn failure_pattern(&self) -> String {
        let p = &self.prefix;
        format!("{p}.error.5*,{p}.error.transport,{p}.timeout")
    }

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`SignalingConfigError`].
    pub fn validate(&self) -> Result<(), SignalingConfigError> {
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(SignalingConfigError::ZeroTimeout);
        }
        if self.slow_after.is_some_and(|t| t.is_zero()) {
            return Err(SignalingConfigError::ZeroSlow);
        }
        if let (Some(slow), Some(timeout)) = (self.slow_after, self.timeout)
            && slow > timeout
        {
            return Err(SignalingConfigError::SlowPastTimeout { slow, timeout });
        }
        if self.prefix.trim().is_empty() {
            return Err(SignalingConfigError::EmptyPrefix);
        }
        if self.prefix.starts_with('.') || self.prefix.ends_with('.') {
            return Err(SignalingConfigError::PrefixDot(self.prefix.clone()));
        }
        for suffix in ["error.599", "error.transport", "timeout", "slow"] {
            ephemeral::validate_name(&format!("{}.{suffix}", self.prefix))
                .map_err(SignalingConfigError::Prefix)?;
        }
        Ok(())
    }
}

/// Why a [`SignalingLayer`](super::SignalingLayer) could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalingConfigError {
    /// The timeout was zero.
    #[error("the http timeout is 0: use a non-zero timeout, or none")]
    ZeroTimeout,
    /// The slow threshold was zero.
    #[error("the slow threshold is 0, so every call would be slow: use a non-zero threshold")]
    ZeroSlow,
    /// The slow threshold is longer than the timeout: every call that slow times out first
    /// and raises `http.timeout`, so `http.slow` could never be raised.
    #[error(
        "the slow threshold {slow:?} is longer than the timeout {timeout:?}, so no call could ever be slow (it times out first): use a threshold below the timeout"
    )]
    SlowPastTimeout {
        /// The slow threshold.
        slow: Duration,
        /// The timeout.
        timeout: Duration,
    },
    /// The prefix was empty (or only whitespace): the names would start with a dot
    /// (`.error.503`).
    #[error("the signal prefix is empty: give one, such as `http` (the default)")]
    EmptyPrefix,
    /// The prefix starts or ends with a dot (`http.`, `.http`): the names would hold an
    /// empty segment (`http..error.503`). The dot after the prefix is added.
    #[error(
        "the signal prefix `{0}` starts or ends with a dot, which would leave an empty segment (`http..error.503`): give the segments alone, such as `http` or `upstream.http`"
    )]
    PrefixDot(String),
    /// The prefix does not make valid signal names.
    #[error("the signal prefix does not make valid signal names: {0}")]
    Prefix(#[source] NameError),
}
