//! `Nats`: a connection to a NATS cluster, and how it is made.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use ephemeral::SignalSink;
use futures::StreamExt;

use crate::connection::{ConnectionSignals, ConnectionState, connection_signals};
use crate::options::Auth;
use crate::sequence::Numbering;
use crate::{NatsError, NatsOptions, subject};

/// A connection to a NATS server or cluster: messages, requests, the sink bridge
/// ([`bridge`](Self::bridge)) and `ephemeral top`'s state exchange across machines. A cheap [`Clone`]; the connection closes when the last clone is
/// dropped.
///
/// The same calls as the bus ([`ephemeral_bus::Bus`]) on one machine:
/// [`publish`](Self::publish), [`subscribe`](Self::subscribe) (a stream of
/// `Result<Message, Lagged>`), [`serve`](Self::serve) / [`request`](Self::request). Topics
/// are core [`Name`](ephemeral::Name)s, carried on subjects `<prefix>.s.<topic>` (see
/// [`subject`] for the exact mapping), so any name works, including
/// `a..b` and `a.>`, which NATS itself cannot carry as is.
///
/// Loss is never silent: a publish while disconnected is an error
/// ([`NatsError::Disconnected`]), and messages lost in flight (a reconnect, a slow consumer)
/// show up at the subscriber as [`Lagged`](ephemeral::Lagged).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// # let url = server.url();
/// use std::time::Duration;
/// use futures::StreamExt;
/// use ephemeral_nats::Nats;
///
/// let nats = Nats::connect(&url).await?; // e.g. "nats://127.0.0.1:4222"
/// let mut errors = nats.subscribe("error.*").await?;
/// nats.publish("error.db", "connection reset").await?;
/// assert_eq!(errors.next().await.unwrap()?.payload_str(), Some("connection reset"));
///
/// let _server = nats.serve("math.double", |request| async move {
///     let n: u64 = request.payload_str().unwrap_or("").parse().map_err(|_| "not a number")?;
///     Ok::<_, &str>((n * 2).to_string())
/// }).await?;
/// let reply = nats.request("math.double", "21", Duration::from_secs(2)).await?;
/// assert_eq!(reply.payload_str(), Some("42"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Nats {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: async_nats::jetstream::Context,
    pub(crate) prefix: Arc<str>,
    pub(crate) url: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) numbering: tokio::sync::Mutex<Numbering>,
    pub(crate) state: Arc<ConnectionState>,
    /// Retained state: this connection's owner id and heartbeat.
    pub(crate) retained: crate::retained::Shared,
}

/// Counters of a [`Nats`] handle's connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NatsStats {
    /// Connections established (the first one included).
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Times the client dropped messages for a subscription that did not keep up.
    pub slow_consumers: u64,
}

impl Nats {
    /// Connects with default [`NatsOptions`].
    ///
    /// `url` is `nats://host:port` (`tls://` for TLS), or several separated by commas for a
    /// cluster. Credentials may be given in the URL: `nats://user:pass@host:4222`
    /// (percent-encoded), or a token as `nats://token@host:4222`; those of the first address
    /// that has any are used, unless the options give credentials of their own. The URL is
    /// shown ([`url`](Self::url), errors) with the password or token hidden (`***`).
    ///
    /// # Errors
    ///
    /// [`NatsError::Connect`], with its [`ConnectKind`](crate::ConnectKind): nothing listens,
    /// a bad URL, refused credentials, TLS trouble.
    pub async fn connect(url: &str) -> Result<Nats, NatsError> {
        Self::connect_with(url, NatsOptions::default()).await
    }

    /// Connects with `options`.
    ///
    /// # Errors
    ///
    /// [`NatsError::Connect`] as for [`connect`](Self::connect), [`NatsError::Credentials`]
    /// for an unreadable credentials file, [`NatsError::Certificate`] for an unreadable TLS
    /// certificate or key file, [`NatsError::BadPrefix`] for an unusable prefix.
    pub async fn connect_with(url: &str, options: NatsOptions) -> Result<Nats, NatsError> {
        subject::check_prefix(&options.prefix)?;
        let addrs = parse_urls(url)?;
        let state = ConnectionState::new();
        let events = Arc::clone(&state);
        let max_delay = options.max_reconnect_delay;
        let mut connect = ConnectOptions::new()
            .connection_timeout(options.connect_timeout)
            .ping_interval(options.ping_interval)
            .max_reconnects(options.max_reconnects)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                events.on_event(&event);
                std::future::ready(())
            });
        if let Some(name) = &options.name {
            connect = connect.name(name);
        }
        connect = match options.auth {
            // async-nats reads no credentials from its addresses: those of the URL are
            // passed on here (the first address that has any).
            Auth::None => match url_credentials(&addrs) {
                Some((user, Some(password))) => connect.user_and_password(user, password),
                Some((token, None)) => connect.token(token),
                None => connect,
            },
            Auth::UserPassword(user, password) => connect.user_and_password(user, password),
            Auth::Token(token) => connect.token(token),
            Auth::Nkey(seed) => connect.nkey(seed),
            Auth::CredentialsFile(path) => {
                // Read here rather than by the client, which turns every failure into
                // `ErrorKind::Other`: a caller can tell a missing file from a bad one.
                let contents = match tokio::fs::read_to_string(&path).await {
                    Ok(contents) => contents,
                    Err(source) => return Err(NatsError::Credentials { path, source }),
                };
                connect
                    .credentials(&contents)
                    .map_err(|e| NatsError::Credentials {
                        path,
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })?
            }
        };
        // A certificate given means TLS is wanted (as nats.go's `RootCAs` and `ClientCert`,
        // and the CLI's `--nats-tls-*`): the client alone would connect in plain text to a
        // server without TLS, never reading the files, so even a missing one went unnoticed.
        let certificates: Vec<&std::path::Path> = options
            .root_certificates
            .iter()
            .chain(
                options
                    .client_certificate
                    .iter()
                    .flat_map(|(cert, key)| [cert, key]),
            )
            .map(std::path::PathBuf::as_path)
            .collect();
        for path in &certificates {
            if let Err(e) = tokio::fs::metadata(path).await.and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            }) {
                return Err(NatsError::Certificate {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
        if options.require_tls || !certificates.is_empty() {
            connect = connect.require_tls(true);
        }
        for pem in options.root_certificates {
            connect = connect.add_root_certificates(pem);
        }
        if let Some((cert, key)) = options.client_certificate {
            connect = connect.add_client_certificate(cert, key);
        }
        let client = connect
            .connect(addrs)
            .await
            .map_err(|e| NatsError::connect(url, e))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        Ok(Nats {
            inner: Arc::new(Inner {
                client,
                jetstream,
                prefix: Arc::from(options.prefix),
                url: redact(url),
                connect_timeout: options.connect_timeout,
                numbering: tokio::sync::Mutex::new(Numbering::new()),
                state,
                retained: crate::retained::Shared::new(),
            }),
        })
    }

    /// The underlying async-nats client, for anything this crate does not wrap.
    #[must_use]
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// A JetStream context on this connection.
    #[must_use]
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.inner.jetstream
    }

    /// The subject prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The URL connected to, with any password or token in it hidden
    /// (`nats://alice:***@host:4222`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Whether the connection is up right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.inner.state.is_connected()
    }

    /// The connection's state (for readers that start again when it is back).
    pub(crate) fn connection(&self) -> std::sync::Arc<crate::connection::ConnectionState> {
        std::sync::Arc::clone(&self.inner.state)
    }

    /// The version of the server connected to (`2.15.1`).
    #[must_use]
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// Why JetStream cannot be used now, saying what to do: the connection is down (every
    /// stream and bucket call would wait out its own timeout, then say only "timed out"),
    /// or the server (or the account) has no JetStream (the calls would fail with the
    /// client's bare "jetstream unavailable" or "resource does not exist"). `None` when it
    /// can, and when the question itself failed (a timeout, say: the calls that follow say
    /// so). At most one request.
    pub(crate) async fn jetstream_unusable(&self) -> Option<String> {
        use async_nats::jetstream::context::AccountErrorKind;
        if !self.is_connected() {
            return Some(self.offline_message());
        }
        match self.jetstream().query_account().await {
            Err(e)
                if matches!(e.kind(), AccountErrorKind::JetStreamUnavailable)
                    || matches!(e.kind(), AccountErrorKind::JetStream(ref j)
                        if matches!(j.error_code().0, 10039 | 10076)) =>
            {
                Some(format!(
                    "JetStream is not enabled on the server at {} ({e}): start nats-server with `-js` (or `jetstream: enabled` in its config), or enable it for this account",
                    self.url()
                ))
            }
            _ => None,
        }
    }

    /// What to do while the connection is down (a failed call's message ends with it).
    pub(crate) fn offline_message(&self) -> String {
        format!(
            "not connected to the NATS server at {} right now (the client keeps reconnecting): check that it runs and is reachable, then retry; the `nats.offline` signal (Nats::connection_signals) is held until the connection is back",
            self.url()
        )
    }

    /// The largest message (payload and headers) the server accepts, in bytes.
    #[must_use]
    pub fn max_payload(&self) -> usize {
        self.inner.client.max_payload()
    }

    /// Checks that the server is at least version `need` for `feature`.
    ///
    /// # Errors
    ///
    /// [`NatsError::ServerTooOld`] when it is older (or reports no readable version).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ephemeral_nats::testing::NatsServer::start().await;
    /// let nats = ephemeral_nats::Nats::connect(&server.url()).await?;
    /// nats.require_server("2.11.0", "per-message time to live")?;
    /// assert!(nats.require_server("99.0.0", "time travel").is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_server(
        &self,
        need: &'static str,
        feature: &'static str,
    ) -> Result<(), NatsError> {
        crate::version::check_version(&self.server_version(), need, feature)
    }

    /// This handle's connection counters.
    #[must_use]
    pub fn stats(&self) -> NatsStats {
        let s = &self.inner.state;
        NatsStats {
            connects: s.connects.load(Ordering::Relaxed),
            disconnects: s.disconnects.load(Ordering::Relaxed),
            slow_consumers: s.slow_consumers.load(Ordering::Relaxed),
        }
    }

    /// Raises the connection's changes in `sink`: `nats.connected` on every (re)connection,
    /// `nats.disconnected` on every loss, and holds `nats.offline` while disconnected, so
    /// `sink.has_signal("nats.offline")` and coordinators' `defer_on("nats.offline")` see an
    /// outage as it happens. Stops when the returned guard is dropped. Once the connection is
    /// closed for good (every handle dropped, or [`NatsOptions::max_reconnects`] used up),
    /// `nats.offline` stays held until the guard is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ephemeral_nats::testing::NatsServer::start().await;
    /// use ephemeral::SignalSink;
    ///
    /// let nats = ephemeral_nats::Nats::connect(&server.url()).await?;
    /// let sink = SignalSink::default();
    /// let _signals = nats.connection_signals(&sink);
    /// assert!(!sink.has_signal("nats.offline"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_signals(&self, sink: &SignalSink) -> ConnectionSignals {
        connection_signals(&self.inner.state, sink)
    }

    /// Waits until the server has handled everything this handle sent so far (a round trip
    /// through the server), at most the connect timeout. After it, a subscription or server
    /// set up before is known to the server. Returns false when no round trip completed in
    /// time (not connected).
    pub(crate) async fn round_trip(&self) -> bool {
        if !self.is_connected() {
            return false;
        }
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let Ok(mut echo) = client.subscribe(inbox.clone()).await else {
            return false;
        };
        if client.publish(inbox, bytes::Bytes::new()).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(self.inner.connect_timeout, echo.next()).await,
            Ok(Some(_))
        )
    }
}

impl fmt::Debug for Nats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nats")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Parses one URL or several separated by commas.
fn parse_urls(url: &str) -> Result<Vec<ServerAddr>, NatsError> {
    let mut addrs = Vec::new();
    for one in url.split(',').map(str::trim) {
        let addr = one.parse::<ServerAddr>().map_err(|e| {
            NatsError::connect(
                url,
                async_nats::ConnectError::with_source(ConnectErrorKind::ServerParse, e),
            )
        })?;
        // An empty address parses (as no host at all) and would fail later as a DNS error.
        if one.is_empty() || addr.host().is_empty() {
            return Err(NatsError::connect(
                url,
                async_nats::ConnectError::with_source(
                    ConnectErrorKind::ServerParse,
                    std::io::Error::other("a server address without a host"),
                ),
            ));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// The user and password (or the token: a user without a password) of the first address
/// that has any, percent-decoded.
fn url_credentials(addrs: &[ServerAddr]) -> Option<(String, Option<String>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    addrs.iter().find_map(|addr| {
        let user = addr.username()?;
        Some((decode(user), addr.password().map(decode)))
    })
}

/// `url` with every password or token hidden (`nats://alice:***@host`, `nats://***@host`),
/// for messages and [`Nats::url`]: a URL is shown in errors, logs and status lines.
pub(crate) fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let start = one.find("://").map_or(0, |i| i + 3);
            let end = one[start..].find('/').map_or(one.len(), |i| start + i);
            match one[start..end].rfind('@') {
                Some(at) => {
                    let userinfo = &one[start..start + at];
                    let shown = match userinfo.split_once(':') {
                        Some((user, _)) => format!("{user}:***"),
                        None => "***".to_owned(),
                    };
                    format!("{}{shown}{}", &one[..start], &one[start + at..])
                }
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The client's default backoff (immediate, then doubling from 2 ms), capped at `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(40);
    Duration::from_millis(2u64.saturating_pow(exp)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_the_cap() {
        let max = Duration::from_millis(100);
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        assert_eq!(reconnect_delay(2, max), Duration::from_millis(2));
        assert_eq!(reconnect_delay(3, max), Duration::from_millis(4));
        assert_eq!(reconnect_delay(20, max), max);
        assert_eq!(reconnect_delay(usize::MAX, max), max);
    }

    #[test]
    fn passwords_and_tokens_are_hidden_and_read_decoded() {
        assert_eq!(
            redact("nats://alice:s3cret@h:4222, tls://tok@g:1/x,nats://h:2"),
            "nats://alice:***@h:4222, tls://***@g:1/x,nats://h:2"
        );
        assert_eq!(redact("alice:p@ss@h:1"), "alice:***@h:1");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        let addrs = parse_urls("nats://h:1,nats://bob:p%40ss@g:2").unwrap();
        assert_eq!(
            url_credentials(&addrs),
            Some(("bob".to_owned(), Some("p@ss".to_owned())))
        );
        let addrs = parse_urls("nats://t0ken@h:1").unwrap();
        assert_eq!(url_credentials(&addrs), Some(("t0ken".to_owned(), None)));
        assert_eq!(url_credentials(&parse_urls("nats://h:1").unwrap()), None);
    }

    #[test]
    fn urls_parse_one_or_several() {
        assert_eq!(parse_urls("nats://127.0.0.1:4222").unwrap().len(), 1);
        assert_eq!(parse_urls("nats://a:1, nats://b:2").unwrap().len(), 2);
        for empty in ["", "   ", "nats://a:1,", "nats://"] {
            assert!(
                matches!(
                    parse_urls(empty),
                    Err(NatsError::Connect {
                        kind: crate::ConnectKind::BadUrl,
                        ..
                    })
                ),
                "{empty:?}"
            );
        }
        assert!(matches!(
            parse_urls("nats://:x"),
            Err(NatsError::Connect {
                kind: crate::ConnectKind::BadUrl,
                ..
            })
        ));
    }
}
