//! `serde` support of the bus: golden JSON for a message and stats, round trips of messages
//! and options.
#![cfg(feature = "serde")]

mod support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ephemeral::HeaderValue;
use ephemeral_bus::{BusOptions, BusStats, Message, Name, ServeOptions};
use futures::StreamExt;
use serde_json::json;

fn message() -> Message {
    Message::new(Name::new("orders.created").unwrap(), &b"42"[..])
        .with_id(7, 3)
        .with_hops(1)
        .with_timestamp(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        .with_ttl(Some(Duration::from_millis(2500)))
        .with_headers(Arc::from(vec![
            (Arc::from("attempt"), HeaderValue::Int(2)),
            (Arc::from("region"), HeaderValue::from("eu")),
        ]))
}

#[test]
fn a_message_has_a_golden_json_shape() {
    assert_eq!(
        serde_json::to_value(message()).unwrap(),
        json!({
            "topic": "orders.created",
            "kind": "message",
            "payload": "42",
            "headers": {"attempt": 2, "region": "eu"},
            "origin": 7,
            "id": 3,
            "hops": 1,
            "timestamp_ms": 1_700_000_000_123_u64,
            "ttl_ms": 2500,
            "correlation": null,
            "reply_status": null,
        })
    );
}

/// A bad payload says what a payload is (it said "data did not match any variant of
/// untagged enum PayloadWire"), the same message as a signal's (`ephemeral::serde_payload`).
#[test]
fn a_bad_message_payload_is_refused_with_what_a_payload_is() {
    for bad in ["[256]", "[-1]", r#"["a"]"#, "5", "true"] {
        let json = format!(r#"{{"topic": "a", "payload": {bad}}}"#);
        let err = serde_json::from_str::<Message>(&json)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("untagged"), "{bad}: {err}");
        assert!(
            err.contains("expected a payload") || err.contains("from 0 to 255"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_message_round_trips() {
    let m = message();
    let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    let binary = Message::new(Name::new("raw").unwrap(), &[0xff_u8, 0][..]);
    let json = serde_json::to_value(&binary).unwrap();
    assert_eq!(json["payload"], json!([255, 0]));
    let back: Message = serde_json::from_value(json).unwrap();
    assert_eq!(back.payload(), &[0xff, 0]);
}

#[test]
fn options_round_trip_through_their_setters() {
    let options = BusOptions::default()
        .max_payload(4096)
        .send_timeout(Duration::from_millis(250));
    let json = serde_json::to_value(&options).unwrap();
    assert_eq!(json["send_timeout_ms"], 250);
    assert_eq!(json["max_payload"], 4096);
    let back: BusOptions = serde_json::from_value(json).unwrap();
    assert_eq!(back.get_max_payload(), 4096);
    // Missing fields keep their defaults; values still pass the setters' bounds.
    let partial: BusOptions =
        serde_json::from_str(r#"{"max_payload": 18446744073709551615}"#).unwrap();
    assert_eq!(partial.get_max_payload(), u32::MAX as usize / 2);
    let serve: ServeOptions = serde_json::from_str(r#"{"max_concurrent": 0}"#).unwrap();
    assert_eq!(serve.get_max_concurrent(), 1);
    assert_eq!(
        serve.get_max_queued(),
        ServeOptions::default().get_max_queued()
    );
}

#[tokio::test]
async fn bus_stats_serialize_with_uptime_in_milliseconds_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let bus = support::open(dir.path(), "serde-stats").await;
    let mut sub = bus.subscribe("orders.*").await.unwrap();
    bus.publish("orders.created", b"1").await.unwrap();
    sub.next().await.unwrap().unwrap();
    let stats = bus.stats();
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["published"], 1);
    assert!(json["uptime_ms"].is_u64(), "{json}");
    // The bus's own retained-state subscription may be listed too: find ours by its pattern.
    let subscriptions = json["subscriptions"].as_array().unwrap();
    assert!(
        subscriptions.iter().any(|s| s["pattern"] == "orders.*"),
        "{json}"
    );
    assert_eq!(json["topics"][0]["topic"], "orders.created");
    let mut back: BusStats = serde_json::from_value(json).unwrap();
    // Milliseconds are whole: compare what they keep.
    back.uptime = stats.uptime;
    assert_eq!(back, stats);
}
