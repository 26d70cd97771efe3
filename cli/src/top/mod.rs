//! `ephemeral top`, `ops` and `signals`: the live state that coordinators and sinks publish
//! (`ephemeral_bus::inspect`), watched from another terminal.
//!
//! The data source is a [`StateWatcher`] over a transport; the views are generic over the
//! transport, so the bus and NATS (`--nats`) differ only in how the watcher is built
//! (`with_watcher!`).

use std::time::Duration;

use clap::Args;
use ephemeral_bus::inspect::{StateFrame, StateTransport, StateWatcher};

use crate::args;
use crate::commands::Target;
use crate::exit::Failure;

mod board;
mod columns;
pub(crate) mod fmt;
mod ops;
mod plain;
mod tui;

pub(crate) use ops::{ops, signals};

/// `ephemeral top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    pub(crate) bus: crate::args::BusArgs,
    /// Print one snapshot and exit (a table, or JSON with --json).
    #[arg(long)]
    pub(crate) once: bool,
    /// JSON instead of text: with --once one object, otherwise one object per refresh.
    #[arg(long)]
    pub(crate) json: bool,
    /// How often to poll the publishers and refresh (each publisher also bounds its own rate).
    #[arg(long, default_value = "250ms", value_parser = args::positive_duration)]
    pub(crate) interval: Duration,
    /// How long --once waits for every publisher to answer.
    #[arg(long, default_value = "2s", value_parser = args::positive_duration)]
    pub(crate) wait: Duration,
    /// Show only coordinators whose name matches (`*`, `?`, `,`; a word without wildcards
    /// matches names containing it).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) filter: Option<String>,
    /// Stop after N refreshes (plain and JSON output; 0 shows nothing). Not with --once,
    /// which prints one snapshot.
    #[arg(long, value_name = "N", conflicts_with = "once")]
    pub(crate) count: Option<u64>,
    /// Plain lines even on a terminal (--once always prints plain lines: accepted there,
    /// and changes nothing).
    #[arg(long)]
    pub(crate) plain: bool,
}

/// `ephemeral ops`.
#[derive(Debug, Args)]
pub(crate) struct OpsArgs {
    #[command(flatten)]
    pub(crate) bus: crate::args::BusArgs,
    /// The coordinator's published name (a pattern: `*`, `?`, `,`; one that matches no name,
    /// such as an empty one, is refused).
    #[arg(value_parser = crate::args::coordinator_pattern)]
    pub(crate) name: String,
    /// Only operations in these states: pending, running, completed, failed, cancelled
    /// (repeatable, or comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = state)]
    pub(crate) state: Vec<String>,
    /// Only operations whose key matches this pattern.
    #[arg(long, value_name = "PATTERN")]
    pub(crate) key: Option<String>,
    /// One JSON object per operation instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// How long to wait for every publisher to answer.
    #[arg(long, default_value = "2s", value_parser = args::positive_duration)]
    pub(crate) wait: Duration,
}

/// `ephemeral signals`.
#[derive(Debug, Args)]
pub(crate) struct SignalsArgs {
    #[command(flatten)]
    pub(crate) bus: crate::args::BusArgs,
    /// Only signals whose name matches this pattern (default: all; one that matches no
    /// name, such as an empty one, is refused).
    #[arg(default_value = "*", value_parser = crate::args::signals_pattern)]
    pub(crate) pattern: String,
    /// Only held conditions.
    #[arg(long)]
    pub(crate) held: bool,
    /// One JSON object per signal instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// How long to wait for every publisher to answer.
    #[arg(long, default_value = "2s", value_parser = args::positive_duration)]
    pub(crate) wait: Duration,
}

/// The operation states a frame can hold.
const STATES: [&str; 5] = ["pending", "running", "completed", "failed", "cancelled"];

fn state(s: &str) -> Result<String, String> {
    if STATES.contains(&s) {
        Ok(s.to_owned())
    } else if s == "deferred" {
        // A library snapshot says `Deferred`; the frames the processes publish do not tell
        // a held item from one waiting its turn (inspect format v1).
        Err(
            "deferred operations are shown as pending (a published frame does not tell \
             them apart; its coordinator's DEFERRED BY column says what holds them): use \
             --state pending"
                .to_owned(),
        )
    } else {
        Err(format!(
            "`{s}` is not a state: use one of {}",
            STATES.join(", ")
        ))
    }
}

/// Where the frames come from, as the views name it.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A bus, by name.
    Bus(String),
    /// NATS, by URL, and the subject prefix: applications sharing a server differ only by
    /// it, so a view that finds no publisher names the prefix it looked under.
    Nats { url: String, prefix: String },
}

impl Source {
    /// ``bus shop``, ``NATS nats://host:4222 (prefix `ephemeral`)``.
    pub(crate) fn label(&self) -> String {
        match self {
            Source::Bus(name) => format!("bus {name}"),
            Source::Nats { url, prefix } => format!("NATS {url} (prefix `{prefix}`)"),
        }
    }

    /// The keys and values naming it in a JSON snapshot: `"bus": "shop"`, or
    /// `"nats": "nats://host:4222"` and `"prefix": "ephemeral"` (as in `stats --json`).
    pub(crate) fn json(&self) -> Vec<(&'static str, &str)> {
        match self {
            Source::Bus(name) => vec![("bus", name)],
            Source::Nats { url, prefix } => vec![("nats", url), ("prefix", prefix)],
        }
    }
}

/// Runs `$body` with `$watcher` bound to a [`StateWatcher`] over the target's transport
/// (the bus or NATS) and `$source` to its [`Source`]: the one place a transport is chosen;
/// the views are generic over it.
macro_rules! with_watcher {
    ($target:expr, |$source:ident, $watcher:ident| $body:expr) => {
        match $target.connect().await? {
            crate::commands::Conn::Bus(bus) => {
                #[allow(unused_mut)]
                let mut $watcher = StateWatcher::new(&bus).await.map_err(inspect_failure)?;
                let $source = Source::Bus(bus.name().as_str().to_owned());
                $body
            }
            crate::commands::Conn::Nats(nats) => {
                #[allow(unused_mut)]
                let mut $watcher = StateWatcher::new(&nats).await.map_err(inspect_failure)?;
                let $source = Source::Nats {
                    url: nats.url().to_owned(),
                    prefix: nats.prefix().to_owned(),
                };
                $body
            }
        }
    };
}

/// One snapshot from every publisher on the target (what `ops` and `signals` show).
pub(crate) async fn collect(
    target: &Target,
    wait: Duration,
) -> Result<(Source, Vec<StateFrame>), Failure> {
    with_watcher!(target, |source, watcher| {
        let frames = snapshot(&mut watcher, wait).await?;
        Ok((source, frames))
    })
}

pub(crate) fn inspect_failure(e: ephemeral_bus::inspect::InspectError) -> Failure {
    match e {
        ephemeral_bus::inspect::InspectError::Bus(e) => e.into(),
        other => Failure::new(crate::exit::IO, other.to_string()),
    }
}

/// One poll, and the answers.
pub(crate) async fn snapshot<T: StateTransport>(
    watcher: &mut StateWatcher<T>,
    wait: Duration,
) -> Result<Vec<StateFrame>, Failure> {
    let mut frames = watcher.collect(wait).await.map_err(inspect_failure)?;
    frames.iter_mut().for_each(fmt::clean_frame);
    Ok(frames)
}

/// `ephemeral top`.
pub(crate) async fn top(target: &Target, args: TopArgs) -> Result<(), Failure> {
    with_watcher!(target, |source, watcher| show(&source, watcher, &args)
        .await)
}

async fn show<T: StateTransport>(
    source: &Source,
    mut watcher: StateWatcher<T>,
    args: &TopArgs,
) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if args.once {
        let frames = snapshot(&mut watcher, args.wait).await?;
        let frames = board::filtered(frames, args.filter.as_deref());
        return plain::once(source, &frames, args.json);
    }
    if args.json || args.plain || !std::io::stdout().is_terminal() {
        return plain::follow(source, watcher, args).await;
    }
    tui::run(source, watcher, args).await
}
