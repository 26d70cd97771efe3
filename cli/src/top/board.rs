//! The board: the latest frame of every publisher, forgotten when it stops or goes quiet.

use std::collections::BTreeMap;
use std::time::Duration;

use ephemeral::Pattern;
use ephemeral_bus::inspect::{State, StateFrame};
use tokio::time::Instant;

/// How the coordinator rows are ordered (`s` cycles through them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sort {
    /// By name, then process.
    #[default]
    Name,
    /// By process, then name.
    Process,
    /// Most running first.
    Running,
    /// Most pending first.
    Pending,
    /// Most failures per second first.
    Failing,
    /// Slowest p99 first.
    Slowest,
}

impl Sort {
    pub(crate) fn next(self) -> Self {
        match self {
            Self::Name => Self::Process,
            Self::Process => Self::Running,
            Self::Running => Self::Pending,
            Self::Pending => Self::Failing,
            Self::Failing => Self::Slowest,
            Self::Slowest => Self::Name,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Process => "process",
            Self::Running => "running",
            Self::Pending => "pending",
            Self::Failing => "failed/s",
            Self::Slowest => "p99",
        }
    }
}

/// A filter over publisher names: a pattern, or, for a word without wildcards, "contains".
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    text: String,
    pattern: Pattern,
}

impl Filter {
    pub(crate) fn new(text: &str) -> Self {
        let wild = text.contains(['*', '?', ',']);
        let pattern = if wild {
            Pattern::new(text)
        } else {
            Pattern::new(&format!("*{text}*"))
        };
        Self {
            text: text.to_owned(),
            pattern,
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        self.pattern.matches(name)
    }
}

/// Keeps the sinks and the coordinators whose name passes `filter`.
pub(crate) fn filtered(frames: Vec<StateFrame>, filter: Option<&str>) -> Vec<StateFrame> {
    let Some(filter) = filter.map(Filter::new) else {
        return frames;
    };
    frames
        .into_iter()
        .filter(|f| f.coordinator().is_none() || filter.matches(&f.publisher.name))
        .collect()
}

struct Entry {
    frame: StateFrame,
    received: Instant,
}

/// The latest frame of each publisher, by publisher id.
#[derive(Default)]
pub(crate) struct Board {
    entries: BTreeMap<String, Entry>,
}

impl Board {
    /// Takes a frame: the publisher's latest state, or its goodbye.
    pub(crate) fn apply(&mut self, mut frame: StateFrame, now: Instant) {
        super::fmt::clean_frame(&mut frame);
        match frame.state {
            State::Stopped => {
                self.entries.remove(&frame.publisher.id);
            }
            State::Unknown => {}
            _ => {
                self.entries.insert(
                    frame.publisher.id.clone(),
                    Entry {
                        frame,
                        received: now,
                    },
                );
            }
        }
    }

    /// Forgets publishers silent for three of their intervals (or of ours, when we poll
    /// slower) plus a second: they stopped without a goodbye (killed, say).
    pub(crate) fn prune(&mut self, now: Instant, poll_interval: Duration) {
        self.entries.retain(|_, e| {
            let interval = Duration::from_millis(e.frame.interval_ms).max(poll_interval);
            let limit = interval.saturating_mul(3) + Duration::from_secs(1);
            now.saturating_duration_since(e.received) <= limit
        });
    }

    /// Treats every publisher as heard from now: after a pause, during which nobody polled,
    /// so that rows are not forgotten before the first answers come.
    pub(crate) fn touch_all(&mut self, now: Instant) {
        for entry in self.entries.values_mut() {
            entry.received = now;
        }
    }

    /// The coordinators, filtered and sorted.
    pub(crate) fn coordinators(&self, sort: Sort, filter: Option<&Filter>) -> Vec<&StateFrame> {
        let mut rows: Vec<&StateFrame> = self
            .entries
            .values()
            .map(|e| &e.frame)
            .filter(|f| f.coordinator().is_some())
            .filter(|f| filter.is_none_or(|flt| flt.matches(&f.publisher.name)))
            .collect();
        sort_rows(&mut rows, sort);
        rows
    }

    /// The sinks, by process and name.
    pub(crate) fn sinks(&self) -> Vec<&StateFrame> {
        let mut rows: Vec<&StateFrame> = self
            .entries
            .values()
            .map(|e| &e.frame)
            .filter(|f| f.sink().is_some())
            .collect();
        sort_rows(&mut rows, Sort::Process);
        rows
    }

    /// Every frame, coordinators first (sorted by name), then sinks.
    pub(crate) fn frames(&self, filter: Option<&Filter>) -> Vec<&StateFrame> {
        let mut all = self.coordinators(Sort::Name, filter);
        all.extend(self.sinks());
        all
    }
}

fn sort_rows(rows: &mut [&StateFrame], sort: Sort) {
    let name = |f: &StateFrame| (f.publisher.name.clone(), f.publisher.process.pid);
    let process = |f: &StateFrame| {
        (
            f.publisher.process.program.clone(),
            f.publisher.process.pid,
            f.publisher.name.clone(),
        )
    };
    rows.sort_by(|a, b| {
        let (ca, cb) = (a.coordinator(), b.coordinator());
        let by = match (sort, ca, cb) {
            (Sort::Running, Some(x), Some(y)) => y.counts.running.cmp(&x.counts.running),
            (Sort::Pending, Some(x), Some(y)) => y.counts.pending.cmp(&x.counts.pending),
            (Sort::Failing, Some(x), Some(y)) => {
                y.rates.failed_per_s.total_cmp(&x.rates.failed_per_s)
            }
            (Sort::Slowest, Some(x), Some(y)) => {
                let p99 = |c: &ephemeral_bus::inspect::CoordinatorState| {
                    c.latency.map_or(0, |l| l.p99_us)
                };
                p99(y).cmp(&p99(x))
            }
            (Sort::Process, ..) => process(a).cmp(&process(b)),
            _ => std::cmp::Ordering::Equal,
        };
        by.then_with(|| name(a).cmp(&name(b)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coordinator frame (or a stopped one) read from JSON, as a watcher gets it.
    fn frame(id: &str, name: &str, pid: u32, running: u64, failed_per_s: f64) -> StateFrame {
        let json = serde_json::json!({
            "version": 1,
            "publisher": {"id": id, "name": name,
                          "process": {"pid": pid, "program": "svc", "origin": "00"}},
            "sent_at_ms": 0, "interval_ms": 250, "sequence": 0,
            "state": {"kind": "coordinator", "type": "work", "id": "c",
                      "counts": {"accepted": 0, "pending": 10 - running, "running": running,
                                 "completed": 0, "failed": 0, "cancelled": 0, "panicked": 0,
                                 "evicted": 0, "tracked": 0, "peak_running": 0},
                      "max_concurrency": 4,
                      "rates": {"window_ms": 250, "accepted_per_s": 0.0, "completed_per_s": 0.0,
                                "failed_per_s": failed_per_s, "cancelled_per_s": 0.0},
                      "latency": null, "deferred_by": [], "done": false,
                      "operations": [], "operations_omitted": 0, "recent_failures": []}
        });
        StateFrame::decode(json.to_string().as_bytes()).unwrap()
    }

    fn names(board: &Board, sort: Sort, filter: Option<&Filter>) -> Vec<String> {
        board
            .coordinators(sort, filter)
            .iter()
            .map(|f| f.publisher.name.clone())
            .collect()
    }

    #[test]
    fn rows_sort_filter_stop_and_go_stale() {
        let now = Instant::now();
        let mut board = Board::default();
        board.apply(frame("1", "payments", 20, 1, 0.5), now);
        board.apply(frame("2", "intake", 10, 3, 0.0), now);
        board.apply(frame("3", "notify", 30, 2, 9.0), now);
        assert_eq!(
            names(&board, Sort::Name, None),
            ["intake", "notify", "payments"]
        );
        assert_eq!(
            names(&board, Sort::Running, None),
            ["intake", "notify", "payments"]
        );
        assert_eq!(
            names(&board, Sort::Pending, None),
            ["payments", "notify", "intake"]
        );
        assert_eq!(
            names(&board, Sort::Failing, None),
            ["notify", "payments", "intake"]
        );
        assert_eq!(
            names(&board, Sort::Process, None),
            ["intake", "payments", "notify"]
        );

        // A word matches names containing it; a pattern matches as a pattern.
        assert_eq!(
            names(&board, Sort::Name, Some(&Filter::new("ay"))),
            ["payments"]
        );
        assert_eq!(
            names(&board, Sort::Name, Some(&Filter::new("in*,no*"))),
            ["intake", "notify"]
        );

        // A newer frame replaces the row; a stopped one removes it.
        board.apply(frame("1", "payments", 20, 4, 0.5), now);
        assert_eq!(
            board.coordinators(Sort::Name, None)[2]
                .coordinator()
                .unwrap()
                .counts
                .running,
            4
        );
        let mut stopped = frame("2", "intake", 10, 0, 0.0);
        stopped.state = State::Stopped;
        board.apply(stopped, now);
        assert_eq!(names(&board, Sort::Name, None), ["notify", "payments"]);

        // Silent for 3 intervals and a second: forgotten (unless touched after a pause).
        let poll = Duration::from_millis(250);
        board.prune(now + Duration::from_millis(1700), poll);
        assert_eq!(names(&board, Sort::Name, None).len(), 2);
        board.touch_all(now + Duration::from_secs(5));
        board.prune(now + Duration::from_secs(6), poll);
        assert_eq!(names(&board, Sort::Name, None).len(), 2);
        board.prune(now + Duration::from_secs(7), poll);
        assert!(names(&board, Sort::Name, None).is_empty());
    }
}
