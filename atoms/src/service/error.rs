//! Why a host could not run its services.

use super::report::HostReport;

/// Why [`ServiceHost`](super::ServiceHost) refused a service or could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Two services share a name.
    #[error("a service named `{0}` was already added: service names must be unique")]
    Duplicate(String),
    /// A service name breaks the signal naming rule (empty, whitespace, `*`, `?`, `,`, a
    /// segment that is exactly `+`, ...); the reason's byte offset is within the service
    /// name.
    #[error("service name `{name}` cannot be used in signal names: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which naming rule it broke.
        reason: ephemeral::NameError,
    },
    /// A service name is too long for its lifecycle signals (`service.<name>.restarting`
    /// must fit in [`ephemeral::MAX_NAME_LEN`] bytes).
    #[error(
        "service name `{name}` is {len} bytes long, more than the limit of {max} for service names (its signals `service.<name>.restarting` must fit in {} bytes): shorten it",
        ephemeral::MAX_NAME_LEN
    )]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The longest service name, in bytes.
        max: usize,
    },
    /// A service depends on one that was never added.
    #[error("service `{service}` depends on `{dependency}`, which was not added to the host")]
    UnknownDependency {
        /// The service.
        service: String,
        /// The missing dependency.
        dependency: String,
    },
    /// The dependencies form a cycle, so there is no order to start them in.
    #[error("service dependencies form a cycle: {}: remove one of these dependencies", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A start hook failed (or panicked); the services started before it were stopped again,
    /// in reverse order.
    #[error("service `{service}` failed to start: {reason}")]
    StartFailed {
        /// The service.
        service: String,
        /// Its error or panic message.
        reason: String,
        /// What happened to every service.
        report: Box<HostReport>,
    },
    /// `run` was awaited outside a tokio runtime.
    #[error("the service host needs a tokio runtime: await `run` inside one")]
    NoRuntime,
}
