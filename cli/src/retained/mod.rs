//! `ephemeral kv` and `ephemeral room`: retained state on the bus from a shell.

mod kv;
mod room;

use std::io::Write;
use std::time::SystemTime;

use ephemeral_bus::retained::StoreError;

use crate::exit::{Failure, IO, NO_MATCH, USAGE};

pub(crate) use kv::{KvArgs, kv};
pub(crate) use room::{RoomArgs, room};

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::InvalidKey { .. }
            | StoreError::InvalidName { .. }
            | StoreError::ValueTooLarge { .. }
            | StoreError::ZeroTtl => USAGE,
            StoreError::Bus(_) => {
                // The bus's own mapping (refused directories, i/o).
                let StoreError::Bus(bus) = e else {
                    unreachable!("matched just above")
                };
                return Failure::from(bus);
            }
            _ => IO,
        };
        Failure::new(code, e.to_string())
    }
}

/// Writes one line to stdout and flushes it; `false` when stdout is gone (a closed pipe).
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// Resolves when the process is asked to stop (Ctrl-C / SIGINT, or SIGTERM).
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// RFC 3339 with milliseconds, UTC (the `--json` form of a time).
fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds from now until `t` (0 once passed).
fn remaining_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A value in JSON: its text when it is UTF-8, otherwise the list of its bytes.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum JsonBytes<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> JsonBytes<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        std::str::from_utf8(bytes).map_or(Self::Bytes(bytes), Self::Text)
    }
}

/// One JSON line from a typed view (serializing these views cannot fail).
fn json_line(view: &impl serde::Serialize) -> String {
    serde_json::to_string(view).unwrap_or_default()
}

/// `1` for "not there", as `match` uses for "no match".
/// Opens the bus a `kv` or `room` command works on.
///
/// Retained state over NATS (a JetStream KV bucket and a limits stream) is not in the CLI
/// yet, so `--nats` is refused with a usage error rather than silently using a bus.
async fn open_bus(target: crate::commands::Target) -> Result<ephemeral_bus::Bus, Failure> {
    match target {
        crate::commands::Target::Bus { bus, create } => {
            crate::commands::open_bus(&bus, create).await
        }
        crate::commands::Target::Nats { .. } => Err(Failure::new(
            USAGE,
            "`kv` and `room` work on a bus of this machine only for now: pass --bus NAME \
             (and unset EPHEMERAL_NATS)",
        )),
    }
}

fn not_found(what: String) -> Failure {
    Failure::new(NO_MATCH, what)
}
