//! The `ephemeral` command: check names and patterns, and watch, raise, hold, publish,
//! request and measure signals and messages on a bus of this machine.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

mod args;
mod commands;
mod exit;
mod render;

use commands::{SignalArgs, Target};
use exit::Failure;

/// The bus used when neither --bus nor EPHEMERAL_BUS names one.
const DEFAULT_BUS: &str = "default";

const AFTER_HELP: &str = "\
Signals on the bus: a signal is a message whose topic is the signal name, as bridges
(Bus::bridge) carry them: the key in the `signal.key` header, the remaining time to live
as the message's ttl. So `watch` shows what bridged sinks raise, and `raise`/`hold`
reach every bridged sink whose pattern matches.

Environment:
  EPHEMERAL_BUS      bus name when --bus is not given (default: `default`)
  EPHEMERAL_BUS_DIR  parent directory of buses (default: /dev/shm)

Examples:
  ephemeral watch 'error.*'
  ephemeral raise error.db --key orders --ttl 30s
  ephemeral --bus shop stats --watch

";

/// Watch, raise and query ephemeral signals and messages on a bus of this machine.
#[derive(Debug, Parser)]
#[command(name = "ephemeral", version, about, after_help = format!("{AFTER_HELP}{}", exit::TABLE))]
struct Cli {
    /// The bus to use: one word of letters, digits, `-` and `_` (its directory is
    /// $EPHEMERAL_BUS_DIR/ephemeral-<BUS>).
    #[arg(long, global = true, env = "EPHEMERAL_BUS", default_value = DEFAULT_BUS,
          value_parser = args::bus_name)]
    bus: ephemeral_bus::BusName,
    /// Open the bus even if nobody has yet (default: a missing bus is an error, exit 3).
    #[arg(long, global = true)]
    create: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that NAME is a valid signal name; exit 0 if it is, 2 with the reason if not.
    #[command(after_help = "Example:\n  ephemeral check-name error.db.timeout")]
    CheckName {
        /// The name to check.
        name: String,
    },
    /// Check whether PATTERN matches NAME; exit 0 on a match, 1 on none, 2 on a bad name.
    #[command(after_help = "Example:\n  ephemeral match 'error.*' error.db.timeout")]
    Match {
        /// The pattern (`*`, `?`, `,` alternatives, whole-segment `+`).
        pattern: String,
        /// The name to test.
        name: String,
    },
    /// Print matching signals and messages as they happen, one line each.
    ///
    /// Each line: local time of day, kind (signal, held, released, lapsed, message, request,
    /// reply; `lagged` when this watcher fell behind and missed some), topic, key, ttl,
    /// a payload summary and user headers. A hold shows once when it begins and once when it
    /// is released (or `lapsed` when its holder stopped refreshing it).
    #[command(after_help = "Examples:\n  \
        ephemeral watch '*'\n  \
        ephemeral watch 'error.*,timeout.*' --json\n  \
        ephemeral watch orders.created --count 1   # wait for one, then exit")]
    Watch {
        /// Which topics: `*`, `?`, `,` alternatives, whole-segment `+`.
        pattern: String,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Exit after N lines (lag notices not counted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Also show copies of requests and replies on matching topics (observing never
        /// takes a request away from its server).
        #[arg(long)]
        requests: bool,
    },
    /// Raise a signal: every bridged sink whose pattern matches NAME receives it.
    #[command(after_help = "Examples:\n  \
        ephemeral raise cache.flush\n  \
        ephemeral raise error.payment --key order-42 --payload 'card declined' --ttl 30s")]
    Raise {
        /// The signal name.
        #[arg(value_parser = args::name)]
        name: String,
        /// The signal's key.
        #[arg(long)]
        key: Option<String>,
        /// A text payload.
        #[arg(long)]
        payload: Option<String>,
        /// How long it stays live (e.g. 500ms, 30s, 5m); default: each sink's max age.
        #[arg(long, value_parser = args::positive_duration)]
        ttl: Option<Duration>,
        /// A header, key=value (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = args::header)]
        headers: Vec<(String, String)>,
    },
    /// Hold a condition: NAME stays live in every bridged sink until Ctrl-C (or SIGTERM).
    ///
    /// The hold is a lease refreshed every third of --lease; if this process dies without
    /// releasing, bridged sinks drop the hold within one lease.
    #[command(after_help = "Examples:\n  \
        ephemeral hold circuit.open          # until Ctrl-C\n  \
        ephemeral hold maintenance --key db --payload 'upgrading'")]
    Hold {
        /// The signal name.
        #[arg(value_parser = args::name)]
        name: String,
        /// The signal's key.
        #[arg(long)]
        key: Option<String>,
        /// A text payload.
        #[arg(long)]
        payload: Option<String>,
        /// The lease (as the bridges use by default: 1s).
        #[arg(long, default_value = "1s", value_parser = args::positive_duration)]
        lease: Duration,
        /// A header, key=value (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = args::header)]
        headers: Vec<(String, String)>,
    },
    /// Publish a message on TOPIC.
    #[command(after_help = "Examples:\n  \
        ephemeral publish orders.created '{\"id\":42}'\n  \
        ephemeral publish orders.created - --header tenant=acme < order.json")]
    Publish {
        /// The topic.
        #[arg(value_parser = args::name)]
        topic: String,
        /// The payload; `-` reads it from standard input.
        payload: String,
        /// A header, key=value (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = args::header)]
        headers: Vec<(String, String)>,
    },
    /// Send a request to one server of TOPIC and print its reply.
    ///
    /// Exit 5 if no reply came within --timeout, 6 if no server serves TOPIC, or it was
    /// busy, failed or stopped. With --stream, replies already printed stay printed when
    /// the stream ends with an error.
    #[command(after_help = "Examples:\n  \
        ephemeral request math.double 21\n  \
        ephemeral request inventory.lookup sku-7 --timeout 500ms\n  \
        ephemeral request logs.tail api --stream --timeout 30s")]
    Request {
        /// The topic a server serves (Bus::serve).
        #[arg(value_parser = args::name)]
        topic: String,
        /// The payload; `-` reads it from standard input.
        payload: String,
        /// How long to wait for the reply (with --stream: for each reply).
        #[arg(long, default_value = "5s", value_parser = args::positive_duration)]
        timeout: Duration,
        /// Print every reply of a streaming server (Bus::serve_stream), one per line, until
        /// its stream ends.
        #[arg(long)]
        stream: bool,
    },
    /// Traffic on the bus: peers, and per topic messages, rate and bytes, and lags.
    ///
    /// Measured by a monitor subscribed to `*` for one --interval (so every publisher sends
    /// it everything while it runs). With --watch it refreshes every interval, in place in a
    /// terminal.
    #[command(after_help = "Examples:\n  \
        ephemeral stats\n  \
        ephemeral --bus shop stats --watch --interval 2s\n  \
        ephemeral stats --json")]
    Stats {
        /// Keep refreshing until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// The measuring window.
        #[arg(long, default_value = "1s", value_parser = args::positive_duration)]
        interval: Duration,
        /// One JSON object per window instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  \
        ephemeral completions bash > ~/.local/share/bash-completion/completions/ephemeral\n  \
        ephemeral completions zsh > \"${fpath[1]}/_ephemeral\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = Target {
        bus: cli.bus,
        create: cli.create,
    };
    let result = match cli.command {
        Command::CheckName { name } => return check_name(&name),
        Command::Match { pattern, name } => return matches(&pattern, &name),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ephemeral",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        command => run(&target, command),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

fn check_name(name: &str) -> ExitCode {
    match ephemeral::Name::new(name) {
        Ok(_) => {
            println!("valid: {name}");
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn matches(pattern: &str, name: &str) -> ExitCode {
    if let Err(e) = ephemeral::Name::new(name) {
        eprintln!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    if ephemeral::Pattern::new(pattern).matches(name) {
        println!("match");
        ExitCode::from(exit::OK)
    } else {
        println!("no match");
        ExitCode::from(exit::NO_MATCH)
    }
}

/// Runs a bus subcommand on a single-threaded runtime.
fn run(target: &Target, command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::IO, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match command {
            Command::Watch {
                pattern,
                json,
                count,
                requests,
            } => commands::watch(target, &pattern, json, count, requests).await,
            Command::Raise {
                name,
                key,
                payload,
                ttl,
                headers,
            } => {
                let signal = SignalArgs {
                    name,
                    key,
                    payload,
                    headers,
                };
                commands::raise(target, &signal, ttl).await
            }
            Command::Hold {
                name,
                key,
                payload,
                lease,
                headers,
            } => {
                let signal = SignalArgs {
                    name,
                    key,
                    payload,
                    headers,
                };
                commands::hold(target, &signal, lease).await
            }
            Command::Publish {
                topic,
                payload,
                headers,
            } => {
                let payload = commands::payload_bytes(&payload)?;
                commands::publish(target, &topic, &payload, &headers).await
            }
            Command::Request {
                topic,
                payload,
                timeout,
                stream,
            } => {
                let payload = commands::payload_bytes(&payload)?;
                commands::request(target, &topic, &payload, timeout, stream).await
            }
            Command::Stats {
                watch,
                interval,
                json,
            } => commands::stats(target, interval, watch, json).await,
            Command::CheckName { .. } | Command::Match { .. } | Command::Completions { .. } => {
                Ok(())
            }
        }
    })
}
