//! The full-screen view (ratatui on crossterm): coordinators, signals and holds, and the
//! selected coordinator's operations.

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ephemeral_bus::inspect::{StateFrame, StateTransport, StateWatcher};
use futures::StreamExt;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};
use tokio::time::{Instant, MissedTickBehavior};

use super::board::{Board, Filter, Sort};
use super::columns::{
    COORDINATOR_DROP, COORDINATOR_SPACING, OPERATION_SPACING, SIGNAL_SPACING, aligned, fitted,
    header,
};
use super::plain::{Align, COORDINATOR_HEADERS, SIGNAL_HEADERS, coordinator_cells, signal_rows};
use super::{TopArgs, fmt, inspect_failure};
use crate::exit::{Failure, IO};

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Continue,
    Quit,
    /// Polling resumes: ask for fresh state now.
    Resume,
}

/// The view's state between frames.
#[derive(Default)]
struct App {
    bus: String,
    board: Board,
    sort: Sort,
    filter: Option<Filter>,
    /// The filter being typed after `/`.
    typing: Option<String>,
    paused: bool,
    /// The selected coordinator, by publisher id (stable while rows move).
    selected: Option<String>,
}

impl App {
    fn key(&mut self, key: KeyEvent) -> Action {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        // Ctrl-C quits whatever is going on: in raw mode it is a key, not a signal, and a
        // user typing a filter expects it to end the view as everywhere else.
        if control && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(text) = &mut self.typing {
            match key.code {
                KeyCode::Enter => {
                    let text = std::mem::take(text);
                    self.filter = (!text.is_empty()).then(|| Filter::new(&text));
                    self.typing = None;
                }
                KeyCode::Esc => self.typing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                // Other control chords (Ctrl-U, Ctrl-W...) are not text.
                KeyCode::Char(c) if !control => text.push(c),
                _ => {}
            }
            return Action::Continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(-1);
                Action::Continue
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(1);
                Action::Continue
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                Action::Continue
            }
            KeyCode::Char('/') => {
                self.typing = Some(
                    self.filter
                        .as_ref()
                        .map(|f| f.text().to_owned())
                        .unwrap_or_default(),
                );
                Action::Continue
            }
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                if self.paused {
                    Action::Continue
                } else {
                    Action::Resume
                }
            }
            _ => Action::Continue,
        }
    }

    fn rows(&self) -> Vec<&StateFrame> {
        self.board.coordinators(self.sort, self.filter.as_ref())
    }

    /// The index of the selected row among `rows` (the first when none is chosen yet).
    fn index(&self, rows: &[&StateFrame]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        let found = self
            .selected
            .as_ref()
            .and_then(|id| rows.iter().position(|f| &f.publisher.id == id));
        Some(found.unwrap_or(0))
    }

    fn step(&mut self, by: isize) {
        let rows = self.rows();
        let Some(at) = self.index(&rows) else { return };
        let next = at.saturating_add_signed(by).min(rows.len() - 1);
        self.selected = Some(rows[next].publisher.id.clone());
    }

    fn draw(&self, frame: &mut Frame<'_>) {
        let rows = self.rows();
        // The coordinators' table as tall as its rows (borders and header: 3 lines), up to
        // 45 % of the screen; the panes below take the rest.
        let wanted = u16::try_from(rows.len())
            .unwrap_or(u16::MAX)
            .saturating_add(3);
        let most = (frame.area().height.saturating_mul(45) / 100).max(4);
        let [title, table, bottom, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(wanted.clamp(4, most)),
            // Gives way first when the terminal is short: the coordinators matter most.
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        let index = self.index(&rows);
        frame.render_widget(Paragraph::new(self.title(rows.len())).reversed(), title);
        self.draw_coordinators(frame, table, &rows, index);
        let [signals, operations] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(bottom);
        self.draw_signals(frame, signals);
        draw_operations(frame, operations, index.map(|i| rows[i]));
        frame.render_widget(Paragraph::new(self.footer()), footer);
    }

    fn title(&self, coordinators: usize) -> String {
        let sinks = self.board.sinks().len();
        let mut title = format!(
            " ephemeral top · {} · {coordinators} coordinator{} · {sinks} sink{} · sort: {}",
            self.bus,
            if coordinators == 1 { "" } else { "s" },
            if sinks == 1 { "" } else { "s" },
            self.sort.label(),
        );
        if let Some(f) = &self.filter {
            title.push_str(&format!(" · filter: {}", f.text()));
        }
        if self.paused {
            title.push_str(" · PAUSED");
        }
        title
    }

    fn footer(&self) -> Line<'static> {
        match &self.typing {
            Some(text) => Line::from(format!(
                "filter: {text}_   (Enter apply, empty clears; Esc cancel)"
            )),
            None => Line::from(" ↑↓ select   s sort   / filter   p pause   q quit").dim(),
        }
    }

    fn draw_coordinators(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        rows: &[&StateFrame],
        index: Option<usize>,
    ) {
        let cells: Vec<Vec<String>> = rows.iter().map(|f| coordinator_cells(f)).collect();
        let fit = fitted(
            &COORDINATOR_HEADERS,
            &cells,
            COORDINATOR_HEADERS.len() - 1,
            area.width.saturating_sub(2),
            COORDINATOR_SPACING,
            &COORDINATOR_DROP,
        );
        let headers = fit.pick(&COORDINATOR_HEADERS);
        let body: Vec<Row<'_>> = cells
            .iter()
            .map(|c| Row::new(aligned(fit.pick(c), &headers)))
            .collect();
        let title = match (rows.is_empty(), &self.filter) {
            (false, _) => " coordinators ",
            (true, Some(_)) => " coordinators: no coordinator matches the filter ",
            (true, None) => " coordinators: none publishing (see publish_state) ",
        };
        let table = Table::new(body, fit.widths)
            .header(header(&headers))
            .column_spacing(COORDINATOR_SPACING)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .block(Block::bordered().title(title));
        let mut state = TableState::default().with_selected(index);
        frame.render_stateful_widget(table, area, &mut state);
    }

    fn draw_signals(&self, frame: &mut Frame<'_>, area: Rect) {
        let sinks = self.board.sinks();
        // The sink column is redundant with one sink: leave it out then.
        let rows = signal_rows(sinks.iter().copied(), |_| true);
        let skip = usize::from(sinks.len() <= 1);
        let headers = &SIGNAL_HEADERS[skip..6];
        let cells: Vec<Vec<String>> = rows.into_iter().map(|r| r[skip..6].to_vec()).collect();
        // NAME is the column that gives way, but is never left out; in a narrow pane the
        // sink goes first, then TTL, KEY, AGE and HELD.
        // Indices into SIGNAL_HEADERS (SINK, TTL, KEY, AGE, HELD), then into `headers`.
        let drop: Vec<usize> = [0, 5, 2, 4, 3]
            .into_iter()
            .filter_map(|i: usize| i.checked_sub(skip))
            .collect();
        let fit = fitted(
            headers,
            &cells,
            1 - skip,
            area.width.saturating_sub(2),
            SIGNAL_SPACING,
            &drop,
        );
        let headers = fit.pick(headers);
        let count: u64 = sinks
            .iter()
            .filter_map(|f| f.sink())
            .map(|s| s.live + s.held)
            .sum();
        let body: Vec<Row<'_>> = cells
            .iter()
            .map(|c| Row::new(aligned(fit.pick(c), &headers)))
            .collect();
        let table = Table::new(body, fit.widths)
            .header(header(&headers))
            .column_spacing(SIGNAL_SPACING)
            .block(Block::bordered().title(format!(" signals and holds ({count}) ")));
        frame.render_widget(table, area);
    }
}

/// The operations pane's columns.
const OPERATION_HEADERS: [(&str, Align); 4] = [
    ("STATE", Align::Left),
    ("KEY", Align::Left),
    ("AGE", Align::Right),
    ("ERROR", Align::Left),
];

fn draw_operations(frame: &mut Frame<'_>, area: Rect, selected: Option<&StateFrame>) {
    let Some((f, c)) = selected.and_then(|f| Some((f, f.coordinator()?))) else {
        frame.render_widget(Block::bordered().title(" operations "), area);
        return;
    };
    let cells: Vec<Vec<String>> = c
        .operations
        .iter()
        .map(|op| {
            vec![
                op.state.clone(),
                op.key
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), fmt::one_line),
                fmt::millis(op.age_ms),
                op.error.as_deref().map(fmt::one_line).unwrap_or_default(),
            ]
        })
        .collect();
    // ERROR takes what is left; in a narrow pane it goes first, then AGE, so that the state
    // and the key stay readable (STATE and KEY give way down to 4 cells, never further).
    let fit = fitted(
        &OPERATION_HEADERS,
        &cells,
        3,
        area.width.saturating_sub(2),
        OPERATION_SPACING,
        &[3, 2],
    );
    let headers = fit.pick(&OPERATION_HEADERS);
    let body: Vec<Row<'_>> = c
        .operations
        .iter()
        .zip(&cells)
        .map(|(op, row)| {
            let style = match op.state.as_str() {
                "failed" => Style::new().red(),
                "cancelled" => Style::new().yellow(),
                "running" => Style::new().green(),
                _ => Style::new(),
            };
            Row::new(aligned(fit.pick(row), &headers)).style(style)
        })
        .collect();
    let more = if c.operations_omitted > 0 {
        format!(", {} more", c.operations_omitted)
    } else {
        String::new()
    };
    let title = format!(
        " operations of {} ({} running, {} pending{more}) ",
        f.publisher.name, c.counts.running, c.counts.pending
    );
    let table = Table::new(body, fit.widths)
        .header(header(&headers))
        .column_spacing(OPERATION_SPACING)
        .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

/// Runs the view until `q`, Ctrl-C, SIGINT or SIGTERM; the terminal is given back (raw mode
/// off, the main screen restored) however it ends.
pub(crate) async fn run<T: StateTransport>(
    source: &super::Source,
    watcher: StateWatcher<T>,
    args: &TopArgs,
) -> Result<(), Failure> {
    let mut terminal = ratatui::try_init().map_err(|e| {
        ratatui::restore();
        Failure::new(IO, format!("cannot take over the terminal: {e}"))
    })?;
    let app = App {
        bus: source.label(),
        filter: args.filter.as_deref().map(Filter::new),
        ..App::default()
    };
    let result = event_loop(&mut terminal, app, watcher, args).await;
    ratatui::restore();
    result
}

async fn event_loop<T: StateTransport>(
    terminal: &mut ratatui::DefaultTerminal,
    mut app: App,
    mut watcher: StateWatcher<T>,
    args: &TopArgs,
) -> Result<(), Failure> {
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // In raw mode Ctrl-C arrives as a key; SIGTERM (and a SIGINT sent from elsewhere) would
    // otherwise end the process with the terminal still raw and on the alternate screen.
    let stop = crate::commands::interrupted();
    tokio::pin!(stop);
    loop {
        terminal
            .draw(|f| app.draw(f))
            .map_err(|e| Failure::new(IO, format!("cannot draw: {e}")))?;
        tokio::select! {
            () = &mut stop => return Ok(()),
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                    match app.key(key) {
                        Action::Quit => return Ok(()),
                        Action::Resume => {
                            app.board.touch_all(Instant::now());
                            watcher.poll().await.map_err(inspect_failure)?;
                        }
                        Action::Continue => {}
                    }
                }
                // A resize only needs the redraw at the top of the loop.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::new(IO, format!("cannot read the terminal: {e}"))),
                None => return Ok(()),
            },
            frame = watcher.next() => match frame {
                None => return Err(Failure::new(IO, "the connection closed under the watcher")),
                Some(Ok(frame)) if !app.paused => app.board.apply(frame, Instant::now()),
                Some(_) => {}
            },
            _ = tick.tick(), if !app.paused => {
                app.board.prune(Instant::now(), args.interval);
                watcher.poll().await.map_err(inspect_failure)?;
            }
        }
    }
}

#[cfg(test)]
#[path = "tui_tests.rs"]
mod tests;
