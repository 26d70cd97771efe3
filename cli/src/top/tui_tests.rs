//! The full-screen view drawn into a test backend.

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;

/// A coordinator of a long-named program with four-digit counts, read from JSON as a
/// watcher gets it.
fn frame() -> StateFrame {
    let json = serde_json::json!({
        "version": 1,
        "publisher": {"id": "00000000000000aa", "name": "notifications",
                      "process": {"pid": 123456, "program": "order-service-worker", "origin": "00"}},
        "sent_at_ms": 0, "interval_ms": 250, "sequence": 0,
        "state": {"kind": "coordinator", "type": "keyed", "id": "c",
                  "counts": {"accepted": 1024, "pending": 1024, "running": 0,
                             "completed": 0, "failed": 0, "cancelled": 0, "panicked": 0,
                             "evicted": 0, "tracked": 1024, "peak_running": 0},
                  "max_concurrency": 1024,
                  "rates": {"window_ms": 250, "accepted_per_s": 0.0, "completed_per_s": 1234.0,
                            "failed_per_s": 12.5, "cancelled_per_s": 0.0},
                  "latency": null, "deferred_by": ["circuit.open"], "done": false,
                  "operations": [], "operations_omitted": 0, "recent_failures": []}
    });
    StateFrame::decode(json.to_string().as_bytes()).unwrap()
}

fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.draw(f)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn cells(line: &str) -> Vec<&str> {
    line.split(['│', ' ']).filter(|c| !c.is_empty()).collect()
}

/// At 80 columns the coordinators' columns do not all fit: the flexible column and then
/// the text columns give way, cut at their end. The table used to cut whatever its
/// layout chose, right-aligned cells included, from their start: `FAIL/S` read `AIL/S`
/// and a limit of 1024 could read `024`.
#[test]
fn at_80_columns_no_number_or_header_loses_its_start() {
    let mut app = App::default();
    app.board.apply(frame(), Instant::now());
    let lines = screen(&app, 80, 12);
    let text = lines.join("\n");
    let header = lines.iter().find(|l| l.contains("RUN")).expect(&text);
    let c = cells(header);
    let at = c.iter().position(|c| *c == "TYPE").expect(&text);
    assert_eq!(
        c[at..],
        [
            "TYPE", "RUN", "PEND", "DONE/S", "FAIL/S", "P50", "P99", "LIMIT"
        ],
        "{text}"
    );
    let row = lines.iter().find(|l| l.contains("keyed")).expect(&text);
    let c = cells(row);
    let at = c.iter().position(|c| *c == "keyed").expect(&text);
    assert_eq!(
        c[at..],
        ["keyed", "0", "1024", "1234", "12.5", "-", "-", "1024"],
        "{text}"
    );
    // The text columns were cut at their end: the name shows whole, the process's start.
    assert_eq!(c[..at].last(), Some(&"notifications"), "{text}");
    assert!(c[0].starts_with("orde"), "{text}");
}

/// In raw mode Ctrl-C is a key: it quits the view even while a filter is being typed. It
/// used to be typed into the filter (`filter: c_`), leaving `Esc` then `q` as the way out.
#[test]
fn ctrl_c_quits_even_while_typing_a_filter() {
    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    let mut app = App::default();
    assert_eq!(
        app.key(KeyEvent::from(KeyCode::Char('/'))),
        Action::Continue
    );
    assert_eq!(
        app.key(KeyEvent::from(KeyCode::Char('p'))),
        Action::Continue
    );
    // Other control chords are not text either.
    assert_eq!(app.key(ctrl('u')), Action::Continue);
    assert_eq!(app.typing.as_deref(), Some("p"));
    assert_eq!(app.key(ctrl('c')), Action::Quit);
}

/// However narrow the terminal, a number is shown whole or not at all: the columns that do
/// not fit are left out (DEFERRED BY first, NAME never). At 40 columns the table used to cut
/// right-aligned cells from their start: RUN read `UN`, a backlog of 19994 read `94`, a
/// p99 of 50µs read `µs`.
#[test]
fn in_a_narrow_terminal_numbers_are_whole_or_left_out() {
    let mut app = App::default();
    app.board.apply(frame(), Instant::now());
    let numbers = [
        ("RUN", "0"),
        ("PEND", "1024"),
        ("DONE/S", "1234"),
        ("FAIL/S", "12.5"),
        ("P50", "-"),
        ("P99", "-"),
        ("LIMIT", "1024"),
    ];
    let texts = ["PROCESS", "NAME", "TYPE", "DEFERRED", "BY"];
    for width in 16..=100 {
        let lines = screen(&app, width, 12);
        let text = lines.join("\n");
        let at = lines.iter().position(|l| l.contains("NAME")).expect(&text);
        let (header, row) = (cells(&lines[at]), cells(&lines[at + 1]));
        assert!(header.contains(&"NAME"), "{width}: {text}");
        for (i, h) in header.iter().enumerate() {
            if let Some((_, value)) = numbers.iter().find(|(n, _)| n == h) {
                assert_eq!(row.get(i), Some(value), "{width}: {h}\n{text}");
            } else {
                assert!(
                    texts.iter().any(|t| t.starts_with(h)),
                    "{width}: header `{h}` is cut from its start\n{text}"
                );
            }
        }
    }
}

/// The operations pane at every width: the state and the key keep their start (cut to no
/// fewer than 4 cells), an age is whole or its column is left out. Its columns had fixed
/// widths: at 40 columns STATE read `runnin`, and narrower the age lost its start.
#[test]
fn in_a_narrow_terminal_the_operations_pane_shows_whole_ages_and_readable_states() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&frame().encode()).expect("a frame encodes as JSON");
    json["state"]["operations"] = serde_json::json!([
        {"id": 1, "state": "running", "key": "order-12345", "age_ms": 1500, "run_ms": 1500},
        {"id": 2, "state": "cancelled", "key": "order-7", "age_ms": 25000, "run_ms": null,
         "error": "deadline passed"},
    ]);
    let mut app = App::default();
    app.board.apply(
        StateFrame::decode(json.to_string().as_bytes()).unwrap(),
        Instant::now(),
    );
    let rows = [
        ("running", "order-12345", fmt::millis(1500)),
        ("cancelled", "order-7", fmt::millis(25000)),
    ];
    for width in 30..=120 {
        let lines = screen(&app, width, 16);
        let text = lines.join("\n");
        let title = lines
            .iter()
            .position(|l| l.contains("┌ operations"))
            .unwrap_or_else(|| panic!("{width}: no operations pane\n{text}"));
        // The pane's columns start inside its left border.
        let border = &lines[title];
        let offset = border[..border.find("┌ operations").expect("found")]
            .chars()
            .count()
            + 1;
        let at = title + 1;
        let pane = |line: &str| line.chars().skip(offset).collect::<String>();
        let header = pane(&lines[at]);
        let header: Vec<&str> = cells(&header);
        for (i, (state, key, age)) in rows.iter().enumerate() {
            let row = pane(&lines[at + 1 + i]);
            let row: Vec<&str> = cells(&row);
            assert!(
                row[0].len() >= 4 && state.starts_with(row[0]),
                "{width}: state `{}` of `{state}`\n{text}",
                row[0]
            );
            if let Some(k) = header.iter().position(|h| *h == "KEY") {
                assert!(key.starts_with(row[k]), "{width}: key `{}`\n{text}", row[k]);
            }
            if let Some(a) = header.iter().position(|h| *h == "AGE") {
                assert_eq!(row.get(a), Some(&age.as_str()), "{width}: age\n{text}");
            }
        }
    }
}
