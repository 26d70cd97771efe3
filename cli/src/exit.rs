//! Exit codes and the error that carries one.

use std::fmt;
use std::io;

use ephemeral_bus::BusError;
use ephemeral_nats::{ConnectKind, NatsError};

/// Success.
pub(crate) const OK: u8 = 0;
/// A negative answer: `match` found no match, `ops` no such coordinator.
pub(crate) const NO_MATCH: u8 = 1;
/// Bad input: a bad name, pattern, duration or header, a payload too large, or bad usage.
pub(crate) const USAGE: u8 = 2;
/// The bus does not exist (nobody has opened it), or no NATS server answers at the URL.
pub(crate) const NO_BUS: u8 = 3;
/// The bus was refused: its directory is another user's or open to group or others; or
/// the NATS server refused the credentials or the TLS setup.
pub(crate) const REFUSED: u8 = 4;
/// A request got no reply in time.
pub(crate) const TIMEOUT: u8 = 5;
/// A request found no server, or its server was busy, failed or left before replying.
pub(crate) const NO_REPLY: u8 = 6;
/// Any other bus or I/O error.
pub(crate) const IO: u8 = 7;

/// The exit-code table shown in `--help` and in the README.
pub(crate) const TABLE: &str = "\
Exit codes:
  0  success
  1  no match (`match`; `ops`: no coordinator of that name publishes;
     `kv get`/`kv del`: the key has no value)
  2  bad input: invalid name, pattern, duration, header or usage
  3  no such bus (nobody opened it; see --bus, EPHEMERAL_BUS_DIR, --create),
     or no NATS server at the --nats URL
  4  bus refused: its directory is another user's or open to group/others;
     or NATS refused the credentials or TLS
  5  request timed out
  6  request failed: no server, the server was busy or failed, or it left before replying
  7  other bus, NATS or I/O error (NATS: disconnected, nothing sent)";

/// A failure: what to print and which code to exit with.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        let code = match &e {
            BusError::Name(_)
            | BusError::BusName(_)
            | BusError::PathTooLong { .. }
            | BusError::PayloadTooLarge { .. }
            | BusError::HeadersTooLarge { .. } => USAGE,
            BusError::NotOwner { .. } | BusError::Permissions { .. } => REFUSED,
            BusError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                REFUSED
            }
            BusError::Timeout { .. } => TIMEOUT,
            BusError::NoServer { .. }
            | BusError::PeerGone { .. }
            | BusError::ServerBusy { .. }
            | BusError::ServerFailed { .. } => NO_REPLY,
            _ => IO,
        };
        Self::new(code, e.to_string())
    }
}

impl From<NatsError> for Failure {
    fn from(e: NatsError) -> Self {
        let code = match &e {
            NatsError::Name(_)
            | NatsError::BadPrefix { .. }
            | NatsError::EmptyPattern { .. }
            | NatsError::PayloadTooLarge { .. }
            | NatsError::Credentials { .. } => USAGE,
            NatsError::Connect { kind, .. } => match kind {
                ConnectKind::Auth | ConnectKind::Tls => REFUSED,
                ConnectKind::BadUrl => USAGE,
                _ => NO_BUS,
            },
            NatsError::Timeout { .. } => TIMEOUT,
            NatsError::NoServer { .. } | NatsError::HandlerFailed { .. } => NO_REPLY,
            _ => IO,
        };
        Self::new(code, e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::new(IO, format!("i/o error: {e}"))
    }
}
