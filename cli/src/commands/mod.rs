//! The bus subcommands, one file each, and what they share: the bus they talk to, the
//! signal given on the command line, output and interruption.

use std::io::{Read, Write};
use std::time::Duration;

use ephemeral_bus::{
    BUS_DIR_ENV, Bridged, Bus, BusError, BusName, BusOptions, KEY_HEADER, Outgoing,
};

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

/// The bus every subcommand talks to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) bus: BusName,
    pub(crate) create: bool,
}

/// The default max age of a signal sink ([`ephemeral::SinkOptions`]): a longer `raise --ttl`
/// is cut to it by every sink that keeps the default.
pub(crate) const SINK_MAX_AGE: Duration = Duration::from_secs(60);

/// The sequence number `raise` and `hold` stamp on their signal: with this process's origin
/// (random per process), it identifies the signal to the bridges' de-duplication.
pub(crate) const CLI_SEQ: u64 = 1;

impl Target {
    /// Opens the bus, refusing to create one unless `--create` was given.
    pub(crate) async fn open(&self) -> Result<Bus, Failure> {
        let options = BusOptions::default();
        if !self.create {
            let dir = options.bus_dir(&self.bus);
            match Bus::exists(self.bus.as_str(), &options) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Failure::new(
                        NO_BUS,
                        format!(
                            "no bus named `{}`: {} does not exist. Start the service that opens it, \
                             pick another with --bus NAME, point {BUS_DIR_ENV} at its parent \
                             directory, or pass --create to open it anyway",
                            self.bus,
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
                            "bus `{}` refused: cannot read {}: {source}",
                            self.bus,
                            dir.display()
                        ),
                    ));
                }
                Err(BusError::Io { source, .. }) => {
                    return Err(Failure::new(
                        IO,
                        format!(
                            "bus `{}`: cannot read {}: {source}",
                            self.bus,
                            dir.display()
                        ),
                    ));
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(Bus::open_with(self.bus.as_str(), options).await?)
    }
}

/// Waits until every peer has read what this process queued for it, so that a one-shot
/// command does not exit (and drop its queues) before its messages left (bounded by the
/// bus's handshake timeout, 1 s, per peer).
pub(crate) async fn flush(bus: &Bus) {
    bus.flush().await;
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

pub(crate) fn reached_text(reached: usize) -> String {
    match reached {
        0 => "no subscriber".to_owned(),
        1 => "1 subscriber".to_owned(),
        n => format!("{n} subscribers"),
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
