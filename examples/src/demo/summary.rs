//! The end-of-run summary: outcomes per coordinator, latency percentiles, signals by name, and
//! the checks that the numbers add up.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ephemeral::{CoordinatorStats, OperationSnapshot};

/// Enqueue-to-finish latencies of one coordinator's operations, filled by its
/// `on_finalized` callback (so evicted operations count too).
#[derive(Debug, Clone, Default)]
pub(crate) struct Latencies(Arc<Mutex<Vec<Duration>>>);

impl Latencies {
    /// Records one finished operation.
    pub(crate) fn record(&self, snapshot: &OperationSnapshot) {
        if let Some(finished) = snapshot.finished {
            let latency = finished.saturating_duration_since(snapshot.enqueued);
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(latency);
        }
    }

    /// The `q`-quantile (0..=1) by the nearest-rank method; `None` when nothing finished.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        // Nearest rank: the smallest value with at least q of the samples at or below it.
        let rank = (q * all.len() as f64).ceil().max(1.0) as usize;
        Some(all[rank.min(all.len()) - 1])
    }
}

/// One coordinator's row of the summary.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The coordinator's name.
    pub(crate) name: &'static str,
    /// Its counters at the end of the run.
    pub(crate) stats: CoordinatorStats,
    /// Median enqueue-to-finish latency.
    pub(crate) p50: Option<Duration>,
    /// 99th percentile enqueue-to-finish latency.
    pub(crate) p99: Option<Duration>,
}

/// What the run did.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    /// Orders generated.
    pub(crate) items: u64,
    /// Wall time of the run (tokio's clock).
    pub(crate) elapsed: Duration,
    /// Intake, payments, notifications, in that order.
    pub(crate) rows: Vec<Row>,
    /// Every signal raised, by name.
    pub(crate) signals: BTreeMap<String, u64>,
    /// How many times the circuit breaker opened.
    pub(crate) breaker_opened: u64,
    /// How many times backpressure was held.
    pub(crate) backpressure_held: u64,
    /// Customers whose payments were checked for order.
    pub(crate) customers: usize,
    /// Payments that started before an earlier payment of the same customer.
    pub(crate) order_violations: usize,
    /// Whether the run hit its time budget and cancelled what was left.
    pub(crate) timed_out: bool,
}

impl Summary {
    /// The row of coordinator `name`.
    pub(crate) fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Every inconsistency found; empty when the numbers add up.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for row in &self.rows {
            let s = &row.stats;
            if s.accepted != s.pending + s.running + s.completed + s.failed + s.cancelled {
                problems.push(format!("{}: outcomes do not add up to accepted", row.name));
            }
            if s.pending + s.running != 0 {
                problems.push(format!("{}: work left unfinished", row.name));
            }
        }
        let accepted = |name: &str| self.row(name).map_or(0, |r| r.stats.accepted);
        let completed = |name: &str| self.row(name).map_or(0, |r| r.stats.completed);
        if accepted("intake") != self.items {
            problems.push(format!(
                "intake accepted {} of {} orders",
                accepted("intake"),
                self.items
            ));
        }
        // Every order the intake completed was handed to payments, and every paid order got
        // a notification (which may have been shed, but was accepted).
        if accepted("payments") != completed("intake") {
            problems.push("payments did not receive every forwarded order".to_owned());
        }
        if accepted("notifications") != completed("payments") {
            problems.push("notifications do not match paid orders".to_owned());
        }
        if self.order_violations > 0 {
            problems.push(format!(
                "{} payments started out of per-customer order",
                self.order_violations
            ));
        }
        problems
    }

    /// Prints the summary table.
    pub(crate) fn print(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out)?;
        writeln!(
            out,
            "Summary: {} orders in {:.1} s{}",
            self.items,
            self.elapsed.as_secs_f64(),
            if self.timed_out {
                " (time budget hit: the rest was cancelled)"
            } else {
                ""
            }
        )?;
        writeln!(
            out,
            "  {:<14} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9}",
            "coordinator", "accepted", "completed", "failed", "cancelled", "p50", "p99"
        )?;
        for row in &self.rows {
            let s = &row.stats;
            writeln!(
                out,
                "  {:<14} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9}",
                row.name,
                s.accepted,
                s.completed,
                s.failed,
                s.cancelled,
                millis(row.p50),
                millis(row.p99)
            )?;
        }
        writeln!(out, "  (latency: enqueue to finish, deferral included)")?;
        writeln!(out)?;
        writeln!(out, "Signals by name:")?;
        for (name, count) in &self.signals {
            writeln!(out, "  {name:<30} {count:>6}")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Circuit breaker opened {} time(s); backpressure held {} time(s).",
            self.breaker_opened, self.backpressure_held
        )?;
        writeln!(
            out,
            "Per-customer order: {} customers, {} payments out of order.",
            self.customers, self.order_violations
        )?;
        let problems = self.problems();
        if problems.is_empty() {
            writeln!(
                out,
                "Every accepted item ended exactly once: the counts add up."
            )?;
        } else {
            for problem in &problems {
                writeln!(out, "PROBLEM: {problem}")?;
            }
        }
        Ok(())
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()))
}
