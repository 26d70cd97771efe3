//! Exit codes and the error that carries one.

use std::fmt;
use std::io;
use std::time::Duration;

use ephemeral_bus::BusError;
use ephemeral_nats::{ConnectKind, NatsError};

use crate::args::{NATS_ENV, NATS_PREFIX_ENV};

/// Success.
pub(crate) const OK: u8 = 0;
/// A negative answer: `match` found no match, `ops` no such coordinator.
pub(crate) const NO_MATCH: u8 = 1;
/// Bad input: a bad name, pattern, duration or header, a payload too large, or bad usage.
pub(crate) const USAGE: u8 = 2;
/// The bus does not exist (nobody has opened it), or no NATS server answers at the URL.
pub(crate) const NO_BUS: u8 = 3;
/// The bus was refused: its directory is another user's or open to group or others, or this
/// user may not create or look at it; or the NATS server refused the credentials or the TLS setup.
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
  4  bus refused: its directory is another user's or open to group/others,
     or this user may not create or look at it; or NATS refused the credentials or TLS
  5  request timed out
  6  request failed: no server, the server was busy or failed, or it left before replying
  7  other bus, NATS or I/O error (NATS: disconnected, nothing sent)";

/// What to do about an i/o error on a bus directory, in the command's terms (the library's
/// hint names `BusOptions::dir`), where the error alone does not say: a permission denied
/// (exit 4), a file where a directory should be (`EPHEMERAL_BUS_DIR` naming a file).
pub(crate) fn io_hint(source: &io::Error) -> Option<&'static str> {
    match source.kind() {
        io::ErrorKind::PermissionDenied => Some(
            "this user may not use it: run the command as the user who owns the bus, or point \
             EPHEMERAL_BUS_DIR at a parent directory this user can write",
        ),
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => Some(
            "a file stands where a directory should be: point EPHEMERAL_BUS_DIR at a \
             directory, or remove the file",
        ),
        _ => None,
    }
}

/// Text from another process (a server's error or panic message), made one line that
/// cannot drive the terminal: control characters, line breaks and tabs included, are
/// escaped (`\n`, `\u{1b}`), so the error stays the one line the exit code goes with.
pub(crate) fn one_line(text: &str) -> String {
    text.chars().fold(String::new(), |mut s, c| {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
        s
    })
}

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
            | BusError::HeadersTooLarge { .. }
            | BusError::EmptyPattern { .. } => USAGE,
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
        // The library's hints name its API (`Bus::serve`, `BusOptions::...`), which a shell
        // user cannot call: said in the command's terms.
        let message = match &e {
            BusError::NoServer { topic } => format!(
                "no peer serves `{topic}` on this bus: start the service that answers it (on the same bus: check --bus), then send the request again"
            ),
            BusError::ServerFailed { topic, message } => format!(
                "the server's handler for `{topic}` failed: {}",
                one_line(message)
            ),
            BusError::PayloadTooLarge { len, max } => format!(
                "payload of {len} bytes is larger than the bus maximum of {max} bytes: send a smaller one (or split it over several messages)"
            ),
            BusError::Io { path, source } if io_hint(source).is_some() => format!(
                "bus i/o error on {}: {source}: {}",
                path.display(),
                io_hint(source).unwrap_or_default()
            ),
            BusError::PathTooLong { path, len, max } => format!(
                "bus directory {} is too long ({len} bytes; at most {max}) for the Unix sockets in it: use a shorter parent directory (EPHEMERAL_BUS_DIR) or a shorter bus name (--bus)",
                path.display()
            ),
            _ => e.to_string(),
        };
        Self::new(code, message)
    }
}

impl From<NatsError> for Failure {
    fn from(e: NatsError) -> Self {
        let code = match &e {
            NatsError::Name(_)
            | NatsError::BadPrefix { .. }
            | NatsError::EmptyPattern { .. }
            | NatsError::PayloadTooLarge { .. }
            | NatsError::Credentials { .. }
            | NatsError::Certificate { .. } => USAGE,
            NatsError::Connect { kind, .. } => match kind {
                ConnectKind::Auth | ConnectKind::Tls => REFUSED,
                ConnectKind::BadUrl => USAGE,
                _ => NO_BUS,
            },
            NatsError::Timeout { .. } => TIMEOUT,
            NatsError::NoServer { .. }
            | NatsError::ServerStopped { .. }
            | NatsError::HandlerFailed { .. } => NO_REPLY,
            _ => IO,
        };
        // The library's hints name its API (`Nats::serve`, `Nats::connection_signals`),
        // which a shell user cannot call: these say what to do with the command instead.
        let message = match &e {
            NatsError::NoServer { topic } => format!(
                "no server for `{topic}`: start the service that answers it, connected to this NATS server or cluster with the same subject prefix (check --nats-prefix), then send the request again"
            ),
            NatsError::HandlerFailed { topic, message } => format!(
                "the handler serving `{topic}` failed: {}",
                one_line(message)
            ),
            NatsError::Disconnected { topic } => format!(
                "not connected to the NATS server right now (the connection was lost), so `{topic}` was not sent: check that the server at the --nats URL runs and is reachable, then run the command again"
            ),
            _ => e.to_string(),
        };
        Self::new(code, message)
    }
}

/// A store's or room's failure over NATS while the connection is down, in the command's
/// terms: the library's explanation names `Nats::connection_signals`, which a shell user
/// cannot call. `op` is what was being done (the library's words: `read a value`).
pub(crate) fn offline_failure(url: &str, op: &str) -> Failure {
    Failure::new(
        IO,
        format!(
            "cannot {op}: not connected to the NATS server at {url} right now (the connection was lost): check that it runs and is reachable, then run the command again"
        ),
    )
}

/// A failure to connect to NATS, its hint in the command's terms: the library's message
/// names `NatsOptions` setters, which a shell user cannot call, so where the fix is a flag
/// or a URL the message says which. `waited` is the connect timeout that applied;
/// `url_from_env` and `prefix_from_env` say that the URL or the subject prefix came from
/// `EPHEMERAL_NATS` or `EPHEMERAL_NATS_PREFIX` (no flag), so that the message names the
/// variable to fix.
pub(crate) fn connect_failure(
    e: NatsError,
    waited: Duration,
    url_from_env: bool,
    prefix_from_env: bool,
) -> Failure {
    let message = match &e {
        NatsError::Connect { url, kind, .. } => {
            let hint = match kind {
                ConnectKind::TimedOut => Some(format!(
                    "the server did not answer within {}: check the address and firewalls, \
                     or wait longer with --nats-connect-timeout (such as \
                     --nats-connect-timeout 15s)",
                    humantime::format_duration(waited)
                )),
                ConnectKind::Auth => Some(
                    "the server refused the credentials, or wants some: give a user and \
                     password in the URL (nats://user:pass@host:4222), a token \
                     (nats://token@host:4222), or a credentials file with --nats-creds FILE \
                     (or EPHEMERAL_NATS_CREDS)"
                        .to_owned(),
                ),
                ConnectKind::Tls => Some(
                    "the TLS setup failed: a tls:// URL (or a --nats-tls-* file) requires \
                     TLS, so for a server without TLS use nats://; else check that the \
                     server's certificate is valid for this host and signed by an authority \
                     this machine trusts, or give that authority with --nats-tls-ca FILE; a \
                     server that verifies its clients needs --nats-tls-cert FILE and \
                     --nats-tls-key FILE (each also from EPHEMERAL_NATS_TLS_CA, _CERT, _KEY)"
                        .to_owned(),
                ),
                _ => None,
            };
            hint.map(|hint| format!("cannot connect to NATS at {url}: {kind}: {hint}"))
        }
        NatsError::Certificate { path, source } => Some(format!(
            "cannot read the TLS file {}: {source}: check the files given with --nats-tls-ca, \
             --nats-tls-cert and --nats-tls-key (or EPHEMERAL_NATS_TLS_CA, _CERT, _KEY)",
            path.display()
        )),
        NatsError::Credentials { path, source } => Some(format!(
            "cannot read the NATS credentials file {}: {source}: check the file given with \
             --nats-creds (or EPHEMERAL_NATS_CREDS): it must be a .creds file (a user JWT \
             and an nkey seed) readable by this user",
            path.display()
        )),
        _ => None,
    };
    let from_env = match &e {
        NatsError::Connect { .. } if url_from_env => Some(format!(
            "the URL comes from {NATS_ENV}: fix or unset it, or pass --nats URL"
        )),
        NatsError::BadPrefix { .. } if prefix_from_env => Some(format!(
            "the prefix comes from {NATS_PREFIX_ENV}: fix or unset it, or pass --nats-prefix PREFIX"
        )),
        _ => None,
    };
    let mut failure = Failure::from(e);
    if let Some(message) = message {
        failure.message = message;
    }
    if let Some(from_env) = from_env {
        failure.message = format!("{} ({from_env})", failure.message);
    }
    failure
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::new(IO, format!("i/o error: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use ephemeral_nats::NatsError;

    use super::*;

    /// What the CLI says of a lost connection names no library API (`Nats::...`), and says
    /// what to do with the command. (A one-shot command meets these only when the server
    /// goes away between its connect and its send, so they are checked here.)
    #[test]
    fn offline_errors_speak_of_the_command_not_the_library() {
        let sent = Failure::from(NatsError::Disconnected {
            topic: "orders.new".to_owned(),
        });
        assert_eq!(sent.code, IO);
        assert!(
            sent.message.contains("`orders.new` was not sent")
                && sent.message.contains("--nats URL")
                && !sent.message.contains("Nats::"),
            "{sent}"
        );
        let store = offline_failure("nats://host:4222", "read a value");
        assert_eq!(store.code, IO);
        assert!(
            store.message.starts_with(
                "cannot read a value: not connected to the NATS server at nats://host:4222"
            ) && !store.message.contains("Nats::"),
            "{store}"
        );
    }

    /// A request whose server was dropped before handling it failed as a request (exit 6),
    /// like no server at all, not as an I/O error.
    #[test]
    fn a_request_refused_by_a_stopping_server_is_a_failed_request() {
        let refused = Failure::from(NatsError::ServerStopped {
            topic: "orders.new".to_owned(),
        });
        assert_eq!(refused.code, NO_REPLY, "{refused}");
        assert!(refused.message.contains("send it again"), "{refused}");
    }
}
