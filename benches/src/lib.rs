//! Side-by-side measurements of `ephemeral` against the baselines a Rust user would otherwise
//! reach for.
//!
//! # Overview
//!
//! The `compare` binary runs *ours* and each baseline in the same process, in alternating
//! turns (ours, baseline, ours, baseline, ...; one warm-up turn each, then the median of at
//! least [`turns::MIN_TURNS`] turns), and prints one JSON line per measurement on stdout:
//!
//! ```text
//! {"name":"raise_1t_vs_mutex_vecdeque","unit":"ops/s","ours":1.0e7,"baseline":"...",
//!  "baseline_value":8.0e6,"higher_is_better":true,"ratio":1.25,"target":1.0,"same_run":true}
//! ```
//!
//! `ratio` is always oriented so that `> 1` means ours is better (for a latency or a size it is
//! baseline ÷ ours). `same_run` is `false` when the baseline is a fixed reference number rather
//! than something measured in this run. A measurement whose *ours* side does not exist yet
//! prints `"ours": null` and `"ratio": null`; the reason goes to stderr as a `# note` line, so
//! stdout stays exactly one JSON object per line.
//!
//! ```text
//! cargo run --release -p ephemeral-benches --bin compare -- [--quick] [--only <substr>] [--list]
//! ```
//!
//! Timing lives here, never in tests, and CI never fails on a ratio.
//!
//! # Layout
//!
//! * [`stats`]: median, percentiles, ratio orientation.
//! * [`report`]: the [`Measurement`](report::Measurement) and its JSON line.
//! * [`cli`]: the command-line arguments.
//! * [`turns`]: the alternating-turns runner.
//! * [`measures`]: one file per area; each "ours" side that needs a part of `ephemeral` not yet
//!   written is a separate function returning `None`, to be filled in with a few lines.
//! * [`baselines`]: the baselines, written in full.
//! * [`lmdb`]: LMDB opened as the bus store opens it, for the raw-database baselines.

// `deny`, not `forbid`: opening LMDB for the raw baselines is the one `allow` (lmdb.rs).
#![deny(unsafe_code)]

pub mod baselines;
pub mod cli;
pub mod lmdb;
pub mod measures;
pub mod report;
pub mod stats;
pub mod turns;
