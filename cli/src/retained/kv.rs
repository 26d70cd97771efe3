//! `ephemeral kv`: a store of the bus or of NATS.

use std::time::Duration;

use clap::{Args, Subcommand};
use ephemeral_bus::retained::{Entry, Removal, StoreEvent};

use super::{JsonBytes, emit, follow, json_line, not_found, remaining_ms, rfc3339};
use crate::args;
use crate::commands::payload_bytes;
use crate::exit::Failure;
use crate::render;

/// Arguments of `ephemeral kv`.
#[derive(Debug, Args)]
pub(crate) struct KvArgs {
    #[command(flatten)]
    pub(crate) bus: args::BusArgs,
    /// The store (created on first use, with default options).
    #[arg(long, global = true, default_value = "default", value_parser = args::store_name)]
    store: String,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Print the value of KEY; exit 1 if it has none (never set, deleted or expired).
    ///
    /// Into a pipe or a file the value is written as it is. On a terminal its control
    /// characters (but line breaks and tabs) are escaped (`\u{1b}`) and a binary value shows
    /// as `<N bytes: hex>`, so a stored value cannot send escape sequences to the terminal.
    #[command(after_help = "Examples:\n  \
        ephemeral kv get feature.dark-mode\n  \
        ephemeral kv --store sessions get user.42 --json")]
    Get {
        /// The key (a name: `user.42`, `config.log:level`).
        #[arg(value_parser = args::key)]
        key: String,
        /// One JSON object with the value, revision, times and owner.
        #[arg(long)]
        json: bool,
    },
    /// Set KEY to VALUE (`-` reads it from standard input).
    #[command(after_help = "Examples:\n  \
        ephemeral kv set feature.dark-mode on\n  \
        ephemeral kv --store sessions set user.42 - --ttl 30m < session.json")]
    Set {
        /// The key.
        #[arg(value_parser = args::key)]
        key: String,
        /// The value; `-` reads it from standard input.
        value: String,
        /// How long it lives (e.g. 500ms, 30s, 1h); default: until deleted.
        #[arg(long, value_parser = args::positive_duration)]
        ttl: Option<Duration>,
    },
    /// Delete KEY; exit 1 if it had no value.
    #[command(after_help = "Examples:\n  \
        ephemeral kv del feature.dark-mode\n  \
        ephemeral kv --store sessions del user.42")]
    Del {
        /// The key.
        #[arg(value_parser = args::key)]
        key: String,
    },
    /// List the live values whose key matches PATTERN (default `*`), sorted by key.
    #[command(after_help = "Examples:\n  \
        ephemeral kv ls\n  \
        ephemeral kv --store sessions ls 'user.*' --json")]
    Ls {
        /// Which keys: `*`, `?`, `,` alternatives, whole-segment `+`.
        #[arg(default_value = "*")]
        pattern: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print changes to keys matching PATTERN (default `*`) as they happen.
    #[command(after_help = "Examples:\n  \
        ephemeral kv watch 'feature.*'\n  \
        ephemeral kv watch feature.dark-mode --count 1 --json   # wait for one change")]
    Watch {
        /// Which keys (one that matches nothing, `''`, is refused: the watch would wait
        /// forever).
        #[arg(default_value = "*", value_parser = args::watch_pattern)]
        pattern: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Exit after N changes (lag notices not counted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// `ephemeral kv`.
pub(crate) async fn kv(args: KvArgs) -> Result<(), Failure> {
    let place = super::Place::open(args.bus.clone().target()?).await?;
    let store = place
        .store(&args.store)
        .await
        .map_err(|e| place.failure(e))?;
    match args.command {
        KvCommand::Get { key, json } => {
            let entry = store
                .entry(&key)
                .await
                .map_err(|e| place.failure(e))?
                .ok_or_else(|| {
                    not_found(format!("`{key}` has no value in store `{}`", args.store))
                })?;
            if json {
                emit(&json_line(&EntryJson::of(&entry)));
            } else {
                use std::io::{IsTerminal, Write};
                let mut out = std::io::stdout().lock();
                let terminal = out.is_terminal();
                let value = render::raw_or_escaped(entry.value(), terminal);
                out.write_all(&value)?;
                // One line, as `request` prints a reply: a value ending in a line break is
                // not given a second one (`kv set k - < f; kv get k > g` gives f back).
                if !value.ends_with(b"\n") {
                    out.write_all(b"\n")?;
                }
                out.flush()?;
            }
            Ok(())
        }
        KvCommand::Set { key, value, ttl } => {
            let value = payload_bytes(&value)?;
            let revision = store
                .set(&key, value, ttl)
                .await
                .map_err(|e| place.failure(e))?;
            place.flush().await;
            say!(
                "set `{key}` in store `{}` (revision {revision})",
                args.store
            );
            Ok(())
        }
        KvCommand::Del { key } => {
            if store.delete(&key).await.map_err(|e| place.failure(e))? {
                place.flush().await;
                say!("deleted `{key}` from store `{}`", args.store);
                Ok(())
            } else {
                Err(not_found(format!(
                    "`{key}` has no value in store `{}`",
                    args.store
                )))
            }
        }
        KvCommand::Ls { pattern, json } => {
            let pattern = ephemeral::Pattern::new(&pattern);
            for entry in store.entries().await.map_err(|e| place.failure(e))? {
                if !pattern.matches(entry.key()) {
                    continue;
                }
                let line = if json {
                    json_line(&EntryJson::of(&entry))
                } else {
                    entry_text(&entry)
                };
                if !emit(&line) {
                    break;
                }
            }
            Ok(())
        }
        KvCommand::Watch {
            pattern,
            json,
            count,
        } => {
            // Watched from before the ready line: an outage from then on is said.
            let outages = crate::commands::Outages::of(&place.conn);
            let mut changes = store.watch(&pattern).await.map_err(|e| place.failure(e))?;
            say!(
                "watching `{pattern}` in store `{}` on {}; Ctrl-C to stop",
                args.store,
                place.describe()
            );
            follow(
                outages,
                &mut changes,
                count,
                json,
                || format!("the store's watch ended: {}", place.closed()),
                |event, json| {
                    if json {
                        event_json(event)
                    } else {
                        event_text(event)
                    }
                },
            )
            .await
        }
    }
}

fn entry_text(entry: &Entry) -> String {
    let ttl = entry
        .expires_at()
        .map(|at| {
            format!(
                " ttl={}",
                render::ttl_text(Duration::from_millis(remaining_ms(at)))
            )
        })
        .unwrap_or_default();
    let owner = entry
        .owner()
        .map(|o| format!(" owner={o:016x}"))
        .unwrap_or_default();
    format!(
        "{} {} rev={}{ttl}{owner}",
        entry.key(),
        render::summary(entry.value()),
        entry.revision()
    )
}

/// One entry in `kv get|ls --json` (and in a `set` event of `kv watch --json`).
#[derive(serde::Serialize)]
struct EntryJson<'a> {
    key: &'a str,
    value: JsonBytes<'a>,
    revision: u64,
    set_at: String,
    expires_in_ms: Option<u64>,
    owner: Option<String>,
}

impl<'a> EntryJson<'a> {
    fn of(entry: &'a Entry) -> Self {
        Self {
            key: entry.key().as_str(),
            value: JsonBytes::of(entry.value()),
            revision: entry.revision(),
            set_at: rfc3339(entry.set_at()),
            expires_in_ms: entry.expires_at().map(remaining_ms),
            owner: entry.owner().map(|o| format!("{o:016x}")),
        }
    }
}

/// One `kv watch --json` line: `time`, `kind`, then the entry (set) or key, revision and
/// cause (deleted, expired, changed).
#[derive(serde::Serialize)]
struct EventJson<'a> {
    time: String,
    kind: &'static str,
    #[serde(flatten)]
    what: EventWhat<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum EventWhat<'a> {
    Set(EntryJson<'a>),
    Removed {
        key: &'a str,
        revision: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<&'static str>,
    },
}

fn removal(cause: Removal) -> &'static str {
    match cause {
        Removal::Deleted => "deleted",
        Removal::Cleared => "cleared",
        Removal::OwnerGone => "owner-gone",
        _ => "removed",
    }
}

fn event_text(event: &StoreEvent) -> String {
    let now = render::clock(std::time::SystemTime::now());
    match event {
        StoreEvent::Set(entry) => format!("{now} set      {}", entry_text(entry)),
        StoreEvent::Deleted {
            key,
            revision,
            cause,
        } => {
            format!("{now} deleted  {key} rev={revision} ({})", removal(*cause))
        }
        StoreEvent::Expired { key, revision } => format!("{now} expired  {key} rev={revision}"),
        other => format!("{now} changed  {} rev={}", other.key(), other.revision()),
    }
}

fn event_json(event: &StoreEvent) -> String {
    let (kind, what) = match event {
        StoreEvent::Set(entry) => ("set", EventWhat::Set(EntryJson::of(entry))),
        StoreEvent::Deleted {
            key,
            revision,
            cause,
        } => (
            "deleted",
            EventWhat::Removed {
                key: key.as_str(),
                revision: *revision,
                cause: Some(removal(*cause)),
            },
        ),
        other => (
            if matches!(other, StoreEvent::Expired { .. }) {
                "expired"
            } else {
                "changed"
            },
            EventWhat::Removed {
                key: other.key().as_str(),
                revision: other.revision(),
                cause: None,
            },
        ),
    };
    json_line(&EventJson {
        time: rfc3339(std::time::SystemTime::now()),
        kind,
        what,
    })
}
