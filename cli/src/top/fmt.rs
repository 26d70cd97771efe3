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

/// Text on one line: control characters shown as spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
