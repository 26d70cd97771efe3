//! Text and JSON output: `--once`, and the plain lines printed when stdout is not a terminal.

use std::io::Write;
use std::time::SystemTime;

use ephemeral_bus::inspect::{FORMAT_VERSION, StateFrame, StateTransport, StateWatcher};
use tokio::time::{Instant, MissedTickBehavior};

use super::board::{Board, Filter};
use super::{Source, TopArgs, fmt, inspect_failure};
use crate::exit::{Failure, IO};

/// At most this many signal lines in `top`'s text output.
const MAX_SIGNAL_LINES: usize = 12;

/// Left- or right-aligned column.
#[derive(Clone, Copy)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Lays out rows under headers, each column as wide as its widest cell, two spaces apart.
pub(crate) fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, ((cell, (_, align)), w)) in cells.iter().zip(headers).zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = w.saturating_sub(cell.chars().count());
            match align {
                Align::Left => {
                    out.push_str(cell);
                    // No trailing spaces after the last column.
                    if i + 1 < headers.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                Align::Right => {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
        }
        // An empty last cell (a signal with no payload) leaves its separator behind.
        out.truncate(out.trim_end().len());
        out
    };
    let mut out = vec![line(headers.iter().map(|(h, _)| *h).collect())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

pub(crate) const COORDINATOR_HEADERS: [(&str, Align); 11] = [
    ("PROCESS", Align::Left),
    ("NAME", Align::Left),
    ("TYPE", Align::Left),
    ("RUN", Align::Right),
    ("PEND", Align::Right),
    ("DONE/S", Align::Right),
    ("FAIL/S", Align::Right),
    ("P50", Align::Right),
    ("P99", Align::Right),
    ("LIMIT", Align::Right),
    ("DEFERRED BY", Align::Left),
];

/// The cells of one coordinator row, in [`COORDINATOR_HEADERS`] order.
pub(crate) fn coordinator_cells(frame: &StateFrame) -> Vec<String> {
    let Some(c) = frame.coordinator() else {
        return Vec::new();
    };
    let (p50, p99) = fmt::p50_p99(c);
    vec![
        fmt::process(&frame.publisher),
        frame.publisher.name.clone(),
        c.coordinator_type.clone(),
        c.counts.running.to_string(),
        c.counts.pending.to_string(),
        fmt::rate(c.rates.completed_per_s),
        fmt::rate(c.rates.failed_per_s),
        p50,
        p99,
        c.max_concurrency.to_string(),
        fmt::deferred(c),
    ]
}

pub(crate) const SIGNAL_HEADERS: [(&str, Align); 7] = [
    ("SINK", Align::Left),
    ("NAME", Align::Left),
    ("KEY", Align::Left),
    ("HELD", Align::Left),
    ("AGE", Align::Right),
    ("TTL", Align::Right),
    ("PAYLOAD", Align::Left),
];

/// One row per live signal of the sinks among `frames`, passing `keep`.
pub(crate) fn signal_rows<'a>(
    frames: impl IntoIterator<Item = &'a StateFrame>,
    keep: impl Fn(&ephemeral_bus::inspect::SignalEntry) -> bool,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for frame in frames {
        let Some(sink) = frame.sink() else { continue };
        for s in sink.signals.iter().filter(|s| keep(s)) {
            rows.push(vec![
                format!(
                    "{}/{}",
                    fmt::process(&frame.publisher),
                    frame.publisher.name
                ),
                s.name.clone(),
                s.key
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), fmt::one_line),
                if s.held { "held" } else { "-" }.to_owned(),
                fmt::millis(s.age_ms),
                s.ttl_ms.map_or_else(|| "-".to_owned(), fmt::millis),
                s.payload.as_deref().map(fmt::one_line).unwrap_or_default(),
            ]);
        }
    }
    rows
}

/// Writes lines to stdout; `false` once stdout is gone (a closed pipe).
pub(crate) fn emit(lines: &[String]) -> bool {
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return false;
        }
    }
    out.flush().is_ok()
}

/// The JSON document of `--once --json`, and of each refresh of `--json`: the format
/// `version`, the time it was taken (`at_ms`, UNIX milliseconds), where it was read
/// (`"bus": name` or `"nats": url`) and the frames as published.
#[derive(serde::Serialize)]
struct SnapshotJson<'a> {
    version: u32,
    at_ms: u64,
    frames: &'a [&'a StateFrame],
    #[serde(flatten)]
    source: std::collections::BTreeMap<&'static str, &'a str>,
}

/// The JSON document of `--once --json`, and of each refresh of `--json`.
pub(crate) fn snapshot_json(source: &Source, frames: &[&StateFrame]) -> String {
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    serde_json::to_string(&SnapshotJson {
        version: FORMAT_VERSION,
        at_ms,
        frames,
        source: source.json().into_iter().collect(),
    })
    .unwrap_or_default()
}

fn text(source: &Source, frames: &[&StateFrame]) -> Vec<String> {
    let coordinators: Vec<Vec<String>> = frames
        .iter()
        .filter(|f| f.coordinator().is_some())
        .map(|f| coordinator_cells(f))
        .collect();
    let sinks = frames.iter().filter(|f| f.sink().is_some()).count();
    let mut lines = vec![format!(
        "{}: {} coordinator{}, {sinks} sink{}",
        source.label(),
        coordinators.len(),
        if coordinators.len() == 1 { "" } else { "s" },
        if sinks == 1 { "" } else { "s" },
    )];
    if !coordinators.is_empty() {
        lines.extend(table(&COORDINATOR_HEADERS, &coordinators));
    }
    // Holds come first in each sink's sample, then the newest signals.
    let mut signals = signal_rows(frames.iter().copied(), |_| true);
    let more = signals.len().saturating_sub(MAX_SIGNAL_LINES);
    signals.truncate(MAX_SIGNAL_LINES);
    if !signals.is_empty() {
        lines.push(String::new());
        lines.extend(table(&SIGNAL_HEADERS, &signals));
    }
    let unsampled = unsampled_signals(frames.iter().copied());
    match (more, unsampled) {
        (0, 0) => {}
        (more, 0) => lines.push(format!(
            "({more} more live signals: `ephemeral signals` lists them all)"
        )),
        (more, unsampled) => lines.push(format!(
            "({} more live signals: `ephemeral signals` lists {more} of them; {unsampled} \
             are not in the sinks' published samples)",
            u64::try_from(more)
                .unwrap_or(u64::MAX)
                .saturating_add(unsampled)
        )),
    }
    lines
}

/// Live signals the sinks among `frames` left out of their published samples (their
/// `PublishOptions::max_signals`): no view can list them.
pub(crate) fn unsampled_signals<'a>(frames: impl IntoIterator<Item = &'a StateFrame>) -> u64 {
    frames
        .into_iter()
        .filter_map(|f| f.sink())
        .map(|s| s.signals_omitted)
        .sum()
}

/// `top --once`.
pub(crate) fn once(source: &Source, frames: &[StateFrame], json: bool) -> Result<(), Failure> {
    let refs: Vec<&StateFrame> = frames.iter().collect();
    if json {
        emit(&[snapshot_json(source, &refs)]);
    } else {
        emit(&text(source, &refs));
    }
    Ok(())
}

/// `top` with stdout not a terminal (or `--plain`, `--json`): a block of lines per refresh.
pub(crate) async fn follow<T: StateTransport>(
    source: &Source,
    mut watcher: StateWatcher<T>,
    args: &TopArgs,
) -> Result<(), Failure> {
    if args.count == Some(0) {
        // As `watch --count 0`: nothing to show, and no waiting for publishers.
        return Ok(());
    }
    let filter = args.filter.as_deref().map(Filter::new);
    let mut board = Board::default();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop = crate::commands::interrupted();
    tokio::pin!(stop);
    // The first refresh waits for every publisher's first answer (bounded by --wait), so
    // that it is complete; later ones show what arrived by their tick.
    for frame in super::snapshot(&mut watcher, args.wait).await? {
        board.apply(frame, Instant::now());
    }
    tick.reset_immediately();
    let mut refreshes = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            frame = watcher.next() => match frame {
                None => return Err(Failure::new(IO, "the connection closed under the watcher")),
                Some(Ok(frame)) => board.apply(frame, Instant::now()),
                Some(Err(_)) => {}
            },
            _ = tick.tick() => {
                board.prune(Instant::now(), args.interval);
                let frames = board.frames(filter.as_ref());
                let lines = if args.json {
                    vec![snapshot_json(source, &frames)]
                } else {
                    let clock = crate::render::clock(SystemTime::now());
                    let mut lines = vec![format!("-- {clock}")];
                    lines.extend(text(source, &frames));
                    lines
                };
                if !emit(&lines) {
                    return Ok(());
                }
                refreshes += 1;
                if args.count.is_some_and(|n| refreshes >= n) {
                    return Ok(());
                }
                watcher.poll().await.map_err(inspect_failure)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_last_cell_leaves_no_trailing_spaces() {
        let headers = [
            ("NAME", Align::Left),
            ("AGE", Align::Right),
            ("PAYLOAD", Align::Left),
        ];
        let rows = vec![
            vec!["a".to_owned(), "1s".to_owned(), String::new()],
            vec!["b".to_owned(), "20s".to_owned(), "x".to_owned()],
        ];
        let lines = table(&headers, &rows);
        assert_eq!(lines, ["NAME  AGE  PAYLOAD", "a      1s", "b     20s  x"]);
    }
}
