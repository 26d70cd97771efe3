//! The `ephemeral` command: check names and patterns, and watch, raise, hold, publish,
//! request and measure signals and messages on a bus of this machine.

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

/// `eprintln!` that never panics: a line for stderr, its write error ignored. A closed
/// stderr (`2>&1 | head -0`, a reader gone) made `eprintln!` panic, so an error meant for
/// exit 3 ended with exit 101; the exit code is what a script reads, and it must hold.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod commands;
mod exit;
mod render;
mod retained;
mod top;

#[cfg(test)]
mod help_examples;

use args::BusArgs;
use commands::SignalArgs;
use exit::Failure;

const AFTER_HELP: &str = "\
Signals on the bus: a signal is a message whose topic is the signal name, as bridges
(Bus::bridge, Nats::bridge) carry them: the key in the `signal.key` header, the remaining
time to live as the message's ttl. So `watch` shows what bridged sinks raise, and
`raise`/`hold` reach every bridged sink whose pattern matches.

Across machines: every bus subcommand also talks to NATS instead, with --nats URL (or
EPHEMERAL_NATS), to the services that bridge and publish there (ephemeral-nats).

Environment:
  EPHEMERAL_BUS          bus name when --bus is not given (unset or empty: `default`)
  EPHEMERAL_BUS_DIR      parent directory of buses (unset or empty: /dev/shm)
  EPHEMERAL_NATS         NATS URL when neither --bus nor --nats is given (not with EPHEMERAL_BUS)
  EPHEMERAL_NATS_PREFIX  NATS subject prefix when --nats-prefix is not given (`ephemeral`)
  EPHEMERAL_NATS_CREDS   NATS credentials file when --nats-creds is not given
  EPHEMERAL_NATS_TLS_CA  NATS TLS authority when --nats-tls-ca is not given
  EPHEMERAL_NATS_TLS_CERT, EPHEMERAL_NATS_TLS_KEY
                         NATS client certificate and key (--nats-tls-cert, --nats-tls-key)

Examples:
  ephemeral watch 'error.*'
  ephemeral raise error.db --key orders --ttl 30s
  ephemeral stats --bus shop --watch
  ephemeral watch '*' --nats nats://10.0.0.5:4222

";

/// Watch, raise and query ephemeral signals and messages on a bus of this machine, or
/// across machines through NATS.
#[derive(Debug, Parser)]
#[command(name = "ephemeral", version, about, after_help = format!("{AFTER_HELP}{}", exit::TABLE))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that NAME is a valid signal name; exit 0 if it is, 2 with the reason if not.
    ///
    /// Empty segments (`a..b`, `a.`) are valid, as in the library and the original: a
    /// note says so, and that a `+` segment of a pattern matches an empty one.
    #[command(after_help = "Examples:\n  \
        ephemeral check-name error.db.timeout\n  \
        ephemeral check-name 'error.*'      # exit 2: wildcards belong in patterns")]
    CheckName {
        /// The name to check.
        name: String,
    },
    /// Check whether PATTERN matches NAME; exit 0 on a match, 1 on none, 2 on a bad name.
    #[command(after_help = "Examples:\n  \
        ephemeral match 'error.*' error.db.timeout\n  \
        ephemeral match 'news.+' news.sports.eu   # exit 1: `+` is exactly one segment")]
    Match {
        /// The pattern (`*`, `?`, `,` alternatives, whole-segment `+`).
        pattern: String,
        /// The name to test.
        name: String,
    },
    /// Print matching signals and messages as they happen, one line each.
    ///
    /// Each line: local time of day, kind (signal, held, released, lapsed, message; with
    /// --requests also request, reply, cancel; `lagged` when this watcher fell behind and
    /// missed some), topic, key, ttl (the time left on arrival: to a tenth of a second from
    /// 1s up, exact milliseconds with --json), a payload summary and user headers. A hold
    /// shows once when it begins and once when it is released, or `lapsed` when no refresh
    /// came for a whole lease (its holder died or stopped; bridged sinks drop it by the same
    /// rule).
    #[command(after_help = "Examples:\n  \
        ephemeral watch '*'\n  \
        ephemeral watch 'error.*,timeout.*' --json\n  \
        ephemeral watch 'math.*' --requests --ids\n  \
        ephemeral watch orders.created --count 1   # wait for one, then exit")]
    Watch {
        #[command(flatten)]
        bus: BusArgs,
        /// Which topics: `*`, `?`, `,` alternatives, whole-segment `+` (not empty).
        #[arg(value_parser = args::watch_pattern)]
        pattern: String,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Exit after N lines (lag notices not counted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Also show copies of requests and replies on matching topics (observing never
        /// takes a request away from its server; on a bus only).
        #[arg(long)]
        requests: bool,
        /// Show whole payloads: text as it is (on a terminal with its control characters,
        /// but line breaks and tabs, escaped), binary as hex (default: a short summary).
        #[arg(long)]
        full: bool,
        /// Show each message's id: its publisher (origin) and that publisher's sequence
        /// number; and on request, reply and cancel lines `request=<requester>/<n>`, the
        /// same on a request and on its replies and cancel (the requester's peer id, as
        /// `stats --peers` lists it, and its correlation number).
        #[arg(long)]
        ids: bool,
    },
    /// Raise a signal: every bridged sink whose pattern matches NAME receives it.
    #[command(after_help = "Examples:\n  \
        ephemeral raise cache.flush\n  \
        ephemeral raise error.payment --key order-42 --payload 'card declined' --ttl 30s")]
    Raise {
        #[command(flatten)]
        bus: BusArgs,
        /// The signal name.
        #[arg(value_parser = args::name)]
        name: String,
        /// The signal's key.
        #[arg(long)]
        key: Option<String>,
        /// A text payload.
        #[arg(long)]
        payload: Option<String>,
        /// How long it stays live (e.g. 500ms, 30s, 5m), at most each bridged sink's max
        /// age (60s by default); default: that max age.
        #[arg(long, allow_hyphen_values = true, value_parser = args::positive_duration)]
        ttl: Option<Duration>,
        /// A header, key=value (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = args::header)]
        headers: Vec<(String, String)>,
    },
    /// Hold a condition: NAME stays live in every bridged sink until Ctrl-C (or SIGTERM).
    ///
    /// The hold is a lease refreshed every third of --lease. A bridged sink drops the hold
    /// when no refresh came for a whole lease, and checks every third of a lease: so if this
    /// process dies without releasing (or, over NATS, the network breaks), the hold ends
    /// between 2/3 and 4/3 of a lease later.
    #[command(after_help = "Examples:\n  \
        ephemeral hold circuit.open          # until Ctrl-C\n  \
        ephemeral hold maintenance --key db --payload 'upgrading'")]
    Hold {
        #[command(flatten)]
        bus: BusArgs,
        /// The signal name.
        #[arg(value_parser = args::name)]
        name: String,
        /// The signal's key.
        #[arg(long)]
        key: Option<String>,
        /// A text payload.
        #[arg(long)]
        payload: Option<String>,
        /// The lease (default: as the bridges use by default: 1s on a bus, 3s over NATS; at
        /// least 3ms, as for the bridges).
        #[arg(long, allow_hyphen_values = true, value_parser = args::positive_duration)]
        lease: Option<Duration>,
        /// A header, key=value (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = args::header)]
        headers: Vec<(String, String)>,
    },
    /// Publish a message on TOPIC.
    #[command(after_help = "Examples:\n  \
        ephemeral publish orders.created '{\"id\":42}'\n  \
        ephemeral publish orders.created - --header tenant=acme < order.json")]
    Publish {
        #[command(flatten)]
        bus: BusArgs,
        /// The topic.
        #[arg(value_parser = args::topic)]
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
    /// the stream ends with an error. A reply is written as it is into a pipe or a file; on a
    /// terminal its control characters (but line breaks and tabs) are escaped and a binary
    /// reply shows as `<N bytes: hex>`.
    #[command(after_help = "Examples:\n  \
        ephemeral request math.double 21\n  \
        ephemeral request inventory.lookup sku-7 --timeout 500ms\n  \
        ephemeral request logs.tail api --stream --timeout 30s")]
    Request {
        #[command(flatten)]
        bus: BusArgs,
        /// The topic a server serves (Bus::serve, Nats::serve).
        #[arg(value_parser = args::topic)]
        topic: String,
        /// The payload; `-` reads it from standard input.
        payload: String,
        /// How long to wait for the reply (with --stream: for each reply).
        #[arg(long, default_value = "5s", allow_hyphen_values = true,
              value_parser = args::positive_duration)]
        timeout: Duration,
        /// Print every reply of a streaming server (Bus::serve_stream), one per line, until
        /// its stream ends (on a bus only).
        #[arg(long)]
        stream: bool,
    },
    /// Traffic on the bus: peers, and per topic messages, rates, bytes, and lags.
    ///
    /// Measured by a monitor subscribed to `*` for one --interval (so every publisher sends
    /// it everything while it runs). With --watch it refreshes every interval, in place in a
    /// terminal. With --peers it lists each other peer with its subscriptions, served topics
    /// and observers instead (like Redis's PUBSUB CHANNELS).
    #[command(after_help = "Examples:\n  \
        ephemeral stats\n  \
        ephemeral stats --bus shop --watch --interval 2s\n  \
        ephemeral stats --peers\n  \
        ephemeral stats --json")]
    Stats {
        #[command(flatten)]
        bus: BusArgs,
        /// Keep refreshing until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// The measuring window.
        #[arg(long, default_value = "1s", allow_hyphen_values = true,
              value_parser = args::positive_duration)]
        interval: Duration,
        /// One JSON object per window instead of a table.
        #[arg(long)]
        json: bool,
        /// List the peers and what they subscribe to, serve and observe (on a bus only).
        #[arg(long)]
        peers: bool,
    },
    /// Live view of the coordinators and sinks that publish their state on the bus.
    ///
    /// Full screen on a terminal (↑↓ select, s sort, / filter, p pause, q quit); plain lines
    /// when stdout is not a terminal. Services publish with `publish_state` (ephemeral-bus).
    #[command(after_help = "Examples:\n  \
        ephemeral top --bus shop\n  \
        ephemeral top --once --json | jq '.frames[].state.counts'\n  \
        ephemeral top --filter 'pay*' --plain --count 3")]
    Top(top::TopArgs),
    /// List the operations of the coordinator published as NAME (one snapshot).
    #[command(after_help = "Examples:\n  \
        ephemeral ops payments\n  \
        ephemeral ops payments --state failed,cancelled --key 'cust-0*'")]
    Ops(top::OpsArgs),
    /// List the live signals and holds of the sinks that publish their state (one snapshot).
    #[command(after_help = "Examples:\n  \
        ephemeral signals\n  \
        ephemeral signals 'circuit.*' --held --json")]
    Signals(top::SignalsArgs),
    /// Values kept on the bus or on NATS, with a time to live: get, set, del, ls, watch.
    ///
    /// On a bus, a store lives in the bus directory (`retained/`) and outlives every
    /// process; with --nats, in a JetStream KV bucket (a time to live below 1 s is honoured
    /// by reads, removed by the server at 1 s). Every process (or machine) that opens the
    /// same store sees the same values.
    #[command(after_help = "Examples:\n  \
        ephemeral kv set feature.dark-mode on --ttl 1h\n  \
        ephemeral kv get feature.dark-mode          # exit 1 if it has no value\n  \
        ephemeral kv --store sessions ls 'user.*' --json\n  \
        ephemeral kv watch 'feature.*'\n  \
        ephemeral kv --nats nats://10.0.0.5:4222 get feature.dark-mode")]
    Kv(retained::KvArgs),
    /// Rooms of messages kept on the bus or on NATS: send, and join (history, then live).
    #[command(after_help = "Examples:\n  \
        ephemeral room send lobby 'hello'\n  \
        ephemeral room join lobby                   # the history, then live, until Ctrl-C\n  \
        ephemeral room join lobby --count 10 --json")]
    Room(retained::RoomArgs),
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
    let result = match cli.command {
        Command::CheckName { name } => return check_name(&name),
        Command::Match { pattern, name } => return matches(&pattern, &name),
        Command::Completions { shell } => completions(shell),
        command => run(command),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            say!("error: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// Prints the completion script for `shell`. Generated into memory first: clap_complete
/// panics on a failed write, and a reader that stops early (`| head -1`) is no failure, so a
/// closed stdout ends the command with exit 0, as for `watch` and `kv ls`.
fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ephemeral", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            exit::IO,
            format!("cannot write the completion script to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Prints the answer of `check-name` or `match`. The exit code carries the answer too, so a
/// closed stdout (`| head -0`, a reader gone) changes nothing: the write error is ignored,
/// where `println!` would panic.
fn answer(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

fn check_name(name: &str) -> ExitCode {
    match ephemeral::Name::new(name) {
        Ok(_) => {
            answer(&format!("valid: {name}"));
            if name.split('.').any(str::is_empty) {
                say!(
                    "note: `{name}` has an empty segment (two dots in a row, or a dot at an \
                     end): names allow it, as the library and the original do; a `+` segment \
                     of a pattern matches it (`a.+.b` matches `a..b`)"
                );
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            say!("error: {e}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn matches(pattern: &str, name: &str) -> ExitCode {
    if let Err(e) = ephemeral::Name::new(name) {
        say!("error: {e}");
        return ExitCode::from(exit::USAGE);
    }
    if ephemeral::Pattern::new(pattern).matches(name) {
        answer("match");
        ExitCode::from(exit::OK)
    } else {
        answer("no match");
        ExitCode::from(exit::NO_MATCH)
    }
}

/// Runs a bus subcommand on a single-threaded runtime.
fn run(command: Command) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::IO, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match command {
            Command::Watch {
                bus,
                pattern,
                json,
                count,
                requests,
                full,
                ids,
            } => {
                let view = commands::WatchView {
                    json,
                    count,
                    requests,
                    full,
                    ids,
                };
                commands::watch(&bus.target()?, &pattern, &view).await
            }
            Command::Raise {
                bus,
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
                commands::raise(&bus.target()?, &signal, ttl).await
            }
            Command::Hold {
                bus,
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
                commands::hold(&bus.target()?, &signal, lease).await
            }
            Command::Publish {
                bus,
                topic,
                payload,
                headers,
            } => {
                let payload = commands::payload_bytes(&payload)?;
                commands::publish(&bus.target()?, &topic, &payload, &headers).await
            }
            Command::Request {
                bus,
                topic,
                payload,
                timeout,
                stream,
            } => {
                let payload = commands::payload_bytes(&payload)?;
                commands::request(&bus.target()?, &topic, &payload, timeout, stream).await
            }
            Command::Stats {
                bus,
                watch,
                interval,
                json,
                peers,
            } => {
                let view = commands::StatsView {
                    interval,
                    watch,
                    json,
                    peers,
                };
                commands::stats(&bus.target()?, &view).await
            }
            Command::Top(args) => top::top(&args.bus.clone().target()?, args).await,
            Command::Ops(args) => top::ops(&args.bus.clone().target()?, args).await,
            Command::Signals(args) => top::signals(&args.bus.clone().target()?, args).await,
            Command::Kv(args) => retained::kv(args).await,
            Command::Room(args) => retained::room(args).await,
            Command::CheckName { .. } | Command::Match { .. } | Command::Completions { .. } => {
                Ok(())
            }
        }
    })
}
