//! `serde` support: the connection and subscription counters as JSON.
#![cfg(feature = "serde")]

use ephemeral_nats::{NatsStats, SubscriptionStats};

#[test]
fn counters_have_a_golden_json_shape_and_round_trip() {
    let stats = NatsStats::default();
    let json = serde_json::to_string(&stats).unwrap();
    assert_eq!(json, r#"{"connects":0,"disconnects":0,"slow_consumers":0}"#);
    assert_eq!(serde_json::from_str::<NatsStats>(&json).unwrap(), stats);
    let stats = SubscriptionStats::default();
    let json = serde_json::to_string(&stats).unwrap();
    assert_eq!(
        json,
        r#"{"delivered":0,"lagged":0,"expired":0,"undecodable":0}"#
    );
    assert_eq!(
        serde_json::from_str::<SubscriptionStats>(&json).unwrap(),
        stats
    );
}
