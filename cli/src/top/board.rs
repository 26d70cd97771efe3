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
    pub(crate) fn apply(&mut self, frame: StateFrame, now: Instant) {
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
