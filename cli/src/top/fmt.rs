//! Short human renderings of the numbers in a frame.

use ephemeral_bus::inspect::{CoordinatorState, PublisherInfo};

/// `demo:4242`.
pub(crate) fn process(p: &PublisherInfo) -> String {
    format!("{}:{}", p.process.program, p.process.pid)
}

/// Microseconds as `850µs`, `12ms`, `1.2s`, `3m05s`.
pub(crate) fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{:.1}ms", us as f64 / 1e3),
        10_000..1_000_000 => format!("{}ms", us / 1_000),
        1_000_000..60_000_000 => format!("{:.1}s", us as f64 / 1e6),
        _ => {
            let s = us / 1_000_000;
            format!("{}m{:02}s", s / 60, s % 60)
        }
    }
}

/// Milliseconds, as [`micros`].
pub(crate) fn millis(ms: u64) -> String {
    micros(ms.saturating_mul(1_000))
}

/// A per-second rate: `0`, `0.4`, `12.5`, `1250`.
pub(crate) fn rate(r: f64) -> String {
    if r <= 0.0 {
        "0".to_owned()
    } else if r < 100.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// The latency percentiles, or `-` when nothing finished.
pub(crate) fn p50_p99(c: &CoordinatorState) -> (String, String) {
    c.latency.map_or_else(
        || ("-".to_owned(), "-".to_owned()),
        |l| (micros(l.p50_us), micros(l.p99_us)),
    )
}

/// The deferring signals, or `-`.
pub(crate) fn deferred(c: &CoordinatorState) -> String {
    if c.deferred_by.is_empty() {
        "-".to_owned()
    } else {
        c.deferred_by.join(",")
    }
}

/// A frame made safe to print: the publisher's name and program, free text from another
/// process, get their control characters shown as spaces (as keys, payloads and errors are
/// where they are printed), so no publisher can send escape sequences to the terminal.
pub(crate) fn clean_frame(frame: &mut ephemeral_bus::inspect::StateFrame) {
    for text in [
        &mut frame.publisher.name,
        &mut frame.publisher.process.program,
    ] {
        if text.contains(char::is_control) {
            *text = one_line(text);
        }
    }
}

/// Text on one line: control characters shown as spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A publisher's name and program are another process's text: our publishers refuse
    /// control characters in names, but any process can send a frame of its own (over NATS,
    /// any client can publish on the subject) and a program's file name can hold anything.
    /// They were printed raw by `signals`, `top` and `ops`.
    #[test]
    fn a_frame_is_cleaned_of_control_characters_in_names() {
        let json = r#"{"version":1,"publisher":{"id":"00000000000000ff","name":"pay\u001b[2J\u0007ments","process":{"pid":7,"program":"prog\u001b]0;title\u0007","origin":"0000000000000001"}},"sent_at_ms":1,"interval_ms":250,"sequence":1,"state":{"kind":"later"}}"#;
        let mut frame = ephemeral_bus::inspect::StateFrame::decode(json.as_bytes()).unwrap();
        clean_frame(&mut frame);
        assert_eq!(frame.publisher.name, "pay [2J ments");
        assert_eq!(frame.publisher.process.program, "prog ]0;title ");
        assert_eq!(process(&frame.publisher), "prog ]0;title :7");
    }

    #[test]
    fn durations_and_rates_are_short() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(1_500), "1.5ms");
        assert_eq!(micros(42_000), "42ms");
        assert_eq!(micros(1_200_000), "1.2s");
        assert_eq!(micros(185_000_000), "3m05s");
        assert_eq!(millis(412), "412ms");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(12.46), "12.5");
        assert_eq!(rate(1250.2), "1250");
        assert_eq!(one_line("a\nb\tc"), "a b c");
    }
}
