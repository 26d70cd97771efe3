//! Room scenarios.

use std::time::{Duration, Instant};

use ephemeral::Lagged;

use super::child::{Kid, RoomCheck};
use super::{Backend, next, unique};
use crate::retained::{RoomOptions, StoreError};

/// The age below NATS's 100 ms stream floor the short-age scenarios use, and how long they
/// wait for a message to be older than it.
pub(crate) const SHORT_AGE: Duration = Duration::from_millis(90);
pub(crate) const OLDER: Duration = Duration::from_millis(150);

pub(crate) async fn history_then_live<B: Backend>(b: B) {
    let room = b
        .room(
            &unique("conf.lobby"),
            RoomOptions::default().max_messages(3),
        )
        .await
        .expect("open a room");
    for i in 1..=5 {
        room.send(format!("m{i}")).await.expect("send");
    }
    let mut late = room.join().await.expect("join");
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = next(&mut late, "the history")
            .await
            .expect("no lag in the history");
        got.push(m.payload_str().unwrap_or_default().to_owned());
    }
    assert_eq!(got, ["m3", "m4", "m5"], "the room keeps its last three");
    let seq = room.send(b"m6").await.expect("send");
    let live = next(&mut late, "a live message").await.expect("no lag");
    assert_eq!((live.sequence(), live.payload()), (seq, &b"m6"[..]));
}

/// A joiner's start is fixed when `join` returns: messages the count bound drops before
/// its first read (kept then, or sent since) are told as `Lagged(n)`, then the rest come,
/// no gap, no duplicate.
pub(crate) async fn joiner_told_what_the_count_bound_dropped<B: Backend>(b: B) {
    let room = b
        .room(
            &unique("conf.count"),
            RoomOptions::default().max_messages(3),
        )
        .await
        .expect("open a room");
    room.send(b"h1").await.expect("send");
    let mut joined = room.join().await.expect("join");
    // Sent after `join` returned, before the joiner reads anything: the room keeps the
    // last three, so h1 and live0..live2 are dropped unread.
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(room.send(format!("live{i}")).await.expect("send"));
    }
    assert_eq!(
        next(&mut joined, "the lag").await,
        Err(Lagged(4)),
        "h1 and live0..live2 were owed"
    );
    for (i, seq) in (3..6).zip(&seqs[3..]) {
        let m = next(&mut joined, "a kept message")
            .await
            .expect("no more lag");
        assert_eq!(
            (m.sequence(), m.payload_str()),
            (*seq, Some(format!("live{i}").as_str()))
        );
    }
}

/// The same with an age (below NATS's 100 ms floor, so both backends check it on this
/// machine's clock): a message sent after `join` returned that is too old when the joiner
/// first reads is told as `Lagged(1)`, then the young one comes. Every owed message is
/// delivered or counted, exactly once.
pub(crate) async fn joiner_told_what_the_age_bound_dropped<B: Backend>(b: B) {
    let room = b
        .room(
            &unique("conf.aged"),
            RoomOptions::default().max_age(SHORT_AGE),
        )
        .await
        .expect("open a room");
    let mut joined = room.join().await.expect("join");
    room.send(b"sent-after-join").await.expect("send");
    tokio::time::sleep(OLDER).await;
    let sent = Instant::now();
    let later = room.send(b"later").await.expect("send");
    let (mut lagged, mut got) = (0, None);
    while got.is_none() && lagged < 2 {
        match next(&mut joined, "the joiner").await {
            Ok(m) => got = Some((m.sequence(), m.payload().to_vec())),
            Err(Lagged(n)) => lagged += n,
        }
    }
    match got {
        Some(m) => {
            assert_eq!(lagged, 1, "the first message was owed and aged out unread");
            assert_eq!(m, (later, b"later".to_vec()), "only the young message");
        }
        // A slow machine: the young one aged out before it was read, too.
        None => assert!(
            lagged == 2 && sent.elapsed() > SHORT_AGE,
            "lagged {lagged}: the young message was not handed out"
        ),
    }
}

/// `clear` removes the history and says how many; the room stays and its sequence numbers
/// carry on. A joiner from before the clear gets every message it was owed either
/// delivered (it may have fetched some already) or counted in a `Lagged`, exactly once,
/// then the next message sent; a joiner from after it starts with that message.
pub(crate) async fn clear_removes_the_history<B: Backend>(b: B) {
    let room = b
        .room(&unique("conf.cleared"), RoomOptions::default())
        .await
        .expect("open a room");
    for i in 1..=3 {
        room.send(format!("old{i}")).await.expect("send");
    }
    let mut before = room.join().await.expect("join");
    assert_eq!(room.clear().await.expect("clear"), 3, "three were kept");
    assert_eq!(room.clear().await.expect("clear again"), 0, "nothing left");
    let mut after = room.join().await.expect("join after the clear");
    let seq = room.send(b"new").await.expect("send after the clear");
    assert_eq!(seq, 4, "sequence numbers carry on");
    let m = next(&mut after, "the joiner after the clear")
        .await
        .expect("no lag: the cleared messages were gone before it joined");
    assert_eq!((m.sequence(), m.payload()), (4, &b"new"[..]));
    let (mut accounted, mut got) = (0, None);
    while got.is_none() {
        match next(&mut before, "the joiner from before the clear").await {
            Ok(m) if m.sequence() < 4 => accounted += 1,
            Ok(m) => got = Some(m.sequence()),
            Err(Lagged(n)) => accounted += n,
        }
    }
    assert_eq!(
        (accounted, got),
        (3, Some(4)),
        "every owed message delivered or counted once, then the new one"
    );
}

pub(crate) async fn four_senders<B: Backend>(b: B) {
    const SENDERS: usize = 4;
    const EACH: u64 = 1000;
    let total = SENDERS as u64 * EACH;
    let name = unique("conf.chat");
    let options = RoomOptions::default().max_messages(100_000);
    let room = b.room(&name, options.clone()).await.expect("open a room");
    let mut early = room.join().await.expect("join");
    let mut senders = Vec::new();
    for id in 0..SENDERS {
        let mut kid = Kid::spawn(&b, "sender", &[&name, &id.to_string(), &EACH.to_string()]);
        kid.expect("ready").await;
        senders.push(kid);
    }
    for kid in &mut senders {
        kid.tell("go").await;
    }
    // Joins while the four send: its history and its live messages meet somewhere in the
    // middle of the sends.
    let mut racing = Kid::spawn(
        &b,
        "joiner",
        &[&name, &total.to_string(), &SENDERS.to_string()],
    );
    let mut check = RoomCheck::new(SENDERS);
    while check.count < total {
        match next(&mut early, "the early joiner").await {
            Ok(m) => check
                .see(m.sequence(), m.payload_str().unwrap_or_default())
                .unwrap_or_else(|why| panic!("early joiner: {why}")),
            Err(Lagged(n)) => panic!("early joiner lagged {n}"),
        }
    }
    for mut kid in senders {
        kid.expect("done").await;
        kid.finish().await;
    }
    racing.expect("joined").await;
    racing.expect(&format!("ok {total}")).await;
    racing.finish().await;
    // After everything: all 4,000 as history.
    let mut late = room.join().await.expect("join");
    let mut check = RoomCheck::new(SENDERS);
    while check.count < total {
        match next(&mut late, "the late joiner").await {
            Ok(m) => check
                .see(m.sequence(), m.payload_str().unwrap_or_default())
                .unwrap_or_else(|why| panic!("late joiner: {why}")),
            Err(Lagged(n)) => panic!("late joiner lagged {n}"),
        }
    }
}

/// A max age of zero is refused alike; one below NATS's 100 ms stream floor is accepted and
/// keeps its meaning: a joiner is never handed a message older than it.
pub(crate) async fn short_max_age<B: Backend>(b: B) {
    let zero = b
        .room(
            &unique("conf.zero"),
            RoomOptions::default().max_age(Duration::ZERO),
        )
        .await;
    assert!(
        matches!(zero, Err(StoreError::ZeroMaxAge)),
        "a zero max age: {:?}",
        zero.err()
    );
    let name = unique("conf.brief");
    let options = RoomOptions::default().max_age(SHORT_AGE);
    let room = b
        .room(&name, options.clone())
        .await
        .expect("a short max age");
    assert_eq!(room.options().get_max_age(), SHORT_AGE);
    let again = b.room(&name, options).await.expect("open again");
    assert_eq!(again.options().get_max_age(), SHORT_AGE, "kept as asked");
    room.send(b"old").await.expect("send");
    tokio::time::sleep(OLDER).await;
    let mut join = room.join().await.expect("join");
    let sent = Instant::now();
    room.send(b"new").await.expect("send");
    match tokio::time::timeout(Duration::from_secs(2), futures::StreamExt::next(&mut join)).await {
        // Gone before the joiner came: not a lag, never handed out.
        Ok(Some(Ok(m))) => assert_eq!(m.payload(), b"new", "only the young message"),
        other => assert!(
            sent.elapsed() > SHORT_AGE,
            "a young message was not handed out: {other:?}"
        ),
    }
}
