//! The harness logic: statistics, ratio orientation, the JSON line, arguments, the turn runner,
//! the child-process protocol. No timing is asserted anywhere.

use clap::Parser;
use ephemeral_benches::cli::Args;
use ephemeral_benches::measures::{self, bus, memory};
use ephemeral_benches::report::Measurement;
use ephemeral_benches::stats::{median, per_second, percentile, ratio};
use ephemeral_benches::turns::{MIN_TURNS, alternate};
use serde_json::Value;

fn sample(ours: Option<f64>, baseline: Option<f64>, higher_is_better: bool) -> Measurement {
    Measurement {
        name: "x_vs_y",
        unit: "ops/s",
        ours,
        baseline: "a \"quoted\" baseline".into(),
        baseline_value: baseline,
        higher_is_better,
        target: 1.0,
        same_run: true,
        note: Some("never in the JSON".into()),
    }
}

#[test]
fn median_of_odd_even_empty_and_nan() {
    assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[7.0]), Some(7.0));
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[1.0, f64::NAN]), None);
}

#[test]
fn percentile_by_nearest_rank() {
    let xs: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&xs, 99.0), Some(99.0));
    assert_eq!(percentile(&xs, 100.0), Some(100.0));
    assert_eq!(percentile(&xs, 0.0), Some(1.0));
    assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
    assert_eq!(percentile(&xs, 101.0), None);
    assert_eq!(percentile(&[], 50.0), None);
}

#[test]
fn ratio_above_one_means_ours_is_better_both_ways() {
    // Throughput: more is better.
    assert_eq!(ratio(200.0, 100.0, true), Some(2.0));
    assert_eq!(ratio(50.0, 100.0, true), Some(0.5));
    // Latency or size: less is better, so baseline ÷ ours.
    assert_eq!(ratio(50.0, 100.0, false), Some(2.0));
    assert_eq!(ratio(200.0, 100.0, false), Some(0.5));
    // Nothing infinite or NaN leaks out.
    assert_eq!(ratio(0.0, 100.0, false), None);
    assert_eq!(ratio(1.0, 0.0, true), None);
    assert_eq!(ratio(0.0, 0.0, true), None);
}

#[test]
fn rates_from_durations() {
    let r = per_second(1000, std::time::Duration::from_millis(500));
    assert!((r - 2000.0).abs() < 1e-9, "{r}");
}

#[test]
fn json_line_has_exactly_the_fields_in_order() {
    let line = sample(Some(300.0), Some(100.0), true).to_json_line();
    assert!(!line.contains('\n'));
    let v: Value = serde_json::from_str(&line).expect("valid JSON");
    let keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "name",
        "unit",
        "ours",
        "baseline",
        "baseline_value",
        "higher_is_better",
        "ratio",
        "target",
        "same_run",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    assert!(line.starts_with(r#"{"name":"x_vs_y","unit":"ops/s","ours":300.0,"baseline":"#));
    assert!(
        line.ends_with(r#""ratio":3.0,"target":1.0,"same_run":true}"#),
        "{line}"
    );
    assert_eq!(v["baseline"], "a \"quoted\" baseline");
    assert_eq!(v["ratio"], 3.0);
}

#[test]
fn json_line_for_a_lower_is_better_measurement() {
    let v: Value =
        serde_json::from_str(&sample(Some(25.0), Some(100.0), false).to_json_line()).unwrap();
    assert_eq!(v["ratio"], 4.0);
    assert_eq!(v["higher_is_better"], false);
}

#[test]
fn missing_ours_prints_null_ours_and_null_ratio() {
    let v: Value = serde_json::from_str(&sample(None, Some(100.0), true).to_json_line()).unwrap();
    assert!(v["ours"].is_null());
    assert!(v["ratio"].is_null());
    assert_eq!(v["baseline_value"], 100.0);
    let v: Value =
        serde_json::from_str(&sample(Some(f64::INFINITY), None, true).to_json_line()).unwrap();
    assert!(v["ours"].is_null(), "infinity is not JSON");
    assert!(v["baseline_value"].is_null());
}

#[test]
fn args_parse() {
    let a = Args::try_parse_from(["compare"]).unwrap();
    assert!(!a.quick && !a.list && a.only.is_empty() && a.child.is_none());
    assert!(a.selects("anything"));

    let a = Args::try_parse_from(["compare", "--quick", "--only", "raise", "--only", "fanout"])
        .unwrap();
    assert!(a.quick);
    assert!(a.selects("raise_1t_vs_mutex_vecdeque"));
    assert!(a.selects("channel_fanout4_vs_broadcast"));
    assert!(!a.selects("has_signal_1k_vs_100k"));

    let a = Args::try_parse_from(["compare", "--list"]).unwrap();
    assert!(a.list);
    let a = Args::try_parse_from(["compare", "--child", "rss-probe"]).unwrap();
    assert_eq!(a.child.as_deref(), Some("rss-probe"));

    assert!(Args::try_parse_from(["compare", "--only"]).is_err());
    assert!(Args::try_parse_from(["compare", "--fast"]).is_err());
}

#[test]
fn every_design_table_name_is_listed_once() {
    let names: Vec<&str> = measures::all().iter().map(|s| s.name).collect();
    for expected in [
        "coord_noop_vs_pool16",
        "coord_noop_vs_spawn",
        "coord_noop_vs_tower",
        "keyed_1000_vs_pool16",
        "raise_1t_vs_mutex_vecdeque",
        "raise_2t_vs_mutex_vecdeque",
        "has_signal_100k_vs_scan",
        "has_signal_1k_vs_100k",
        "fanout4_vs_broadcast",
        "channel_fanout4_vs_broadcast",
        "defer_resume_p99",
        "rss_10m_items",
        "bus_throughput",
        "bus_latency_p99",
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == expected).count(),
            1,
            "{expected}"
        );
    }
}

#[test]
fn turns_alternate_and_skip_a_missing_side() {
    use std::cell::RefCell;
    let log = RefCell::new(Vec::new());
    let mut i = 0.0;
    let t = alternate(
        3, // raised to MIN_TURNS
        || {
            log.borrow_mut().push('A');
            i += 1.0;
            Some(i)
        },
        || {
            log.borrow_mut().push('B');
            10.0
        },
    );
    let log: String = log.into_inner().into_iter().collect();
    assert_eq!(
        log,
        "AB".repeat(MIN_TURNS + 1),
        "a warm-up pair, then ABAB..."
    );
    assert_eq!(
        t.ours,
        vec![2.0, 3.0, 4.0, 5.0, 6.0],
        "the warm-up is not measured"
    );
    assert_eq!(t.ours_median(), Some(4.0));
    assert_eq!(t.baseline_median(), Some(10.0));

    let mut calls = 0;
    let t = alternate(
        MIN_TURNS,
        || {
            calls += 1;
            None
        },
        || 1.0,
    );
    assert_eq!(calls, 1, "a missing side is asked once");
    assert!(t.ours.is_empty() && t.ours_median().is_none());
    assert_eq!(t.baseline.len(), MIN_TURNS);
}

#[test]
fn vm_hwm_parses_proc_status() {
    let status = "Name:\tcompare\nVmPeak:\t  20000 kB\nVmHWM:\t    8123 kB\nVmRSS:\t 8000 kB\n";
    assert_eq!(memory::vm_hwm_kib(status), Some(8123));
    assert_eq!(memory::vm_hwm_kib("Name: x\n"), None);
}

#[test]
fn child_output_parses() {
    use memory::{ChildReport, parse_child_output};
    assert_eq!(
        parse_child_output("checkpoint 1000000 9000\ncheckpoint 10000000 9100\n"),
        Ok(ChildReport::Checkpoints(vec![
            (1_000_000, 9000),
            (10_000_000, 9100)
        ]))
    );
    assert_eq!(
        parse_child_output("unavailable not yet\n"),
        Ok(ChildReport::Unavailable("not yet".into()))
    );
    assert!(parse_child_output("").is_err());
    assert!(parse_child_output("checkpoint x 1\n").is_err());
    assert!(parse_child_output("hello\n").is_err());
}

/// The real binary: `--list`, and a child process that reports its own peak RSS.
#[test]
fn compare_binary_lists_and_measures_a_child() {
    let exe = env!("CARGO_BIN_EXE_compare");
    let out = std::process::Command::new(exe)
        .arg("--list")
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listed.lines().count(), measures::all().len());

    let out = std::process::Command::new(exe)
        .args(["--child", memory::CHILD_PROBE])
        .output()
        .unwrap();
    assert!(out.status.success());
    match memory::parse_child_output(&String::from_utf8_lossy(&out.stdout)) {
        Ok(memory::ChildReport::Checkpoints(p)) => {
            assert_eq!(p.len(), 1);
            assert!(
                p[0].1 >= (memory::PROBE_BYTES / 1024) as u64,
                "the child touched 64 MiB but reports {} KiB",
                p[0].1
            );
        }
        other => panic!("unexpected child report {other:?}"),
    }

    let out = std::process::Command::new(exe)
        .args(["--child", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The real binary end to end on the measurements that need no timing loop: every stdout line
/// is one JSON object with exactly the nine fields, and a missing "ours" comes with a note on
/// stderr.
#[test]
fn compare_binary_prints_one_json_object_per_line() {
    let exe = env!("CARGO_BIN_EXE_compare");
    let out = std::process::Command::new(exe)
        .args([
            "--quick", "--only", "bus_", "--only", "defer_", "--only", "rss_",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let names: Vec<String> = stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("each line is JSON");
            let obj = v.as_object().expect("an object");
            assert_eq!(obj.len(), 9, "{line}");
            for key in [
                "name",
                "unit",
                "ours",
                "baseline",
                "baseline_value",
                "higher_is_better",
                "ratio",
                "target",
                "same_run",
            ] {
                assert!(obj.contains_key(key), "{key} missing in {line}");
            }
            let name = v["name"].as_str().unwrap().to_owned();
            if v["ours"].is_null() {
                assert!(v["ratio"].is_null());
                assert!(
                    stderr.contains(&format!("# note {name}:")),
                    "no note for {name}"
                );
            }
            name
        })
        .collect();
    assert_eq!(
        names,
        [
            "defer_resume_p99",
            "rss_10m_items",
            "rss_growth_1m_to_10m",
            "bus_throughput",
            "bus_latency_p99"
        ]
    );

    let out = std::process::Command::new(exe)
        .args(["--only", "no_such_measurement"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an --only that selects nothing is an error"
    );
}

#[test]
fn bus_child_modes_are_recognised_and_their_lines_parse() {
    use bus::{ChildLine, parse_child_line};
    assert!(bus::is_child(bus::CHILD_THROUGHPUT) && bus::is_child(bus::CHILD_LATENCY));
    assert!(!bus::is_child(memory::CHILD_PROBE) && !bus::is_child("bus"));
    let a = Args::try_parse_from(["compare", "--child", bus::CHILD_LATENCY]).unwrap();
    assert_eq!(a.child.as_deref(), Some(bus::CHILD_LATENCY));

    assert_eq!(parse_child_line("ready"), Ok(ChildLine::Ready));
    assert_eq!(
        parse_child_line("lat 12345"),
        Ok(ChildLine::Latency(12_345))
    );
    assert_eq!(
        parse_child_line("done 100 lagged 3"),
        Ok(ChildLine::Done {
            received: 100,
            lagged: 3
        })
    );
    for bad in [
        "",
        "lat",
        "lat x",
        "lat 1 2",
        "done 1",
        "done 1 lost 2",
        "done 1 lagged",
        "hello",
    ] {
        assert!(parse_child_line(bad).is_err(), "{bad:?} parsed");
    }

    let lossless = bus::ThroughputTurn {
        sent: 10,
        received: 10,
        lagged: 0,
        elapsed: std::time::Duration::from_secs(2),
    };
    assert_eq!(lossless.rate(), Ok(5.0));
    let lossy = bus::ThroughputTurn {
        received: 9,
        lagged: 1,
        ..lossless
    };
    assert!(lossy.rate().unwrap_err().contains("received 9 of 10"));
}

/// The real binary as the bus subscriber: every message arrives, nothing is lagged, one
/// latency sample per message. No timing is asserted.
#[test]
fn bus_turns_through_a_child_lose_nothing() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_compare"));
    let turn = bus::throughput_turn(exe, 2_000).unwrap();
    assert_eq!((turn.sent, turn.received, turn.lagged), (2_000, 2_000, 0));
    assert!(turn.rate().is_ok());

    let samples = bus::latency_turn(exe, 200).unwrap();
    assert_eq!(samples.len(), 200);
    assert!(samples.iter().all(|s| s.is_finite() && *s >= 0.0));

    // Without its environment the child refuses, with a usage error.
    let out = std::process::Command::new(exe)
        .args(["--child", bus::CHILD_THROUGHPUT])
        .env_remove(bus::COUNT_ENV)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(bus::COUNT_ENV));
}
