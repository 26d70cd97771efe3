//! The `compare` command line.

use clap::Parser;

/// Runs ours and each baseline side by side and prints one JSON line per measurement.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "compare", version, about)]
pub struct Args {
    /// Smaller workloads: the whole run finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Run only the measurements whose name contains this text (repeatable).
    #[arg(long, value_name = "SUBSTR")]
    pub only: Vec<String>,
    /// Print the measurement names, one per line, and exit.
    #[arg(long)]
    pub list: bool,
    /// Internal: run one child-process workload (memory is measured in a fresh process).
    #[arg(long, hide = true, value_name = "WORKLOAD")]
    pub child: Option<String>,
}

impl Args {
    /// Whether the measurement `name` was selected by `--only` (everything when none given).
    #[must_use]
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| name.contains(s.as_str()))
    }
}
