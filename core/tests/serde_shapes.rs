//! `serde` support: golden JSON for the documented shapes, and round trips.
#![cfg(feature = "serde")]

use std::time::Duration;

use ephemeral::{
    CoordinatorStats, EphemeralOptions, EphemeralWorkCoordinator, Name, OperationState, Signal,
    SignalBuilder, SignalSink, SinkStats,
};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn a_signal_has_a_golden_json_shape() {
    let sink = SignalSink::default();
    let signal = sink
        .raise_with(
            Signal::build("error.db.timeout")
                .unwrap()
                .key("orders")
                .expires_in(Duration::from_secs(5))
                .payload_str("slow")
                .header("attempt", 3)
                .header("region", "eu"),
        )
        .unwrap();
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        serde_json::to_value(&signal).unwrap(),
        json!({
            "name": "error.db.timeout",
            "key": "orders",
            "operation": null,
            "sequence": signal.sequence(),
            "age_ms": 1500,
            "expires_in_ms": 3500,
            "payload": "slow",
            "headers": {"attempt": 3, "region": "eu"},
            "leaf": false,
            "terminal": false,
            "held": false,
            "causes": [],
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_reads_back_as_a_builder_that_raises_the_same_signal() {
    let sink = SignalSink::default();
    let signal = sink
        .raise_with(
            Signal::build("deploy.done")
                .unwrap()
                .key("api")
                .payload(&[0xff, 0x00][..])
                .header("ok", true)
                .header("ratio", 0.5)
                .leaf(),
        )
        .unwrap();
    let json = serde_json::to_string(&signal).unwrap();
    let builder: SignalBuilder = serde_json::from_str(&json).unwrap();
    let again = SignalSink::default().raise_with(builder).unwrap();
    assert_eq!(again.name(), signal.name());
    assert_eq!(again.key(), Some("api"));
    assert_eq!(again.payload(), Some(&[0xff, 0x00][..]));
    assert_eq!(again.headers(), signal.headers());
    assert!(again.is_leaf());
    // A binary payload is written as byte values.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["payload"], json!([255, 0]));
}

/// A signal written in its last millisecond reads back as one that can be raised: its time
/// left is rounded up, never written as 0 (which reads back as a zero time to live, refused
/// by the raise). It used to write `"expires_in_ms": 0` for a live signal with 0.9 ms left.
#[tokio::test(start_paused = true)]
async fn a_signal_in_its_last_millisecond_reads_back_as_one_that_can_be_raised() {
    let sink = SignalSink::default();
    let signal = sink
        .raise_with(
            Signal::build("lease.short")
                .unwrap()
                .expires_in(Duration::from_micros(1500)),
        )
        .unwrap();
    tokio::time::advance(Duration::from_micros(600)).await;
    assert!(sink.has_signal("lease.short"), "still live");
    let value = serde_json::to_value(&signal).unwrap();
    assert_eq!(value["expires_in_ms"], 1, "{value}");
    let builder: SignalBuilder = serde_json::from_value(value).unwrap();
    let again = SignalSink::default()
        .raise_with(builder)
        .expect("a live signal's JSON raises again");
    assert_eq!(again.name().as_str(), "lease.short");
}

/// A float header that is not finite: JSON has no NaN or infinity, so serde_json writes
/// `null`, which used to fail the read ("invalid type: null, expected a boolean, an integer,
/// a number or a string"). `null` now reads back as NaN.
#[test]
fn a_signal_with_a_non_finite_float_header_reads_back_and_raises() {
    let sink = SignalSink::default();
    let signal = sink
        .raise_with(
            Signal::build("ratio.bad")
                .unwrap()
                .header("ratio", f64::NAN)
                .header("peak", f64::INFINITY),
        )
        .unwrap();
    let value = serde_json::to_value(&signal).unwrap();
    assert_eq!(
        value["headers"]["ratio"],
        serde_json::Value::Null,
        "{value}"
    );
    let builder: SignalBuilder = serde_json::from_value(value).expect("it reads back");
    let again = SignalSink::default().raise_with(builder).unwrap();
    for key in ["ratio", "peak"] {
        assert!(
            matches!(again.header(key), Some(ephemeral::HeaderValue::Float(x)) if x.is_nan()),
            "{key}: {:?}",
            again.header(key)
        );
    }
}

#[test]
fn a_bad_name_is_refused_when_read() {
    let err = serde_json::from_str::<Name>(r#""error.*""#).unwrap_err();
    assert!(err.to_string().contains("wildcard"), "{err}");
    let err = serde_json::from_str::<SignalBuilder>(r#"{"name": ""}"#).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

/// A field a signal does not have is refused, naming it, rather than dropped: `ttl_ms` for
/// `expires_in_ms` used to raise a signal living to the sink's max age without a word.
#[test]
fn an_unknown_signal_field_is_refused_by_name() {
    let err = serde_json::from_str::<SignalBuilder>(r#"{"name": "x", "ttl_ms": 5000}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `ttl_ms`"), "{err}");
    assert!(
        err.contains("expires_in_ms"),
        "the known fields are listed: {err}"
    );
    // What a written signal carries and a raise cannot take still reads (and is ignored).
    let builder: SignalBuilder = serde_json::from_str(
        r#"{"name": "x", "sequence": 9, "age_ms": 5, "held": true, "causes": ["a.b"]}"#,
    )
    .unwrap();
    let signal = SignalSink::default().raise_with(builder).unwrap();
    assert_eq!(signal.sequence(), 1);
    assert!(signal.causes().is_empty());
}

#[test]
fn a_bad_payload_is_refused_with_what_a_payload_is() {
    // It used to say "data did not match any variant of untagged enum PayloadWire".
    let err = serde_json::from_str::<SignalBuilder>(r#"{"name": "x", "payload": [1, 256]}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("integer `256`, expected a payload byte value from 0 to 255"),
        "{err}"
    );
    for bad in [r#"5"#, r#"{"a": 1}"#, r#"[-1]"#, r#"["a"]"#, r#"true"#] {
        let json = format!(r#"{{"name": "x", "payload": {bad}}}"#);
        let err = serde_json::from_str::<SignalBuilder>(&json)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("untagged"), "{bad}: {err}");
        assert!(err.contains("expected a payload"), "{bad}: {err}");
    }
    // Good payloads still read: text, bytes, and an empty array.
    for (good, bytes) in [
        (r#""slow""#, &b"slow"[..]),
        (r#"[255, 0]"#, &[255, 0][..]),
        (r#"[]"#, &[][..]),
    ] {
        let json = format!(r#"{{"name": "x", "payload": {good}}}"#);
        let builder: SignalBuilder = serde_json::from_str(&json).unwrap();
        let sink = SignalSink::default();
        let signal = sink.raise_with(builder).unwrap();
        assert_eq!(signal.payload(), Some(bytes), "{good}");
    }
}

#[tokio::test(start_paused = true)]
async fn sink_stats_have_a_golden_json_shape_and_round_trip() {
    let sink = SignalSink::default();
    let _subscription = sink.subscribe("a.*");
    sink.raise("a.b").unwrap();
    sink.raise("a.c").unwrap();
    let stats = sink.stats();
    let value = serde_json::to_value(&stats).unwrap();
    assert_eq!(
        value,
        json!({
            "raised": 2, "expired": 0, "evicted": 0, "retracted": 0, "cleared": 0,
            "live": 2, "held": 0, "holds_acquired": 0, "holds_released": 0,
            "window_slots": 2, "expiry_entries": 0, "interned_names": 2, "idle_names": 0,
            "names_reclaimed": 0, "memo_entries": 0, "memo_recomputes": 0, "memo_resets": 0,
            "subscriptions": 1, "watches": 0, "listeners": 0,
            "handler_failures": 0, "handler_dropped": 0, "forward_refused": 0,
            "subscriber_dropped": 0,
            "subscribers": [
                {"pattern": "a.*", "delivered": 2, "dropped": 0, "expired": 0, "buffered": 2}
            ],
        })
    );
    let back: SinkStats = serde_json::from_value(value).unwrap();
    assert_eq!(back, stats);
}

#[test]
fn coordinator_stats_have_a_golden_json_shape() {
    let stats = CoordinatorStats::default();
    assert_eq!(
        serde_json::to_string(&stats).unwrap(),
        r#"{"accepted":0,"pending":0,"running":0,"completed":0,"failed":0,"cancelled":0,"panicked":0,"evicted":0,"tracked":0,"pinned":0,"echoes":0,"max_concurrency":0,"peak_running":0}"#
    );
    let back: CoordinatorStats =
        serde_json::from_str(&serde_json::to_string(&stats).unwrap()).unwrap();
    assert_eq!(back, stats);
}

#[test]
fn operation_states_read_as_snake_case() {
    for state in [
        OperationState::Pending,
        OperationState::Running,
        OperationState::Failed,
    ] {
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(
            serde_json::from_str::<OperationState>(&json).unwrap(),
            state
        );
    }
    assert_eq!(
        serde_json::to_string(&OperationState::Completed).unwrap(),
        r#""completed""#
    );
    let cancelled: OperationState =
        serde_json::from_str(r#"{"cancelled": {"signal": "deploy.start"}}"#).unwrap();
    assert!(matches!(cancelled, OperationState::Cancelled(_)));
}

#[tokio::test(start_paused = true)]
async fn an_operation_snapshot_writes_instants_as_ages() {
    let coordinator = EphemeralWorkCoordinator::new(
        |_: u32, _| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<(), std::io::Error>(())
        },
        EphemeralOptions::default(),
    )
    .unwrap();
    let id = coordinator.enqueue(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let snapshot = coordinator.operation(id).unwrap();
    let value = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(value["id"], id.as_u64());
    assert_eq!(value["state"], "completed");
    assert_eq!(value["enqueued_ms_ago"], 300);
    assert_eq!(value["finished_ms_ago"], 100);
    assert_eq!(value["error"], serde_json::Value::Null);
}
