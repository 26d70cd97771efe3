//! `NatsError`: everything that can go wrong talking to NATS, each with what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ephemeral::NameError;

/// Why a connection could not be made, from [`NatsError::Connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectKind {
    /// Nothing listens at the address (connection refused).
    Refused,
    /// The server did not answer within [`NatsOptions::connect_timeout`](crate::NatsOptions::connect_timeout).
    TimedOut,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake or setup failed (a plain server where TLS is required, a bad
    /// certificate, an unreadable certificate file).
    Tls,
    /// The server refused the credentials (user/password, token, nkey or credentials file),
    /// or credentials were required and none were given.
    Auth,
    /// The URL could not be parsed.
    BadUrl,
    /// The client gave up after [`NatsOptions::max_reconnects`](crate::NatsOptions::max_reconnects) attempts.
    MaxReconnects,
    /// A `ws://` or `wss://` URL, and the websocket handshake failed: the port is not a
    /// websocket port (a server's plain client port, or a server with no `websocket` block
    /// in its configuration).
    WebSocket,
    /// Another input/output error.
    Io,
}

impl ConnectKind {
    /// What to do about it, appended to the error message.
    fn hint(self) -> &'static str {
        match self {
            ConnectKind::Refused => {
                "nothing listens there: start a nats-server (see the README's NATS section) or fix the host and port"
            }
            ConnectKind::TimedOut => {
                "the server did not answer in time: check the address, firewalls, or raise NatsOptions::connect_timeout"
            }
            ConnectKind::Dns => {
                "the host name did not resolve: check its spelling or use an IP address"
            }
            ConnectKind::Tls => {
                "the TLS setup failed: check that the server has TLS enabled (NatsOptions::require_tls and any certificate given require it) and that the certificate files are right"
            }
            ConnectKind::Auth => {
                "the server refused the credentials: check the user and password, token, nkey or credentials file"
            }
            ConnectKind::BadUrl => {
                "the URL is malformed: use the form nats://host:4222 (tls://host:4222 for TLS), several separated by commas"
            }
            ConnectKind::MaxReconnects => {
                "the client gave up reconnecting: check that the server runs, or raise NatsOptions::max_reconnects"
            }
            ConnectKind::WebSocket => {
                "a ws:// or wss:// URL needs the server's websocket port, which is not its client port: enable one with a `websocket { port: 8080, no_tls: true }` block in the server's configuration and connect to that port, or connect to the client port with nats://host:4222"
            }
            ConnectKind::Io => "an input/output error: check the address and that the server runs",
        }
    }
}

impl fmt::Display for ConnectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectKind::Refused => "connection refused",
            ConnectKind::TimedOut => "timed out",
            ConnectKind::Dns => "dns lookup failed",
            ConnectKind::Tls => "tls failed",
            ConnectKind::Auth => "authentication failed",
            ConnectKind::BadUrl => "bad url",
            ConnectKind::MaxReconnects => "too many reconnect attempts",
            ConnectKind::WebSocket => "websocket handshake failed",
            ConnectKind::Io => "i/o error",
        })
    }
}

/// An error from [`Nats`](crate::Nats).
///
/// Every message says what went wrong and what to do about it. Connection errors carry a
/// [`ConnectKind`] to match on, and the client's error as their [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The connection could not be made.
    #[error("cannot connect to NATS at {url}: {kind}: {}", kind.hint())]
    Connect {
        /// The URL connected to (a password or token in it hidden).
        url: String,
        /// Why, to match on.
        kind: ConnectKind,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// A credentials (`.creds`) file could not be read.
    #[error(
        "cannot read the NATS credentials file {path}: {source}: check the path of the credentials file (NatsOptions::credentials_file, or --nats-creds on the command line)"
    )]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A TLS certificate or key file given in the options could not be read.
    #[error(
        "cannot read the TLS file {path}: {source}: check the path given to NatsOptions::root_certificates or client_certificate (--nats-tls-ca, --nats-tls-cert, --nats-tls-key on the command line)"
    )]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// The server is older than a feature needs.
    #[error(
        "the NATS server is version {have}, but {feature} needs {need} or later: upgrade the server (the README's NATS section says how)"
    )]
    ServerTooOld {
        /// The server's version.
        have: String,
        /// The oldest version with the feature.
        need: &'static str,
        /// The feature.
        feature: &'static str,
    },
    /// A topic is not a valid name.
    #[error("invalid topic: {0}")]
    Name(#[from] NameError),
    /// The subject prefix is not usable.
    #[error(
        "invalid subject prefix `{prefix}`: {reason}: use dot-separated words of letters, digits, `-` and `_`, such as `ephemeral` or `app.prod`"
    )]
    BadPrefix {
        /// The prefix.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A pattern matches no name at all.
    #[error(
        "pattern `{pattern}` matches no valid name (it is empty, or every alternative holds whitespace or a control character): give a pattern such as `orders.*`"
    )]
    EmptyPattern {
        /// The pattern.
        pattern: String,
    },
    /// The message is larger than the server accepts.
    #[error(
        "message of {len} bytes (payload and headers) is larger than the server's max_payload of {max} bytes: split it, or raise max_payload in the server's configuration"
    )]
    PayloadTooLarge {
        /// The message's size on the wire (payload and headers).
        len: usize,
        /// The server's maximum.
        max: usize,
    },
    /// Not connected to a server right now: the message was not sent.
    #[error(
        "not connected to a NATS server right now, so `{topic}` was not sent: the client is reconnecting; retry later, or watch the `nats.offline` signal (Nats::connection_signals)"
    )]
    Disconnected {
        /// The topic of the message.
        topic: String,
    },
    /// Nobody serves the topic of a request.
    #[error(
        "no server for `{topic}`: start one with Nats::serve, on any machine connected to this NATS cluster"
    )]
    NoServer {
        /// The request topic.
        topic: String,
    },
    /// The server a request reached stopped (it was dropped) before handling it: its
    /// handler never ran, so sending the request again is safe.
    #[error(
        "the server of `{topic}` stopped before handling the request (its handler did not run): send it again, and another server of the topic takes it (or it fails at once with no server)"
    )]
    ServerStopped {
        /// The request topic.
        topic: String,
    },
    /// No reply came in time.
    #[error(
        "request on `{topic}` got no reply within {after:?}: the server is slow, stuck or unreachable; retry or raise the timeout"
    )]
    Timeout {
        /// The request topic.
        topic: String,
        /// The timeout.
        after: Duration,
    },
    /// The server's handler returned an error or panicked.
    #[error("the handler serving `{topic}` failed: {message}")]
    HandlerFailed {
        /// The request topic.
        topic: String,
        /// The handler's error or panic message.
        message: String,
    },
    /// A JetStream call failed.
    #[error(
        "jetstream {op} failed: {description} (status {code}, error code {err_code}): {}",
        jetstream_hint(*code, *err_code)
    )]
    JetStream {
        /// The operation.
        op: &'static str,
        /// The status code (HTTP-like, `0` when the server gave none).
        code: u16,
        /// The JetStream error code (`0` when the server gave none).
        err_code: u64,
        /// The server's description.
        description: String,
    },
    /// The connection is closed for good: the client was dropped or drained, or it gave up
    /// reconnecting after [`max_reconnects`](crate::NatsOptions::max_reconnects) attempts.
    #[error(
        "the NATS connection is closed (dropped, drained, or out of reconnect attempts): connect again"
    )]
    Closed,
    /// Another error from the client, with its description.
    #[error("nats {op} failed: {message}")]
    Client {
        /// The operation.
        op: &'static str,
        /// The client's description.
        message: String,
    },
}

impl NatsError {
    /// A subscription the client refused (`op` names the call). The client fails one for a
    /// valid subject only when its connection task has ended, the connection closed for good
    /// (dropped, drained, out of reconnect attempts): that is [`NatsError::Closed`], as for
    /// a publish, not the client's bare "subscribe failed: channel closed".
    pub(crate) fn subscribe(op: &'static str, error: &async_nats::SubscribeError) -> Self {
        match error.kind() {
            async_nats::client::SubscribeErrorKind::Other => NatsError::Closed,
            _ => NatsError::Client {
                op,
                message: error.to_string(),
            },
        }
    }

    /// Classifies a client connect error.
    pub(crate) fn connect(url: &str, source: async_nats::ConnectError) -> Self {
        let mut kind = classify(&source);
        // The client reports a failed websocket handshake (speaking websocket to a plain
        // client port, or to a server with no `websocket` block) as a bare I/O error, and
        // `wss://` to a port that speaks no TLS as a TLS error about a malformed record,
        // so the scheme tells. (The client refuses a list that mixes websocket and plain
        // URLs, so one is enough.) A certificate problem stays `Tls`.
        let not_tls = kind == ConnectKind::Tls && peer_spoke_no_tls(&source);
        if (kind == ConnectKind::Io || not_tls) && is_websocket(url) {
            kind = ConnectKind::WebSocket;
        }
        NatsError::Connect {
            // Shown in the message: never with its password or token.
            url: crate::client::redact(url),
            kind,
            source,
        }
    }
}

/// The [`ConnectKind`] of a client connect error. The client says `Io` both for a refused
/// port and for a failed TLS handshake (a plain server when TLS is required), so the source
/// chain is consulted.
pub(crate) fn classify(error: &async_nats::ConnectError) -> ConnectKind {
    use async_nats::ConnectErrorKind as K;
    match error.kind() {
        K::ServerParse => ConnectKind::BadUrl,
        K::Dns => ConnectKind::Dns,
        K::Authentication | K::AuthorizationViolation => ConnectKind::Auth,
        K::TimedOut => ConnectKind::TimedOut,
        K::Tls => ConnectKind::Tls,
        K::MaxReconnects => ConnectKind::MaxReconnects,
        K::Io => {
            let Some(io) = first_io(error) else {
                return ConnectKind::Io;
            };
            // `io::Error::source` skips the wrapped error itself: look at it directly.
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
            {
                return ConnectKind::Tls;
            }
            match io.kind() {
                io::ErrorKind::ConnectionRefused => ConnectKind::Refused,
                io::ErrorKind::TimedOut => ConnectKind::TimedOut,
                _ => ConnectKind::Io,
            }
        }
    }
}

/// Whether `urls` (one or several, separated by commas) name a websocket server.
fn is_websocket(urls: &str) -> bool {
    urls.split(',').any(|url| {
        let url = url.trim_start().to_ascii_lowercase();
        url.starts_with("ws://") || url.starts_with("wss://")
    })
}

/// Whether the TLS handshake failed on the first record: the peer does not speak TLS.
fn peer_spoke_no_tls(error: &async_nats::ConnectError) -> bool {
    first_io(error)
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<async_nats::rustls::Error>())
        .is_some_and(|e| matches!(e, async_nats::rustls::Error::InvalidMessage(_)))
}

/// The first `io::Error` in the source chain.
fn first_io<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// What to do about a JetStream error: JetStream missing shows as no answer (status 503, no
/// error code) or as "not enabled" (10039 for the account, 10076 on the server); storage
/// exhausted as "insufficient resources" (10023, the server's) or 10047 (the account's);
/// anything else is the server refusing the request as made.
fn jetstream_hint(code: u16, err_code: u64) -> &'static str {
    match (code, err_code) {
        (503 | 0, 0) | (_, 10039 | 10076) => {
            "check that JetStream is enabled on the server (`-js`) and that it is reachable"
        }
        (_, 10023 | 10047) => {
            "JetStream has no storage left: free some (finish or remove queued jobs and dead letters, clear rooms, delete values) or raise the server's limits (max_file_store / max_memory_store, or the account's)"
        }
        _ => "the server refused the request as made; see the NATS JetStream error codes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::{ConnectError, ConnectErrorKind as K};

    #[test]
    fn a_jetstream_error_hints_at_its_own_cause() {
        let error = |code, err_code| NatsError::JetStream {
            op: "create stream",
            code,
            err_code,
            description: "d".to_owned(),
        };
        // The server refusing a setting (duplicates window longer than max age) is not
        // JetStream being off.
        let refused = error(400, 10052).to_string();
        assert!(!refused.contains("-js"), "{refused}");
        assert!(refused.contains("refused the request"), "{refused}");
        for (code, err_code) in [(503, 0), (503, 10039), (500, 10076)] {
            assert!(error(code, err_code).to_string().contains("`-js`"));
        }
        // Storage exhausted (the server's, the account's) says what to free, not `-js`.
        for err_code in [10023, 10047] {
            let full = error(503, err_code).to_string();
            assert!(
                full.contains("no storage left") && !full.contains("-js"),
                "{full}"
            );
        }
    }

    #[test]
    fn every_client_kind_maps_to_ours() {
        let cases = [
            (ConnectError::new(K::ServerParse), ConnectKind::BadUrl),
            (ConnectError::new(K::Dns), ConnectKind::Dns),
            (ConnectError::new(K::Authentication), ConnectKind::Auth),
            (
                ConnectError::new(K::AuthorizationViolation),
                ConnectKind::Auth,
            ),
            (ConnectError::new(K::TimedOut), ConnectKind::TimedOut),
            (ConnectError::new(K::Tls), ConnectKind::Tls),
            (
                ConnectError::new(K::MaxReconnects),
                ConnectKind::MaxReconnects,
            ),
            (ConnectError::new(K::Io), ConnectKind::Io),
            (
                ConnectError::with_source(
                    K::Io,
                    io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
                ),
                ConnectKind::Refused,
            ),
            (
                ConnectError::with_source(
                    K::Io,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        async_nats::rustls::Error::General("corrupt message".into()),
                    ),
                ),
                ConnectKind::Tls,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(classify(&error), kind, "{error:?}");
        }
    }

    #[test]
    fn a_dns_failure_says_to_check_the_host() {
        let error = NatsError::connect(
            "nats://no-such-host.invalid:4222",
            ConnectError::with_source(K::Dns, io::Error::other("failed to lookup address")),
        );
        assert!(matches!(
            error,
            NatsError::Connect {
                kind: ConnectKind::Dns,
                ..
            }
        ));
        let text = error.to_string();
        assert!(text.contains("no-such-host.invalid"), "{text}");
        assert!(text.contains("host name did not resolve"), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    }
}
