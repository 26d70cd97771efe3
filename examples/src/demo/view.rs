//! What the run prints while it goes: a live view redrawn in place on a terminal, plain log
//! lines otherwise (CI pipes stdout), or nothing (tests).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use ephemeral::CoordinatorStats;

use super::feed::FeedLine;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// A block redrawn in place: a bar per coordinator and a scrolling feed of signals.
    Live,
    /// Log lines: notable signals as they happen and a progress line every second.
    Plain,
    /// Nothing (tests).
    Quiet,
}

impl Output {
    /// The mode for a run: `--quiet` prints nothing, `--plain` or a stdout that is not a
    /// terminal prints log lines, and so does a terminal that the library's log (`RUST_LOG`)
    /// writes to as well: the live view moves the cursor up over its last frame to redraw it,
    /// so log lines written in between would be overwritten and the frame torn.
    pub(crate) fn choose(
        quiet: bool,
        plain: bool,
        stdout_is_terminal: bool,
        log_on_terminal: bool,
    ) -> Self {
        if quiet {
            Self::Quiet
        } else if plain || !stdout_is_terminal || log_on_terminal {
            Self::Plain
        } else {
            Self::Live
        }
    }
}

/// One coordinator as the view shows it.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    /// Its name.
    pub(crate) name: &'static str,
    /// Its counters now.
    pub(crate) stats: CoordinatorStats,
    /// How many items it will see in all (for the bar), if known.
    pub(crate) expected: u64,
}

/// One frame of the view.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// Time since the start.
    pub(crate) at: Duration,
    /// The coordinators.
    pub(crate) lanes: Vec<Lane>,
    /// The breaker's state, rendered.
    pub(crate) circuit: String,
    /// Whether backpressure is held.
    pub(crate) backpressure: bool,
    /// Whether the downstream's incident is going on.
    pub(crate) incident: bool,
    /// The latest signals.
    pub(crate) recent: Vec<FeedLine>,
}

/// Draws frames.
#[derive(Debug)]
pub(crate) struct View {
    output: Output,
    drawn_lines: usize,
    last_plain: Option<Duration>,
}

impl View {
    /// A view writing in `output` mode.
    pub(crate) fn new(output: Output) -> Self {
        Self {
            output,
            drawn_lines: 0,
            last_plain: None,
        }
    }

    /// Shows `frame`, and logs the notable signals `notable` (plain mode).
    pub(crate) fn show(&mut self, frame: &Frame, notable: &[FeedLine]) -> io::Result<()> {
        match self.output {
            Output::Quiet => Ok(()),
            Output::Live => self.draw_live(frame),
            Output::Plain => self.log_plain(frame, notable, false),
        }
    }

    /// Shows the last frame in full, whatever the pace.
    pub(crate) fn finish(&mut self, frame: &Frame, notable: &[FeedLine]) -> io::Result<()> {
        match self.output {
            Output::Quiet => Ok(()),
            Output::Live => self.draw_live(frame),
            Output::Plain => self.log_plain(frame, notable, true),
        }
    }

    fn draw_live(&mut self, frame: &Frame) -> io::Result<()> {
        let mut text = String::new();
        if self.drawn_lines > 0 {
            // Move to the first line of the previous frame and clear everything below it.
            let _ = write!(text, "\x1b[{}F\x1b[J", self.drawn_lines);
        }
        let _ = writeln!(
            text,
            "t={:>5.1}s  circuit: {:<9}  backpressure: {:<4}  downstream: {}",
            frame.at.as_secs_f64(),
            frame.circuit,
            if frame.backpressure { "HELD" } else { "off" },
            if frame.incident { "INCIDENT" } else { "normal" }
        );
        for lane in &frame.lanes {
            let _ = writeln!(text, "{}", fit(&bar_line(lane)));
        }
        let _ = writeln!(text, "recent signals:");
        for line in &frame.recent {
            let _ = writeln!(text, "  {}", fit(&feed_line(line)));
        }
        for _ in frame.recent.len()..8 {
            let _ = writeln!(text);
        }
        self.drawn_lines = text.lines().count();
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn log_plain(&mut self, frame: &Frame, notable: &[FeedLine], force: bool) -> io::Result<()> {
        let mut out = io::stdout().lock();
        for line in notable {
            writeln!(
                out,
                "[{:>6.2}s] signal {}",
                line.at.as_secs_f64(),
                signal_text(line)
            )?;
        }
        let due = self
            .last_plain
            .is_none_or(|last| frame.at >= last + Duration::from_secs(1));
        if due || force {
            self.last_plain = Some(frame.at);
            let mut text = format!("[{:>6.2}s]", frame.at.as_secs_f64());
            for lane in &frame.lanes {
                let s = &lane.stats;
                let _ = write!(
                    text,
                    " {} {}/{}",
                    lane.name,
                    s.completed + s.failed + s.cancelled,
                    lane.expected
                );
                // Only what is not zero, so the line stays readable.
                let details: Vec<String> = [
                    (s.running, "running"),
                    (s.pending, "waiting"),
                    (s.failed, "failed"),
                    (s.cancelled, "cancelled"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
                if !details.is_empty() {
                    let _ = write!(text, " ({})", details.join(", "));
                }
                text.push_str(" |");
            }
            let _ = write!(
                text,
                " circuit {} | backpressure {}",
                frame.circuit,
                if frame.backpressure { "held" } else { "off" }
            );
            writeln!(out, "{text}")?;
        }
        out.flush()
    }
}

fn bar_line(lane: &Lane) -> String {
    const WIDTH: usize = 10;
    let s = &lane.stats;
    let done = s.completed + s.failed + s.cancelled;
    let filled = (done.min(lane.expected) * WIDTH as u64)
        .checked_div(lane.expected)
        .map_or(0, |f| f as usize);
    format!(
        "{:<13} [{}{}] {:>4}/{:<4} run {:>2} wait {:>3} ok {:>4} fail {:>3} cncl {:>3}",
        lane.name,
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        done,
        lane.expected,
        s.running,
        s.pending,
        s.completed,
        s.failed,
        s.cancelled
    )
}

/// Cuts a line to fit an 80-column terminal: a wrapped line would throw off the redraw.
fn fit(line: &str) -> &str {
    const COLUMNS: usize = 79;
    match line.char_indices().nth(COLUMNS) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

fn feed_line(line: &FeedLine) -> String {
    format!("{:>6.2}s  {}", line.at.as_secs_f64(), signal_text(line))
}

fn signal_text(line: &FeedLine) -> String {
    match &line.key {
        Some(key) => format!("{} (key {key})", line.name),
        None => line.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(completed: u64, failed: u64, expected: u64) -> Lane {
        let mut stats = CoordinatorStats::default();
        stats.accepted = completed + failed;
        stats.completed = completed;
        stats.failed = failed;
        Lane {
            name: "payments",
            stats,
            expected,
        }
    }

    #[test]
    fn the_bar_fills_with_finished_items_and_survives_an_empty_lane() {
        assert!(bar_line(&lane(0, 0, 0)).contains("[..........]"));
        assert!(bar_line(&lane(4, 1, 10)).contains("[#####.....]"));
        assert!(bar_line(&lane(9, 1, 10)).contains("[##########]"));
    }

    #[test]
    fn a_log_on_the_terminal_turns_the_live_view_into_plain_lines() {
        // A terminal, no log: the live view.
        assert_eq!(Output::choose(false, false, true, false), Output::Live);
        // RUST_LOG writing to the same terminal: plain lines, which the log cannot tear.
        assert_eq!(Output::choose(false, false, true, true), Output::Plain);
        assert_eq!(Output::choose(false, true, true, false), Output::Plain);
        assert_eq!(Output::choose(false, false, false, false), Output::Plain);
        assert_eq!(Output::choose(true, false, true, true), Output::Quiet);
    }

    #[test]
    fn lines_are_cut_to_fit_80_columns_on_a_character_boundary() {
        let long = "é".repeat(100);
        assert_eq!(fit(&long).chars().count(), 79);
        assert_eq!(fit("short"), "short");
        assert!(fit(&bar_line(&lane(1000, 100, 5000))).chars().count() <= 79);
    }
}
