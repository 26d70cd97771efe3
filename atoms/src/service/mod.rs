//! Long-running services: start in dependency order, restart with backoff, stop gracefully.
//!
//! * [`Service`] — a worker with `start`, a repeated `work` step and `stop` hooks.
//! * [`ServiceHost`] — runs services: starts them in dependency order (a cycle is
//!   [`HostError::Cycle`]), restarts a failing work step with exponential backoff and gives up
//!   (with the reason) after `max_restarts + 1` failures in a row: the first try and
//!   [`HostOptions::max_restarts`] restarts. It shuts down on a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken), Ctrl-C or SIGTERM: services
//!   are stopped in reverse start order within a deadline, then aborted and named.
//! * [`HostReport`] — what happened to each service; [`HostStatus`] — what each is doing
//!   now, while the host runs.
//!
//! Dependencies order starts and stops; they do not tie lifetimes together. A dependency
//! that finishes by itself ([`Step::Done`]) stops at once while the services that depend on
//! it keep running, and the shutdown deadline wins over the order: see
//! [`Service::dependencies`].
//!
//! With a sink ([`HostOptions::signals`]) the host raises `service.<name>.started`,
//! `service.<name>.failed`, `service.<name>.restarting` and `service.<name>.stopped`, so
//! other parts of the application can react (`sink.has_signal("service.*.failed")`); their
//! headers say the phase, the error and whether the service gave up (see
//! [`HostOptions::signals`]).
//!
//! Services pair naturally with [`Channel`](ephemeral::Channel): a detector service sends
//! events on a channel that logger and alerter services consume.

mod dynamic;
mod error;
mod host;
mod options;
mod order;
mod report;
#[allow(clippy::module_inception)]
mod service;
mod status;

pub use error::HostError;
pub use host::ServiceHost;
pub use options::HostOptions;
pub use report::{HostReport, ServiceReport, ServiceState, ShutdownReason};
pub use service::{Service, ServiceContext, ServiceError, Step};
pub use status::HostStatus;
