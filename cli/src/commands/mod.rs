//! The bus subcommands, one file each, and what they share: the bus or NATS they talk to,
//! the signal given on the command line, output and interruption.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use ephemeral_bus::link::Link;
use ephemeral_bus::{
    BUS_DIR_ENV, Bridged, Bus, BusError, BusName, BusOptions, KEY_HEADER, Lagged, Message, Outgoing,
};
use ephemeral_nats::{Nats, NatsOptions};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::exit::{Failure, IO, NO_BUS, REFUSED, USAGE};

mod hold;
mod publish;
mod raise;
mod request;
mod stats;
mod watch;

pub(crate) use hold::hold;
pub(crate) use publish::publish;
pub(crate) use raise::raise;
pub(crate) use request::request;
pub(crate) use stats::{StatsView, stats};
pub(crate) use watch::{WatchView, watch};

/// What every subcommand talks to: a bus of this machine, or NATS.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A bus (`--bus`, `EPHEMERAL_BUS`, or `default`).
    Bus { bus: BusName, create: bool },
    /// A NATS server or cluster (`--nats`, `EPHEMERAL_NATS`).
    Nats {
        url: String,
        /// The URL is `EPHEMERAL_NATS`'s (no `--nats`): errors about it name the variable.
        url_from_env: bool,
        /// The prefix is `EPHEMERAL_NATS_PREFIX`'s (no `--nats-prefix`).
        prefix_from_env: bool,
        prefix: Option<String>,
        creds: Option<PathBuf>,
        /// `--nats-tls-ca`, `--nats-tls-cert`, `--nats-tls-key`.
        tls: crate::args::Tls,
        /// `--nats-connect-timeout`; `None`: the library's default.
        connect_timeout: Option<Duration>,
    },
}

/// An open connection to a [`Target`].
#[derive(Debug, Clone)]
pub(crate) enum Conn {
    Bus(Bus),
    Nats(Nats),
}

/// The default max age of a signal sink ([`ephemeral::SinkOptions`]): a longer `raise --ttl`
/// is cut to it by every sink that keeps the default.
pub(crate) const SINK_MAX_AGE: Duration = Duration::from_secs(60);

/// How long connecting to NATS waits for the server without `--nats-connect-timeout` (the
/// library's default).
pub(crate) const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The sequence number `raise` and `hold` stamp on their signal: with this process's origin
/// (random per process), it identifies the signal to the bridges' de-duplication.
pub(crate) const CLI_SEQ: u64 = 1;

impl Target {
    /// Connects: opens the bus (refusing to create one unless `--create` was given), or
    /// connects to NATS.
    pub(crate) async fn connect(&self) -> Result<Conn, Failure> {
        match self {
            Target::Bus { bus, create } => Ok(Conn::Bus(open_bus(bus, *create).await?)),
            Target::Nats {
                url,
                url_from_env,
                prefix_from_env,
                prefix,
                creds,
                tls,
                connect_timeout,
            } => {
                let mut options = NatsOptions::default().name("ephemeral-cli");
                if let Some(prefix) = prefix {
                    options = options.prefix(prefix.as_str());
                }
                if let Some(creds) = creds {
                    options = options.credentials_file(creds);
                }
                if tls.any() {
                    options = options.require_tls(true);
                }
                if let Some(ca) = &tls.ca {
                    options = options.root_certificates(ca);
                }
                if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                    options = options.client_certificate(cert, key);
                }
                let waited = connect_timeout.unwrap_or(NATS_CONNECT_TIMEOUT);
                options = options.connect_timeout(waited);
                Nats::connect_with(url, options)
                    .await
                    .map(Conn::Nats)
                    .map_err(|e| {
                        crate::exit::connect_failure(e, waited, *url_from_env, *prefix_from_env)
                    })
            }
        }
    }
}

/// Opens the bus, refusing to create one unless `create`.
pub(crate) async fn open_bus(name: &BusName, create: bool) -> Result<Bus, Failure> {
    let options = BusOptions::default();
    if !create {
        let dir = options.bus_dir(name);
        match Bus::exists(name.as_str(), &options) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Failure::new(
                    NO_BUS,
                    format!(
                        "no bus named `{name}`: {} does not exist. Start the service that opens it, \
                         pick another with --bus NAME, point {BUS_DIR_ENV} at its parent \
                         directory, pass --create to open it anyway, or use --nats URL",
                        dir.display()
                    ),
                ));
            }
            Err(BusError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(Failure::new(
                    REFUSED,
                    format!(
                        "bus `{name}` refused: cannot read {}: {source}: {}",
                        dir.display(),
                        crate::exit::io_hint(&source).unwrap_or_default()
                    ),
                ));
            }
            Err(BusError::Io { source, .. }) => {
                let hint = crate::exit::io_hint(&source)
                    .map(|hint| format!(": {hint}"))
                    .unwrap_or_default();
                return Err(Failure::new(
                    IO,
                    format!(
                        "bus `{name}`: cannot read {}: {source}{hint}",
                        dir.display()
                    ),
                ));
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Bus::open_with(name.as_str(), options).await?)
}

impl Conn {
    /// How status lines name it: ``bus `shop` `` or ``NATS nats://host:4222``.
    pub(crate) fn label(&self) -> String {
        match self {
            Conn::Bus(bus) => format!("bus `{}`", bus.name()),
            Conn::Nats(nats) => format!("NATS {}", nats.url()),
        }
    }

    /// Where a one-shot command sent something: the bus by name, or the NATS server with
    /// the subject prefix (two applications on one server differ only by it).
    pub(crate) fn destination(&self) -> String {
        match self {
            Conn::Bus(_) => self.label(),
            Conn::Nats(_) => self.location(),
        }
    }

    /// The label with where it is: the bus directory, or the NATS subject prefix.
    pub(crate) fn location(&self) -> String {
        match self {
            Conn::Bus(bus) => format!("{} ({})", self.label(), bus.dir().display()),
            Conn::Nats(nats) => format!("{} (prefix `{}`)", self.label(), nats.prefix()),
        }
    }

    /// Publishes `out`; returns how many subscriptions it reached when the transport can
    /// tell (the bus), `None` when it cannot (NATS).
    pub(crate) async fn publish(&self, out: Outgoing) -> Result<Option<usize>, Failure> {
        match self {
            Conn::Bus(bus) => Ok(Some(bus.publish_with(out).await?)),
            Conn::Nats(nats) => {
                nats.publish_with(out).await?;
                Ok(None)
            }
        }
    }

    /// Subscribes to `pattern` with a buffer of `capacity`, dropping the oldest when full
    /// (a watcher never slows anyone down; it is told of what it missed).
    pub(crate) async fn subscribe(
        &self,
        pattern: &str,
        capacity: usize,
    ) -> Result<BoxStream<'static, Result<Message, Lagged>>, Failure> {
        let buffer = ephemeral_bus::Buffer::Bounded(
            std::num::NonZeroUsize::new(capacity).unwrap_or(std::num::NonZeroUsize::MIN),
        );
        Ok(match self {
            Conn::Bus(bus) => bus
                .subscribe_with(pattern, buffer, ephemeral_bus::Overflow::DropOldest)
                .await?
                .boxed(),
            Conn::Nats(nats) => nats.subscribe_with(pattern, buffer).await?.boxed(),
        })
    }

    /// Whether this is NATS and the connection is down right now (the client reconnecting).
    pub(crate) fn is_offline(&self) -> bool {
        matches!(self, Conn::Nats(nats) if !nats.is_connected())
    }

    /// How long a hold lease lasts by default: the bridges' default on this transport.
    pub(crate) fn default_lease(&self) -> Duration {
        match self {
            Conn::Bus(bus) => bus.default_hold_lease(),
            Conn::Nats(nats) => nats.default_hold_lease(),
        }
    }

    /// Waits until what this process sent has left it, so that a one-shot command does not
    /// exit (and drop its queues) first: every bus peer has read it (bounded by the bus's
    /// handshake timeout, 1 s, per peer), or the NATS server has it.
    pub(crate) async fn flush(&self) {
        match self {
            Conn::Bus(bus) => bus.flush().await,
            Conn::Nats(nats) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), nats.client().flush()).await;
            }
        }
    }
}

/// A feature of the bus that NATS does not have, asked for with `--nats`.
pub(crate) fn bus_only(what: &str, why: &str) -> Failure {
    Failure::new(USAGE, format!("{what} is not available over NATS: {why}"))
}

/// Resolves when the process is asked to stop (Ctrl-C / SIGINT, or SIGTERM).
pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A status line of a one-shot or long-running command, on stdout like `raise`'s (a closed
/// stdout is no reason to stop holding).
pub(crate) fn status(text: &str) {
    let _ = emit(text);
}

/// Writes one line to stdout and flushes it; `false` when stdout is gone (a closed pipe).
pub(crate) fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// The parts of a signal given on the command line.
#[derive(Debug)]
pub(crate) struct SignalArgs {
    pub(crate) name: String,
    pub(crate) key: Option<String>,
    pub(crate) payload: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl SignalArgs {
    /// The message a bridge publishes for such a signal (see the bridge's header constants).
    /// The message a bridge publishes for this signal as `bridged` (see [`Bridged`]).
    pub(crate) fn outgoing(&self, bridged: Bridged) -> Result<Outgoing, Failure> {
        let mut out = bridged.outgoing(&self.name)?;
        if let Some(key) = &self.key {
            out = out.header(KEY_HEADER, key.as_str());
        }
        if let Some(payload) = &self.payload {
            out = out.payload(payload.as_bytes());
        }
        for (k, v) in &self.headers {
            out = out.header(k, v.as_str());
        }
        Ok(out)
    }
}

/// What a publish reached, for a status line: `reached 2 subscribers`, or `sent` when the
/// transport cannot count (NATS).
pub(crate) fn reached_text(reached: Option<usize>) -> String {
    match reached {
        None => "sent to the server".to_owned(),
        Some(0) => "reached no subscriber".to_owned(),
        Some(1) => "reached 1 subscriber".to_owned(),
        Some(n) => format!("reached {n} subscribers"),
    }
}

/// Reads a payload argument: `-` means standard input.
pub(crate) fn payload_bytes(arg: &str) -> Result<Vec<u8>, Failure> {
    if arg == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::new(USAGE, format!("cannot read the payload from stdin: {e}")))?;
        Ok(bytes)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Over NATS, the connection's losses and returns as lines for stderr (never on a bus, whose
/// peers are on this machine): a watcher says when it cannot see, rather than looking like a
/// quiet system while the server is away.
pub(crate) struct Outages {
    // The sink the connection's signals are raised in, and the guard raising them.
    _sink: ephemeral::SignalSink,
    _raising: Option<ephemeral_nats::ConnectionSignals>,
    changes: Option<ephemeral::Subscription>,
    /// The last change returned: the connection's state as last said (repeats are skipped).
    said: Option<Change>,
}

impl Outages {
    pub(crate) fn of(conn: &Conn) -> Self {
        let sink = ephemeral::SignalSink::default();
        let (raising, changes) = match conn {
            Conn::Nats(nats) => {
                let pattern = format!(
                    "{},{}",
                    ephemeral_nats::CONNECTED_SIGNAL,
                    ephemeral_nats::DISCONNECTED_SIGNAL
                );
                let changes = sink.subscribe(&pattern);
                (Some(nats.connection_signals(&sink)), Some(changes))
            }
            Conn::Bus(_) => (None, None),
        };
        // Down already (before the signals were raised): that is said first.
        let said = match conn {
            Conn::Nats(nats) if nats.is_connected() => Some(Change::Back),
            _ => None,
        };
        Self {
            _sink: sink,
            _raising: raising,
            changes,
            said,
        }
    }

    /// The next change of the connection (never, on a bus): `Lost` at once when it was
    /// down already when this began watching.
    pub(crate) async fn next(&mut self) -> Change {
        let Some(changes) = self.changes.as_mut() else {
            return std::future::pending().await;
        };
        if self.said.is_none() {
            self.said = Some(Change::Lost);
            return Change::Lost;
        }
        loop {
            let change = match changes.next().await {
                Some(Ok(signal))
                    if signal.name().as_str() == ephemeral_nats::DISCONNECTED_SIGNAL =>
                {
                    Change::Lost
                }
                Some(Ok(_)) => Change::Back,
                // Missed changes: the next one says where it stands.
                Some(Err(_)) => continue,
                None => return std::future::pending().await,
            };
            if self.said != Some(change) {
                self.said = Some(change);
                return change;
            }
        }
    }
}

/// A change of the NATS connection, from [`Outages::next`]; each command words its own
/// line for stderr, saying what the change means for what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The connection was lost; the client is reconnecting.
    Lost,
    /// The connection is back.
    Back,
}

impl Change {
    /// The line of a command that receives (`watch`, `stats`), stamped with the time.
    pub(crate) fn receiver_note(self) -> String {
        note(match self {
            Change::Lost => {
                "lost the connection to NATS: reconnecting; what is published meanwhile is \
                 not seen here (a gap shows as `lagged` once back)"
            }
            Change::Back => "reconnected to NATS",
        })
    }
}

/// `text` stamped with the local time of day, as a line for stderr.
pub(crate) fn note(text: &str) -> String {
    format!(
        "{} {text}",
        crate::render::clock(std::time::SystemTime::now())
    )
}
