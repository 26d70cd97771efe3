//! The `ephemeral` command.
//!
//! For now it checks names and patterns with the exact rules the library uses; watching and
//! raising signals on a bus arrive with the bus.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect ephemeral signal names and patterns.
#[derive(Debug, Parser)]
#[command(name = "ephemeral", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that NAME is a valid signal name; exit 0 if it is, 2 with the reason if not.
    ///
    /// Example: `ephemeral check-name error.db.timeout`
    CheckName {
        /// The name to check.
        name: String,
    },
    /// Check whether PATTERN matches NAME; exit 0 on a match, 1 on none, 2 on a bad name.
    ///
    /// Example: `ephemeral match 'error.*' error.db.timeout`
    Match {
        /// The pattern (`*`, `?`, `,` alternatives, whole-segment `+`).
        pattern: String,
        /// The name to test.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckName { name } => match ephemeral::Name::new(&name) {
            Ok(_) => {
                println!("valid: {name}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Match { pattern, name } => {
            if let Err(e) = ephemeral::Name::new(&name) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            if ephemeral::Pattern::new(&pattern).matches(&name) {
                println!("match");
                ExitCode::SUCCESS
            } else {
                println!("no match");
                ExitCode::from(1)
            }
        }
    }
}
