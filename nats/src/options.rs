//! `NatsOptions`: how to connect.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The subject prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "ephemeral";

/// How a [`Nats`](crate::Nats) connects: identity, timeouts, reconnects, credentials, TLS and
/// the subject prefix.
///
/// Every setting has a default that works against a local `nats-server`:
///
/// | setting | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | `ephemeral`: messages on `ephemeral.s.<topic>`, requests on `ephemeral.q.<topic>` |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s per attempt |
/// | [`ping_interval`](Self::ping_interval) | 60 s (a silent, half-dead connection is noticed after two missed pings) |
/// | [`max_reconnects`](Self::max_reconnects) | `None`: reconnect for ever |
/// | [`max_reconnect_delay`](Self::max_reconnect_delay) | 4 s (the delay doubles from 2 ms up to it) |
/// | credentials | none; at most one of user/password, token, nkey or credentials file (the last one set wins) |
/// | TLS | as the URL and server say (`tls://` or a server that requires it) |
///
/// The first connection is not retried: a wrong address or refused credentials are an error
/// at once, not a silent wait. After that the client reconnects by itself, re-subscribes,
/// and [`Nats::connection_signals`](crate::Nats::connection_signals) tells the sink.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_nats::NatsOptions;
///
/// let options = NatsOptions::default()
///     .name("orders-worker")
///     .prefix("shop.prod")
///     .connect_timeout(Duration::from_secs(2))
///     .user_password("orders", "s3cret");
/// assert_eq!(options.get_prefix(), "shop.prod");
/// // Secrets stay out of logs.
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct NatsOptions {
    pub(crate) prefix: String,
    pub(crate) name: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) max_reconnects: Option<usize>,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) auth: Auth,
    pub(crate) require_tls: bool,
    pub(crate) root_certificates: Vec<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
}

#[derive(Clone)]
pub(crate) enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
    Nkey(String),
    CredentialsFile(PathBuf),
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            name: None,
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(60),
            max_reconnects: None,
            max_reconnect_delay: Duration::from_secs(4),
            auth: Auth::None,
            require_tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
        }
    }
}

impl NatsOptions {
    /// The subject prefix (default `ephemeral`): one or more dot-separated words of ASCII
    /// letters, digits, `-` and `_`, none of them one of the words the crate puts after it
    /// ([`subject::RESERVED`](crate::subject::RESERVED): `s`, `q`, `i`, `wq`, `room`,
    /// `kvstats`). Handles with different prefixes do not see each other's messages,
    /// requests, queues or retained state, also when one prefix extends another (`app` and
    /// `app.eu`), so one cluster can host several applications.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The subject prefix set.
    #[must_use]
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection's name, shown by the server's monitoring (`connz`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long one connection attempt may take, TLS and authentication included (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the client pings the server (default 60 s); two unanswered pings end the
    /// connection and start reconnecting. Lower it to notice a silent network partition sooner.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How many reconnect attempts in a row before the client gives up (default `None`:
    /// for ever). After giving up every call fails with [`NatsError::Closed`](crate::NatsError::Closed).
    pub fn max_reconnects(mut self, attempts: impl Into<Option<usize>>) -> Self {
        self.max_reconnects = attempts.into();
        self
    }

    /// The longest wait between two reconnect attempts (default 4 s); the first attempt is
    /// immediate, then the wait doubles from 2 ms up to this.
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// Authenticate with a user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticate with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Authenticate with an nkey seed (`SU…`).
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.auth = Auth::Nkey(seed.into());
        self
    }

    /// Authenticate with a credentials file (`.creds`, a user JWT and its nkey seed), read when
    /// connecting; an unreadable file is [`NatsError::Credentials`](crate::NatsError::Credentials).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Refuse to connect without TLS (default: as the URL and server say; always when a
    /// certificate is given with [`root_certificates`](Self::root_certificates) or
    /// [`client_certificate`](Self::client_certificate)).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Trust the certificate authorities in this PEM file (besides the system's). May be
    /// given several times.
    ///
    /// Giving a certificate means TLS is wanted: the connection then requires TLS, so a
    /// server without it is a [`ConnectKind::Tls`](crate::ConnectKind::Tls) error rather than
    /// a plain-text connection that ignores the file; a file that cannot be read is
    /// [`NatsError::Certificate`](crate::NatsError::Certificate), naming it, whatever the
    /// server.
    pub fn root_certificates(mut self, pem: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Present this client certificate and key (PEM files), for servers that verify clients.
    /// Like [`root_certificates`](Self::root_certificates), it requires TLS, and a file that
    /// cannot be read is [`NatsError::Certificate`](crate::NatsError::Certificate).
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none".to_owned(),
            Auth::UserPassword(user, _) => format!("user {user} (password hidden)"),
            Auth::Token(_) => "token (hidden)".to_owned(),
            Auth::Nkey(_) => "nkey (hidden)".to_owned(),
            Auth::CredentialsFile(path) => format!("credentials file {}", path.display()),
        };
        f.debug_struct("NatsOptions")
            .field("prefix", &self.prefix)
            .field("name", &self.name)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("max_reconnects", &self.max_reconnects)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("auth", &auth)
            .field("require_tls", &self.require_tls)
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .finish()
    }
}
