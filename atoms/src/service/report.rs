//! What happened to each service, and why the host stopped.

use std::fmt;

/// Where a service ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceState {
    /// Not started: start-up was aborted or shutdown requested before its turn, or a
    /// service it depends on gave up before it.
    NotStarted,
    /// Its start hook failed.
    StartFailed,
    /// Running its work step (seen in a [`HostStatus`](super::HostStatus) while the host
    /// runs).
    Running,
    /// Stopped by the host (shutdown), stop hook done.
    Stopped,
    /// Its work step returned [`Step::Done`](super::Step::Done); stop hook done.
    Finished,
    /// Its work step failed more often in a row than the restart limit; stop hook done.
    GaveUp,
    /// It did not stop within the shutdown deadline and was aborted.
    DidNotStop,
}

impl ServiceState {
    /// The state in snake case (`"gave_up"`), as the `state` header of a
    /// `service.<name>.stopped` signal carries it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::StartFailed => "start_failed",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Finished => "finished",
            Self::GaveUp => "gave_up",
            Self::DidNotStop => "did_not_stop",
        }
    }
}

/// One service's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReport {
    /// The service's name.
    pub name: String,
    /// Where it ended up.
    pub state: ServiceState,
    /// How many times its work step was run again after a failure (a restart still waiting
    /// out its backoff when the service was stopped is not counted; the
    /// `service.<name>.restarting` signal is raised when the backoff begins).
    pub restarts: u32,
    /// How many work steps failed (errors and panics).
    pub failures: u32,
    /// The last work-step (or start) failure.
    pub last_error: Option<String>,
    /// The stop hook's error, if it failed.
    pub stop_error: Option<String>,
}

impl ServiceReport {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: ServiceState::NotStarted,
            restarts: 0,
            failures: 0,
            last_error: None,
            stop_error: None,
        }
    }
}

/// Why the host began shutting down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownReason {
    /// The host's cancellation token was cancelled.
    Cancelled,
    /// The process received Ctrl-C (SIGINT) or SIGTERM.
    OsSignal(&'static str),
    /// Every service ended by itself.
    AllEnded,
    /// A service gave up and the host was told to stop everything then.
    ServiceGaveUp(String),
    /// A start hook failed.
    StartFailed(String),
}

impl fmt::Display for ShutdownReason {
    /// In words: `cancelled`, `SIGTERM received`, `every service ended by itself`,
    /// `service `db` gave up`, `a start hook failed: <error>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("cancelled"),
            Self::OsSignal(signal) => write!(f, "{signal} received"),
            Self::AllEnded => f.write_str("every service ended by itself"),
            Self::ServiceGaveUp(name) => write!(f, "service `{name}` gave up"),
            Self::StartFailed(error) => write!(f, "a start hook failed: {error}"),
        }
    }
}

/// What [`ServiceHost::run`](super::ServiceHost::run) did: every service's record, in start
/// order, and why it shut down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// Every service, in start (dependency) order.
    pub services: Vec<ServiceReport>,
    /// Why the host shut down.
    pub reason: ShutdownReason,
}

impl HostReport {
    /// The services that did not stop within the deadline and were aborted.
    #[must_use]
    pub fn did_not_stop(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|s| s.state == ServiceState::DidNotStop)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// One service's record.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<&ServiceReport> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "shutdown: {}", self.reason)?;
        for s in &self.services {
            write!(
                f,
                "  {}: {}, {} restart(s), {} failure(s)",
                s.name,
                s.state.as_str(),
                s.restarts,
                s.failures
            )?;
            if let Some(e) = &s.last_error {
                write!(f, ", last error: {e}")?;
            }
            if let Some(e) = &s.stop_error {
                write!(f, ", stop error: {e}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
