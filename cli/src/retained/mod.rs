//! `ephemeral kv` and `ephemeral room`: retained state on the bus or on NATS from a shell.

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
            | StoreError::ZeroTtl
            | StoreError::ZeroMaxAge
            | StoreError::EmptyPattern { .. } => USAGE,
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

/// Prints `items` one line each (`render` for an item, the lag line for a `Lagged`) until
/// `count` items were shown, stdout closes or the process is asked to stop; `ended` is the
/// error when the stream ends first. Over NATS, `outages` (watched from before the ready
/// line) says on stderr when the connection is lost and when it is back. What `kv watch`
/// and `room join` share.
async fn follow<T>(
    mut outages: crate::commands::Outages,
    mut items: impl futures::Stream<Item = Result<T, ephemeral::Lagged>> + Unpin,
    count: Option<u64>,
    json: bool,
    ended: impl FnOnce() -> String,
    render: impl Fn(&T, bool) -> String,
) -> Result<(), Failure> {
    use futures::StreamExt;
    let stop = crate::commands::interrupted();
    tokio::pin!(stop);
    let mut shown = 0;
    while count.is_none_or(|c| shown < c) {
        let item = tokio::select! {
            () = &mut stop => return Ok(()),
            change = outages.next() => {
                say!("{}", crate::commands::note(match change {
                    crate::commands::Change::Lost => {
                        "lost the connection to NATS: reconnecting; what happens meanwhile \
                         shows once the connection is back and the reading resumes (some \
                         seconds later)"
                    }
                    crate::commands::Change::Back => "reconnected to NATS",
                }));
                continue;
            }
            item = items.next() => item,
        };
        let line = match item {
            None => return Err(Failure::new(IO, ended())),
            Some(Err(lagged)) if json => crate::render::lagged_json(lagged.count()),
            Some(Err(lagged)) => crate::render::lagged_text(lagged.count()),
            Some(Ok(item)) => {
                shown += 1;
                render(&item, json)
            }
        };
        if !emit(&line) {
            return Ok(());
        }
    }
    Ok(())
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

/// Where a `kv` or `room` command works: a bus of this machine, or NATS (a JetStream KV
/// bucket and a limits stream; the same `Store` and `Room` either way).
#[derive(Debug, Clone)]
struct Place {
    conn: crate::commands::Conn,
}

impl Place {
    /// Opens the bus or connects to NATS.
    async fn open(target: crate::commands::Target) -> Result<Self, Failure> {
        Ok(Self {
            conn: target.connect().await?,
        })
    }

    async fn store(&self, name: &str) -> Result<ephemeral_bus::retained::Store, StoreError> {
        use ephemeral_bus::retained::{Retained, StoreOptions};
        match &self.conn {
            crate::commands::Conn::Bus(bus) => bus.store(name, StoreOptions::default()).await,
            crate::commands::Conn::Nats(nats) => {
                Retained::store(nats, name, StoreOptions::default()).await
            }
        }
    }

    async fn room(&self, name: &str) -> Result<ephemeral_bus::retained::Room, StoreError> {
        use ephemeral_bus::retained::{Retained, RoomOptions};
        match &self.conn {
            crate::commands::Conn::Bus(bus) => bus.room(name, RoomOptions::default()).await,
            crate::commands::Conn::Nats(nats) => {
                Retained::room(nats, name, RoomOptions::default()).await
            }
        }
    }

    /// Waits until what this process sent has been read: on a bus, the change notices a
    /// `set`, `delete` or `send` rang (without them, a watcher or member of another process
    /// sees the change only at its once-a-second re-read, and a short time to live may run
    /// out first); on NATS, the client's buffer.
    async fn flush(&self) {
        self.conn.flush().await;
    }

    /// A store's or room's error as the command says it: over NATS with the connection
    /// down, in the command's terms (the library's explanation names its API); else as
    /// [`From<StoreError>`](Failure) says it.
    fn failure(&self, e: StoreError) -> Failure {
        match (&self.conn, &e) {
            (crate::commands::Conn::Nats(nats), StoreError::Backend { op, .. })
                if !nats.is_connected() =>
            {
                crate::exit::offline_failure(nats.url(), op)
            }
            _ => Failure::from(e),
        }
    }

    /// `bus `name`` or `NATS `url``, for messages.
    fn describe(&self) -> String {
        match &self.conn {
            crate::commands::Conn::Bus(bus) => format!("bus `{}`", bus.name()),
            crate::commands::Conn::Nats(nats) => format!("NATS `{}`", nats.url()),
        }
    }

    /// What closed under a watch or a join.
    fn closed(&self) -> &'static str {
        match &self.conn {
            crate::commands::Conn::Bus(_) => "the bus closed",
            crate::commands::Conn::Nats(_) => "the NATS connection closed",
        }
    }
}

fn not_found(what: String) -> Failure {
    Failure::new(NO_MATCH, what)
}
