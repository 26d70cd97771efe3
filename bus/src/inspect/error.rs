//! `InspectError`: what can go wrong when publishing or watching state.

use ephemeral::NameError;

use super::FormatError;
use crate::BusError;

/// An error from publishing or watching state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The publisher name is not a valid name.
    #[error("invalid publisher name: {0}")]
    Name(#[from] NameError),
    /// The bus refused a subscription or a publish.
    #[error("the bus failed: {0}")]
    Bus(#[from] BusError),
    /// A frame could not be read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A zero interval was asked for.
    #[error("the publish interval must be positive: give one such as 250ms")]
    ZeroInterval,
    /// Called outside a tokio runtime: the publisher needs one for its task.
    #[error("publish_state needs a tokio runtime: call it from within one")]
    NoRuntime,
    /// Another transport (one implemented outside this crate, such as NATS) failed.
    #[error("the state transport failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl InspectError {
    /// Wraps the error of a transport implemented outside this crate.
    pub fn transport(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transport(Box::new(error))
    }
}
