//! Durable subscription scenarios.

use std::time::{Duration, Instant};

use ephemeral::Lagged;

use super::child::Kid;
use super::room::{OLDER, SHORT_AGE};
use super::{Backend, next, unique};
use crate::retained::{DurableOptions, StoreError};

/// Bad input is refused alike (an empty or blank pattern, or one whose every alternative
/// holds whitespace, so matches no name; a zero max age); a max age below
/// NATS's 100 ms stream floor is accepted and keeps its meaning: a message older than it is
/// dropped, and the subscriber told `Lagged`.
pub(crate) async fn bad_input_and_short_max_age<B: Backend>(b: B) {
    for pattern in ["", "  ", " , ", "a b", "orders new.*, x\ty"] {
        let refused = b
            .subscribe_durable_with(pattern, &unique("conf.empty"), DurableOptions::default())
            .await;
        assert!(
            matches!(&refused, Err(StoreError::EmptyPattern { pattern: p }) if p == pattern),
            "the pattern {pattern:?}: {:?}",
            refused.err()
        );
    }
    let topic = unique("conf.brief");
    let pattern = format!("{topic}.*");
    let zero = b
        .subscribe_durable_with(
            &pattern,
            &unique("conf.zero"),
            DurableOptions::default().max_age(Duration::ZERO),
        )
        .await;
    assert!(
        matches!(zero, Err(StoreError::ZeroMaxAge)),
        "a zero max age: {:?}",
        zero.err()
    );
    let name = unique("conf.brief");
    let options = DurableOptions::default().max_age(SHORT_AGE);
    let sub = b
        .subscribe_durable_with(&pattern, &name, options.clone())
        .await
        .expect("a short max age");
    assert_eq!(sub.options().get_max_age(), SHORT_AGE);
    drop(sub);
    b.publish(&format!("{topic}.a"), b"old")
        .await
        .expect("publish");
    tokio::time::sleep(OLDER).await;
    let mut sub = b
        .subscribe_durable_with(&pattern, &name, options)
        .await
        .expect("attach again");
    let sent = Instant::now();
    b.publish(&format!("{topic}.b"), b"new")
        .await
        .expect("publish");
    assert_eq!(
        next(&mut sub, "the old one, dropped by age").await.err(),
        Some(Lagged(1))
    );
    match tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut sub)).await {
        Ok(Some(Ok(m))) => assert_eq!(m.payload(), b"new"),
        other => assert!(
            sent.elapsed() > SHORT_AGE,
            "a young message was not handed out: {other:?}"
        ),
    }
    sub.remove().await.expect("remove");
}

pub(crate) async fn ack_and_redelivery<B: Backend>(b: B) {
    let (name, topic) = (unique("conf.billing"), unique("conf.orders"));
    let pattern = format!("{topic}.*");
    let options = crate::retained::DurableOptions::default();
    let sub = b
        .subscribe_durable_with(&pattern, &name, options.clone())
        .await
        .expect("subscribe");
    drop(sub);
    for i in 0..10 {
        b.publish(&format!("{topic}.created"), i.to_string().as_bytes())
            .await
            .expect("publish");
    }
    let mut sub = b
        .subscribe_durable_with(&pattern, &name, options.clone())
        .await
        .expect("attach again");
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(next(&mut sub, "a kept message").await.expect("no lag"));
    }
    let payloads: Vec<&str> = got
        .iter()
        .map(|m| m.payload_str().unwrap_or_default())
        .collect();
    assert_eq!(payloads, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    sub.ack(&got[4]).await.expect("ack");
    drop(sub);
    let mut again = b
        .subscribe_durable_with(&pattern, &name, options.clone())
        .await
        .expect("attach again");
    let first = next(&mut again, "the first unacknowledged")
        .await
        .expect("no lag");
    assert_eq!(
        first.payload(),
        b"5",
        "unacknowledged ones come again, acknowledged ones never"
    );
    again.remove().await.expect("remove");
}

/// Acknowledging messages the subscriber has not read yet (`ack_sequence(u64::MAX)` to skip
/// a backlog) passes over them without a `Lagged`: they were removed by the subscriber's own
/// choice, not dropped by a bound. Both backends reported them as `Lagged(5)` (the bus's
/// reader, and NATS's purge read as a gap).
pub(crate) async fn acknowledged_ahead_is_not_lagged<B: Backend>(b: B) {
    let (name, topic) = (unique("conf.skipper"), unique("conf.backlog"));
    let pattern = format!("{topic}.*");
    drop(
        b.subscribe_durable(&pattern, &name)
            .await
            .expect("subscribe"),
    );
    for i in 0..5 {
        b.publish(&format!("{topic}.old"), i.to_string().as_bytes())
            .await
            .expect("publish");
    }
    let mut sub = b
        .subscribe_durable(&pattern, &name)
        .await
        .expect("attach again");
    sub.ack_sequence(u64::MAX).await.expect("ack the backlog");
    b.publish(&format!("{topic}.new"), b"after")
        .await
        .expect("publish");
    let first = next(&mut sub, "the message after the backlog").await;
    assert_eq!(
        first.map(|m| (m.sequence(), m.payload().to_vec())),
        Ok((6, b"after".to_vec())),
        "the first message after the acknowledged backlog, with no lag before it"
    );
    // Acknowledged ahead after reading one: the rest, already fetched by the reader (the bus
    // reads in batches), are not handed out either.
    for i in 0..5 {
        b.publish(&format!("{topic}.more"), i.to_string().as_bytes())
            .await
            .expect("publish");
    }
    let read = next(&mut sub, "the first of five more").await;
    assert_eq!(read.map(|m| m.sequence()), Ok(7));
    sub.ack_sequence(u64::MAX).await.expect("ack the rest");
    b.publish(&format!("{topic}.new"), b"last")
        .await
        .expect("publish");
    let last = next(&mut sub, "the message after the second backlog").await;
    assert_eq!(
        last.map(|m| (m.sequence(), m.payload().to_vec())),
        Ok((12, b"last".to_vec())),
        "messages fetched before an acknowledgement ahead are not delivered after it"
    );
    sub.remove().await.expect("remove");
}

/// A loss is reported once per subscription, not once per attach: a subscriber handed
/// `Lagged(n)` that goes away without acknowledging gets the unacknowledged messages again
/// on its next attach, but not the `Lagged` (it would count the loss twice; both backends
/// reported it again on every attach). A loss never handed out (the subscriber went away
/// before reading that far) is reported to the next subscriber: never missed.
pub(crate) async fn loss_reported_once_across_attaches<B: Backend>(b: B) {
    let (name, topic) = (unique("conf.once"), unique("conf.once"));
    let pattern = format!("{topic}.*");
    let options = DurableOptions::default().max_messages(3);
    let attach = || b.subscribe_durable_with(&pattern, &name, options.clone());
    let (backend, subject) = (&b, &format!("{topic}.e"));
    let publish = move |from: u32, to: u32| async move {
        for i in from..=to {
            backend
                .publish(subject, i.to_string().as_bytes())
                .await
                .expect("publish");
        }
    };
    drop(attach().await.expect("subscribe"));
    // 1..=8 while away: 6, 7, 8 kept, 1..=5 dropped.
    publish(1, 8).await;
    let mut sub = attach().await.expect("attach");
    assert_eq!(next(&mut sub, "the loss").await.err(), Some(Lagged(5)));
    let six = next(&mut sub, "the first kept").await.expect("no lag");
    assert_eq!(six.sequence(), 6);
    drop(sub); // away without acknowledging anything
    let mut sub = attach().await.expect("attach again");
    let first = next(&mut sub, "after the loss was handed out").await;
    assert_eq!(
        first.map(|m| m.sequence()),
        Ok(6),
        "the unacknowledged message again, the loss not again"
    );
    drop(sub);
    // 9..=13 while away: 11, 12, 13 kept, 6..=10 dropped (6..=8 never acknowledged).
    publish(9, 13).await;
    // Attached and gone before reading: the loss was never handed out.
    drop(attach().await.expect("attach"));
    let mut sub = attach().await.expect("attach again");
    assert_eq!(
        next(&mut sub, "the loss no one was handed").await.err(),
        Some(Lagged(5)),
        "a loss never handed out is reported to the next subscriber"
    );
    let eleven = next(&mut sub, "the first kept").await.expect("no lag");
    assert_eq!(eleven.sequence(), 11);
    drop(sub);
    let mut sub = attach().await.expect("attach again");
    let first = next(&mut sub, "after the second loss was handed out").await;
    assert_eq!(first.map(|m| m.sequence()), Ok(11));
    sub.remove().await.expect("remove");
}

/// Attach (and leave), publish `count` from another process, come back in a third.
async fn away_and_back<B: Backend>(b: &B, max: u64, count: u64) -> (Vec<String>, String) {
    let (name, topic) = (unique("conf.audit"), unique("conf.audit"));
    let pattern = format!("{topic}.*");
    let max = max.to_string();
    let attach = Kid::spawn(b, "durable-attach", &[&pattern, &name, &max]);
    let mut attach = attach;
    attach.expect("attached").await;
    attach.finish().await;
    let mut publisher = Kid::spawn(
        b,
        "publisher",
        &[&format!("{topic}.event"), &count.to_string()],
    );
    publisher.expect("done").await;
    publisher.finish().await;
    let mut reader = Kid::spawn(
        b,
        "durable-read",
        &[
            &pattern,
            &name,
            &max,
            &count.min(max.parse().unwrap_or(0)).to_string(),
        ],
    );
    let mut lags = Vec::new();
    let got = loop {
        let line = reader.line().await;
        if line.starts_with("lagged ") {
            lags.push(line);
        } else {
            break line;
        }
    };
    reader.finish().await;
    // Acknowledged: a later subscriber gets nothing of it.
    let mut after = b
        .subscribe_durable_with(
            &pattern,
            &name,
            crate::retained::DurableOptions::default().max_messages(max.parse().unwrap_or(1)),
        )
        .await
        .expect("attach after");
    let nothing = tokio::time::timeout(
        Duration::from_millis(300),
        futures::StreamExt::next(&mut after),
    )
    .await;
    assert!(
        nothing.is_err(),
        "acknowledged messages came again: {nothing:?}"
    );
    after.remove().await.expect("remove");
    (lags, got)
}

pub(crate) async fn away_for_a_thousand<B: Backend>(b: B) {
    let (lags, got) = away_and_back(&b, 10_000, 1000).await;
    assert!(lags.is_empty(), "nothing dropped: {lags:?}");
    assert_eq!(got, "got 0 999 1000", "all 1,000, in order");
}

pub(crate) async fn overflow_is_lagged<B: Backend>(b: B) {
    let (lags, got) = away_and_back(&b, 100, 1000).await;
    assert_eq!(
        lags,
        ["lagged 900"],
        "the overflow is reported, once, before the rest"
    );
    assert_eq!(got, "got 900 999 100", "the newest 100 kept");
}
