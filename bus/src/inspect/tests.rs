//! The format's round trip and refusals, and the small helpers of the samplers.

use proptest::prelude::*;

use super::coordinator::percentile;
use super::format::clip;
use super::*;

fn publisher(name: &str) -> PublisherInfo {
    PublisherInfo {
        id: "00000000000000ff".to_owned(),
        name: name.to_owned(),
        process: ProcessInfo {
            pid: 4242,
            program: "demo".to_owned(),
            origin: "9a1e000000000001".to_owned(),
        },
    }
}

fn operation(state: &str, key: Option<&str>, error: Option<&str>) -> OperationEntry {
    OperationEntry {
        id: 812,
        state: state.to_owned(),
        key: key.map(str::to_owned),
        age_ms: 412,
        run_ms: Some(400),
        error: error.map(str::to_owned),
        panicked: false,
    }
}

fn coordinator_frame(name: &str, key: &str, error: &str, rate: f64) -> StateFrame {
    StateFrame {
        version: FORMAT_VERSION,
        publisher: publisher(name),
        sent_at_ms: 1_796_400_000_000,
        interval_ms: 250,
        sequence: 17,
        state: State::Coordinator(CoordinatorState {
            coordinator_type: "keyed".to_owned(),
            id: "coordinator-2".to_owned(),
            counts: Counts {
                accepted: 310,
                pending: 41,
                running: 8,
                completed: 250,
                failed: 9,
                cancelled: 2,
                panicked: 1,
                evicted: 61,
                tracked: 249,
                peak_running: 8,
            },
            max_concurrency: 8,
            rates: Rates {
                window_ms: 250,
                accepted_per_s: rate,
                completed_per_s: 48.0,
                failed_per_s: 4.0,
                cancelled_per_s: 0.0,
            },
            latency: Some(Latency {
                samples: 200,
                p50_us: 61_000,
                p99_us: 420_000,
                max_us: 515_000,
            }),
            deferred_by: vec!["circuit.open".to_owned()],
            done: false,
            operations: vec![
                operation("running", Some(key), None),
                operation("pending", None, None),
                operation("failed", Some(key), Some(error)),
            ],
            operations_omitted: 240,
            recent_failures: vec![operation("failed", Some(key), Some(error))],
        }),
    }
}

fn sink_frame(name: &str, payload: &str) -> StateFrame {
    StateFrame {
        version: FORMAT_VERSION,
        publisher: publisher(name),
        sent_at_ms: 1,
        interval_ms: 1000,
        sequence: 0,
        state: State::Sink(SinkState {
            sink_id: 3,
            sequence: 99,
            capacity: 4096,
            max_age_ms: 10_000,
            live: 1,
            held: 1,
            raised: 98,
            raised_per_s: 3.5,
            window_ms: 1000,
            signals: vec![
                SignalEntry {
                    name: "circuit.open".to_owned(),
                    key: None,
                    operation: None,
                    held: true,
                    age_ms: 1200,
                    ttl_ms: None,
                    sequence: 12,
                    payload: None,
                },
                SignalEntry {
                    name: "error.downstream.timeout".to_owned(),
                    key: Some("cust-03".to_owned()),
                    operation: Some(790),
                    held: false,
                    age_ms: 20,
                    ttl_ms: Some(9_980),
                    sequence: 99,
                    payload: Some(payload.to_owned()),
                },
            ],
            signals_omitted: 0,
        }),
    }
}

#[test]
fn every_kind_of_frame_round_trips() {
    let stopped = StateFrame {
        state: State::Stopped,
        ..sink_frame("shop", "")
    };
    for frame in [
        coordinator_frame("payments", "cust-07", "provider unavailable", 60.0),
        sink_frame("shop", "timed out after 2s"),
        stopped,
    ] {
        let bytes = frame.encode();
        assert_eq!(StateFrame::decode(&bytes).unwrap(), frame);
    }
}

#[test]
fn the_documented_field_names_are_the_ones_written() {
    let json: serde_json::Value =
        serde_json::from_slice(&coordinator_frame("payments", "k", "e", 1.0).encode()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["publisher"]["process"]["pid"], 4242);
    assert_eq!(json["state"]["kind"], "coordinator");
    assert_eq!(json["state"]["type"], "keyed");
    assert_eq!(json["state"]["counts"]["running"], 8);
    assert_eq!(json["state"]["latency"]["p99_us"], 420_000);
    assert_eq!(json["state"]["deferred_by"][0], "circuit.open");
    assert_eq!(json["state"]["recent_failures"][0]["error"], "e");
    let json: serde_json::Value =
        serde_json::from_slice(&sink_frame("shop", "p").encode()).unwrap();
    assert_eq!(json["state"]["kind"], "sink");
    assert_eq!(json["state"]["signals"][0]["held"], true);
    assert_eq!(json["state"]["signals"][1]["ttl_ms"], 9_980);
}

#[test]
fn an_unknown_version_is_refused_whatever_the_rest_holds() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&coordinator_frame("payments", "k", "e", 1.0).encode()).unwrap();
    json["version"] = 2.into();
    let err = StateFrame::decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::UnknownVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("version 2 is not supported"),
        "{err}"
    );

    // A future version may change everything else: it is still refused by its version.
    let err = StateFrame::decode(br#"{"version":7,"entirely":"different"}"#).unwrap_err();
    assert!(
        matches!(err, FormatError::UnknownVersion { found: 7, .. }),
        "{err:?}"
    );
    let err = StateFrame::decode(br#"{"version":0}"#).unwrap_err();
    assert!(
        matches!(err, FormatError::UnknownVersion { found: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn frames_without_a_version_or_not_json_are_refused() {
    let err = StateFrame::decode(br#"{"publisher":{}}"#).unwrap_err();
    assert!(matches!(err, FormatError::MissingVersion), "{err:?}");
    for garbage in [&b""[..], b"not json", b"[1,2]", b"{\"version\":\"one\"}"] {
        let err = StateFrame::decode(garbage).unwrap_err();
        assert!(matches!(err, FormatError::Json(_)), "{garbage:?}: {err:?}");
    }
    // Version 1 with a missing required field.
    let err = StateFrame::decode(br#"{"version":1,"sequence":3}"#).unwrap_err();
    assert!(matches!(err, FormatError::Json(_)), "{err:?}");
}

#[test]
fn readers_ignore_added_fields_and_unknown_kinds() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&sink_frame("shop", "p").encode()).unwrap();
    json["added_later"] = "ignored".into();
    json["state"]["also_new"] = 5.into();
    let frame = StateFrame::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(frame, sink_frame("shop", "p"));

    json["state"] = serde_json::json!({"kind": "channel", "depth": 4});
    let frame = StateFrame::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(frame.state, State::Unknown);
}

proptest! {
    #[test]
    fn any_text_and_numbers_round_trip(
        name in ".{0,40}",
        key in ".{0,40}",
        error in "\\PC{0,80}",
        payload in "[\\x00-\\x7f]{0,64}",
        rate in 0.0f64..1e9,
    ) {
        for frame in [
            coordinator_frame(&name, &key, &error, rate),
            sink_frame(&name, &payload),
        ] {
            prop_assert_eq!(StateFrame::decode(&frame.encode()).unwrap(), frame);
        }
    }

    #[test]
    fn clip_keeps_at_most_max_bytes_on_a_char_boundary(text in "\\PC{0,60}", max in 4usize..40) {
        let clipped = clip(&text, max);
        prop_assert!(clipped.len() <= max.max(text.len().min(max)));
        if text.len() <= max {
            prop_assert_eq!(clipped, text);
        } else {
            prop_assert!(clipped.ends_with('…'));
            prop_assert!(text.starts_with(clipped.trim_end_matches('…')));
        }
    }
}

#[test]
fn percentiles_are_nearest_rank() {
    let values: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&values, 50), 50);
    assert_eq!(percentile(&values, 99), 99);
    assert_eq!(percentile(&[7], 50), 7);
    assert_eq!(percentile(&[7], 99), 7);
    assert_eq!(percentile(&[1, 2], 50), 1);
    assert_eq!(percentile(&[1, 2], 99), 2);
}
