//! `HostStatus`: what each service of a host is doing now, readable while the host runs.

use std::sync::{Arc, Mutex, PoisonError};

use super::report::ServiceReport;

/// One service's record, shared by the host's task for it and every [`HostStatus`].
pub(super) type Record = Arc<Mutex<ServiceReport>>;

/// Locks a record: plain data updated field by field, so a poisoned lock still holds it.
pub(super) fn lock(record: &Mutex<ServiceReport>) -> std::sync::MutexGuard<'_, ServiceReport> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live view of a [`ServiceHost`](super::ServiceHost)'s services, taken with
/// [`ServiceHost::status`](super::ServiceHost::status) before `run` (which consumes the
/// host) and read while it runs: for a health endpoint, a log line, a test.
///
/// Each service reads as it stands now: [`NotStarted`](super::ServiceState::NotStarted)
/// until its start hook has succeeded, [`Running`](super::ServiceState::Running) from then
/// on (also while a failed work step waits out its backoff: `failures` and `restarts` count
/// as they happen), and its final state once it has stopped. After `run` returns, every
/// service reads as the [`HostReport`](super::HostReport) says. A cheap `Clone` handle.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::service::{
///     HostOptions, Service, ServiceContext, ServiceError, ServiceHost, ServiceState, Step,
/// };
///
/// struct Ticker;
///
/// impl Service for Ticker {
///     fn name(&self) -> &str {
///         "ticker"
///     }
///     async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         Ok(Step::Continue)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut host = ServiceHost::new(HostOptions::default());
/// host.add(Ticker)?;
/// let (status, shutdown) = (host.status(), host.shutdown_token());
/// let running = tokio::spawn(host.run());
///
/// tokio::time::sleep(Duration::from_secs(5)).await;
/// assert_eq!(status.service("ticker").unwrap().state, ServiceState::Running);
///
/// shutdown.cancel();
/// running.await??;
/// assert_eq!(status.service("ticker").unwrap().state, ServiceState::Stopped);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct HostStatus {
    records: Arc<Mutex<Vec<Record>>>,
}

impl HostStatus {
    /// Every service, in the order they were added.
    #[must_use]
    pub fn services(&self) -> Vec<ServiceReport> {
        self.list().iter().map(|r| lock(r).clone()).collect()
    }

    /// The service named `name`, if the host has one.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<ServiceReport> {
        self.list()
            .iter()
            .map(|r| lock(r))
            .find(|r| r.name == name)
            .map(|r| r.clone())
    }

    /// Adds a service's record (by `ServiceHost::add`).
    pub(super) fn push(&self, record: Record) {
        self.list().push(record);
    }

    /// The record of the service added `index`-th.
    pub(super) fn record(&self, index: usize) -> Option<Record> {
        self.list().get(index).cloned()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        // Only pushes and reads: a poisoned lock still holds a whole list.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStatus")
            .field("services", &self.services())
            .finish()
    }
}
