//! The `Service` trait, its context and the outcome of one work step.

use std::fmt;
use std::future::Future;

use ephemeral::{RaiseError, SignalSink};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A long-running worker: started once, then its work step runs again and again until the
/// host shuts down (or the step says [`Step::Done`]), then it is stopped once.
///
/// Write the methods as `async fn`s. The work step is dropped at an `.await` when shutdown
/// begins, so keep it cancel-safe (awaiting a channel's `recv` is), or watch
/// [`ServiceContext::cancelled`] and return. A step may also complete without waiting (a
/// non-blocking poll that found nothing): between steps the host spends the task's tokio
/// cooperative budget, so such a service yields to the runtime now and then and never
/// starves the shutdown, even on a current-thread runtime. The stop hook runs to completion unless the
/// host's shutdown deadline passes first (the service is then aborted) or the future of
/// [`ServiceHost::run`](super::ServiceHost::run) is dropped (every service is then aborted
/// without its stop hook).
///
/// A panic in a method counts as that method failing with the message
/// `panicked: <message>`, whether it happens before the method returns its future or while
/// the future runs.
///
/// # Examples
///
/// ```
/// use ephemeral_atoms::service::{Service, ServiceContext, ServiceError, Step};
///
/// struct Ticker {
///     ticks: u32,
/// }
///
/// impl Service for Ticker {
///     fn name(&self) -> &str {
///         "ticker"
///     }
///
///     async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///         self.ticks += 1;
///         Ok(Step::Continue)
///     }
/// }
/// # let _ = Ticker { ticks: 0 };
/// ```
pub trait Service: Send + 'static {
    /// A name unique within the host; it becomes part of signal names
    /// (`service.<name>.started`), so it follows the signal naming rule (not empty, no
    /// whitespace or control characters, no `*`, `?` or `,`, no segment that is exactly
    /// `+`) and is at most 236 bytes long. Dots are allowed: `db.primary` raises
    /// `service.db.primary.started`.
    fn name(&self) -> &str;

    /// Names of the services that must be started before this one.
    ///
    /// A service starts only after the start hooks of its dependencies have succeeded. At
    /// shutdown the host asks the services to stop one at a time, in reverse start order,
    /// waiting for each stop hook, so a service stops before its dependencies, except:
    ///
    /// * A dependency that finishes by itself (its work step returned [`Step::Done`]) runs
    ///   its stop hook at once; the services that depend on it keep running.
    /// * Once [`HostOptions::shutdown_timeout`](super::HostOptions::shutdown_timeout) has
    ///   passed, the service being waited for is aborted and those not yet asked to stop
    ///   are asked all at once (see [`HostOptions::abort_grace`](super::HostOptions::abort_grace)).
    ///
    /// When a dependency gives up (past `max_restarts`), the started services that depend
    /// on it, directly or not, are stopped first, in reverse start order, each given up to
    /// `shutdown_timeout`; then its stop hook runs, also when one of them is still stopping
    /// past that time (the host's shutdown later waits for it or aborts it). One whose
    /// turn to start had not come is not started; one still starting is asked to stop at
    /// once (its [`ServiceContext::cancelled`] fires during its start hook). Services that do not depend on it keep
    /// running (unless [`HostOptions::stop_all_on_give_up`](super::HostOptions::stop_all_on_give_up)).
    /// A shutdown requested meanwhile takes over at once and stops the dependency in its
    /// turn, as above.
    fn dependencies(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs once before the first work step. An error (or a panic) here aborts the host's
    /// start-up, unless the service was asked to stop during its start because a
    /// dependency gave up: it is then reported [`StartFailed`](super::ServiceState::StartFailed)
    /// and the start-up goes on.
    fn start(
        &mut self,
        ctx: &ServiceContext,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// One step of work. A failed (or panicking) step is retried with backoff, up to the
    /// host's restart limit.
    fn work(
        &mut self,
        ctx: &ServiceContext,
    ) -> impl Future<Output = Result<Step, ServiceError>> + Send;

    /// Runs once after the last work step (on shutdown, after [`Step::Done`], or after the
    /// host gave up restarting it).
    fn stop(
        &mut self,
        ctx: &ServiceContext,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// What a work step asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the work step again.
    Continue,
    /// The service has finished its work; stop it now (the services that depend on it keep
    /// running).
    Done,
}

/// An error returned by a service hook. It carries the message shown in reports and signals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    message: String,
}

impl ServiceError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// An error from another error, keeping its message and the messages of its sources.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self { message }
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for ServiceError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for ServiceError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// What a service's hooks get from the host: its name, a cancellation token that fires when
/// this service is asked to stop, and the host's signal sink (if one was configured).
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub(crate) name: String,
    pub(crate) token: CancellationToken,
    pub(crate) sink: Option<SignalSink>,
}

impl ServiceContext {
    /// The service's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Completes when this service is asked to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Whether this service has been asked to stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token that fires when this service is asked to stop (to hand to child tasks).
    #[must_use]
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The host's signal sink, if one was configured.
    #[must_use]
    pub fn sink(&self) -> Option<&SignalSink> {
        self.sink.as_ref()
    }

    /// Raises `name` into the host's sink; does nothing when the host has no sink.
    ///
    /// # Errors
    ///
    /// [`RaiseError`] when `name` is not a valid signal name.
    pub fn raise(&self, name: &str) -> Result<(), RaiseError> {
        match &self.sink {
            Some(sink) => sink.raise(name).map(|_| ()),
            None => ephemeral::validate_name(name).map_err(RaiseError::from),
        }
    }
}
