//! `ephemeral top`, `ops` and `signals`: the live state that coordinators and sinks publish
//! (`ephemeral_bus::inspect`), watched from another terminal.
//!
//! The data source is a [`StateWatcher`] over a transport; the views are generic over the
//! transport, so NATS (`--nats`) adds one more way to build the watcher in [`connect`] and
//! nothing else.

use std::time::Duration;

use clap::Args;
use ephemeral_bus::Bus;
use ephemeral_bus::inspect::{StateFrame, StateTransport, StateWatcher};

use crate::args;
use crate::commands::Target;
use crate::exit::Failure;

mod board;
mod fmt;
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
    /// Stop after N refreshes (plain and JSON output).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub(crate) plain: bool,
}

/// `ephemeral ops`.
#[derive(Debug, Args)]
pub(crate) struct OpsArgs {
    #[command(flatten)]
    pub(crate) bus: crate::args::BusArgs,
    /// The coordinator's published name (a pattern: `*`, `?`, `,`).
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
    /// Only signals whose name matches this pattern (default: all).
    #[arg(default_value = "*")]
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
    } else {
        Err(format!(
            "`{s}` is not a state: use one of {}",
            STATES.join(", ")
        ))
    }
}

/// The watcher the views read: over the bus (NATS adds a branch here).
pub(crate) async fn connect(target: &Target) -> Result<(Bus, StateWatcher<Bus>), Failure> {
    let bus = target.open().await?;
    let watcher = StateWatcher::new(&bus).await.map_err(inspect_failure)?;
    Ok((bus, watcher))
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
    watcher.collect(wait).await.map_err(inspect_failure)
}

/// `ephemeral top`.
pub(crate) async fn top(target: &Target, args: TopArgs) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let (bus, mut watcher) = connect(target).await?;
    let label = bus.name().as_str().to_owned();
    if args.once {
        let frames = snapshot(&mut watcher, args.wait).await?;
        let frames = board::filtered(frames, args.filter.as_deref());
        return plain::once(&label, &frames, args.json);
    }
    if args.json || args.plain || !std::io::stdout().is_terminal() {
        return plain::follow(&label, watcher, &args).await;
    }
    tui::run(&label, watcher, &args).await
}
