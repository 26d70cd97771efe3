//! `HostOptions`: restarts, backoff, shutdown deadline, OS signals and the signal sink.

use std::time::Duration;

use ephemeral::SignalSink;
use tokio_util::sync::CancellationToken;

/// How a [`ServiceHost`](super::ServiceHost) restarts, shuts down and reports.
///
/// Defaults: a failing work step is retried up to 5 times in a row, waiting 100 ms, then
/// 200 ms, 400 ms, … up to 10 s between attempts (a successful step resets the count); the
/// shutdown deadline is 10 s, after which services still stopping get 1 s more and are then
/// aborted; OS signals are not handled; no signal sink.
#[derive(Debug, Clone)]
#[must_use]
pub struct HostOptions {
    pub(crate) max_restarts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) abort_grace: Duration,
    pub(crate) os_signals: bool,
    pub(crate) stop_all_on_give_up: bool,
    pub(crate) sink: Option<SignalSink>,
    pub(crate) token: CancellationToken,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            abort_grace: Duration::from_secs(1),
            os_signals: false,
            stop_all_on_give_up: false,
            sink: None,
            token: CancellationToken::new(),
        }
    }
}

impl HostOptions {
    /// How many times in a row a failing work step is restarted before the host gives up
    /// on that service.
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }

    /// The wait before the first restart; it doubles on each further failure in a row, up to
    /// `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How long a graceful shutdown may take in all, counted from the moment it is requested
    /// (also when that is while the host stops the dependents of a service that gave up).
    /// Services still stopping then are aborted (after [`abort_grace`](Self::abort_grace)
    /// for those not yet asked to stop) and reported as
    /// [`DidNotStop`](super::ServiceState::DidNotStop).
    ///
    /// A zero timeout leaves no time for a graceful stop: the last service started is
    /// aborted without its stop hook unless it has ended already, and the others get
    /// `abort_grace`. `Duration::MAX` (any timeout past what the clock holds) waits for
    /// every stop hook, however long.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Once the shutdown deadline has passed, the services not yet asked to stop are asked
    /// all at once and get this long before they are aborted.
    pub fn abort_grace(mut self, grace: Duration) -> Self {
        self.abort_grace = grace;
        self
    }

    /// Shut down gracefully on Ctrl-C (SIGINT) and, on Unix, SIGTERM.
    ///
    /// The handlers are installed when [`run`](super::ServiceHost::run) begins and, as
    /// with every tokio signal handler, stay installed for the rest of the process. So a
    /// second Ctrl-C or SIGTERM during the shutdown does not cut it short (the
    /// [`shutdown_timeout`](Self::shutdown_timeout) and [`abort_grace`](Self::abort_grace)
    /// bound it), and once `run` has returned these signals no longer end the process by
    /// themselves: return from `main` promptly, or listen for them yourself
    /// ([`tokio::signal::ctrl_c`]) in work that follows.
    pub fn shutdown_on_os_signals(mut self, enabled: bool) -> Self {
        self.os_signals = enabled;
        self
    }

    /// Shut everything down, in reverse start order, as soon as one service gives up, also
    /// while another is still starting (it is then asked to stop at once); by default the
    /// services that depend on it stop, and the others keep running.
    pub fn stop_all_on_give_up(mut self, enabled: bool) -> Self {
        self.stop_all_on_give_up = enabled;
        self
    }

    /// Raise lifecycle signals `service.<name>.started`, `.failed`, `.restarting` and
    /// `.stopped` into this sink; services can raise their own through
    /// [`ServiceContext::raise`](super::ServiceContext::raise).
    ///
    /// Their headers say what happened:
    ///
    /// | signal | headers |
    /// |---|---|
    /// | `.failed` | `phase`: `start` (the start hook failed), `work` (a work step failed) or `stop` (the service did not stop in time and was aborted; it raises no `.stopped`); `error`: the error text, at most 256 bytes (cut with `…`; whole in the report); for `work`, `in_a_row` (failures in a row, an integer) and `gave_up` (whether this failure made the service give up) |
    /// | `.restarting` | `in_a_row`: the failures in a row this restart follows |
    /// | `.stopped` | `state`: where the service ended ([`ServiceState::as_str`](super::ServiceState::as_str): `stopped`, `finished`, `gave_up`); `stop_error` when its stop hook failed |
    pub fn signals(mut self, sink: SignalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Shut down gracefully when this token is cancelled (for example a child of your
    /// application's token).
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.token = token;
        self
    }

    pub(crate) fn backoff_for(&self, failures: u32) -> std::time::Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}
