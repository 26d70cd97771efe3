//! The demo: an order pipeline in front of a flaky, sometimes slow payment provider.
//!
//! Failures raise signals, a circuit breaker opens and the payments coordinator stops taking
//! work (an admission hook), backpressure defers the intake and resumes it, payments keep
//! per-customer order, and calls are retried with exponential backoff. On a terminal it shows
//! live progress; piped (or with `RUST_LOG`'s log on the terminal), it prints log lines. It
//! finishes by itself and ends with a summary.
//!
//! ```text
//! cargo run -p ephemeral-examples --bin demo
//! cargo run -p ephemeral-examples --bin demo -- --items 200 --failure-rate 0.2 --seed 7
//! cargo run -p ephemeral-examples --bin demo -- --bus demo   # then: ephemeral top --bus demo
//! RUST_LOG=ephemeral=debug cargo run -p ephemeral-examples --bin demo   # the log, and plain lines
//! ```

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[path = "../demo/mod.rs"]
mod demo;

use demo::{Config, Output};

/// An order pipeline built with ephemeral, calling a flaky, sometimes slow payment provider.
///
/// Orders arrive at --rate per second into an intake coordinator, which forwards them to a
/// payments coordinator keyed by customer (one customer's payments run strictly in order).
/// Each payment calls the simulated provider and retries failed calls with exponential
/// backoff; each failed call raises an `error.downstream.*` signal. Paid orders get a
/// notification, shed (cancelled) while the breaker is open. A quarter of the way through, the provider has an incident: the circuit
/// breaker counts the failure signals and opens, the payments coordinator parks new work,
/// the backlog grows until backpressure defers the intake, and once the breaker's probes
/// succeed everything resumes and drains.
///
/// Runs are reproducible per order: the same --seed gives the same orders and the same random
/// draws for each payment attempt. Whether an attempt falls inside the incident, and so
/// exactly when the breaker trips, depends on timing: counts can vary a little between runs.
#[derive(Debug, Parser)]
#[command(name = "demo", version)]
struct Args {
    /// Orders to process.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    items: u64,

    /// Share of provider calls that fail outside the incident, from 0 to 1.
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    failure_rate: f64,

    /// Seed for every random choice (orders, customers, provider answers, jitter).
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Distinct customers (the keys of the payments coordinator).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    customers: u32,

    /// Orders arriving per second.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,

    /// Payments running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,

    /// Seconds after which whatever is left is cancelled (the summary says so).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    budget: u64,

    /// Print plain log lines even on a terminal (also the default when RUST_LOG writes the
    /// library's log to the terminal, which would tear the live view).
    #[arg(long)]
    plain: bool,

    /// Publish the coordinators' and the sink's live state on this bus: watch them with
    /// `ephemeral top --bus NAME` from another terminal.
    #[arg(long, value_name = "NAME", value_parser = bus_name)]
    bus: Option<String>,

    /// Print only the summary.
    #[arg(long, conflicts_with = "plain")]
    quiet: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number: give a share such as 0.05"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{rate} is not between 0 and 1: give a share such as 0.05"
        ))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // With RUST_LOG set (say RUST_LOG=ephemeral=debug), the library's spans and events go to
    // stderr; without it, nothing is installed and the output stays as it is.
    let logging = std::env::var_os("RUST_LOG").is_some();
    if logging {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            // Each span as it closes, with its fields and its busy and idle times: the
            // operation and bus spans hold no events of their own when all goes well.
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let args = Args::parse();
    let output = Output::choose(
        args.quiet,
        args.plain,
        io::stdout().is_terminal(),
        logging && io::stderr().is_terminal(),
    );
    let config = Config {
        items: args.items,
        failure_rate: args.failure_rate,
        seed: args.seed,
        customers: args.customers,
        rate: args.rate,
        concurrency: usize::from(args.concurrency),
        budget: Duration::from_secs(args.budget),
        bus: args.bus,
    };
    // `--quiet` prints only the summary, as its help says.
    if !matches!(output, Output::Quiet) {
        println!(
            "ephemeral demo: {} orders from {} customers at {}/s, failure rate {}, seed {}",
            config.items, config.customers, config.rate, config.failure_rate, config.seed
        );
        println!(
            "payment provider incident planned between {:.1} s and {:.1} s\n",
            config.items as f64 / f64::from(config.rate) * 0.25,
            config.items as f64 / f64::from(config.rate) * 0.45
        );
    }
    match demo::run(&config, output).await {
        Ok(summary) => {
            let mut out = io::stdout().lock();
            if let Err(e) = summary.print(&mut out) {
                eprintln!("could not print the summary: {e}");
                return ExitCode::FAILURE;
            }
            if summary.problems().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("the demo could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bus name checked when the arguments are read (the bus's own rule, as the `ephemeral`
/// command checks it), so a bad one is a usage error before the demo starts.
fn bus_name(s: &str) -> Result<String, String> {
    ephemeral_bus::BusName::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}
