//! Helpers shared by the NATS integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use ephemeral_nats::{Lagged, Message, Subscription};
use futures::StreamExt;

/// Generous: the machine is shared and busy; a hang must still fail rather than block.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The next item of a subscription, failing the test if none comes within [`PATIENCE`].
pub async fn next(sub: &mut Subscription) -> Result<Message, Lagged> {
    tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a message within the patience")
        .expect("the subscription is open")
}

/// The next message, failing the test on a lag report.
pub async fn message(sub: &mut Subscription) -> Message {
    next(sub).await.expect("a message, not a lag report")
}

/// Asserts nothing more arrives within `quiet`.
pub async fn nothing_more(sub: &mut Subscription, quiet: Duration) {
    if let Ok(item) = tokio::time::timeout(quiet, sub.next()).await {
        panic!("expected nothing more, got {item:?}");
    }
}

/// Waits (polling every 5 ms) until `condition` holds, failing after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
