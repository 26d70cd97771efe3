//! Publish and subscribe against a real server.

mod support;

use std::time::Duration;

use bytes::Bytes;
use ephemeral::{Buffer, HeaderValue};
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Lagged, Nats, NatsError, NatsOptions, Outgoing};
use support::{message, next, nothing_more};

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn names_nats_cannot_carry_arrive_intact() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let mut all = nats.subscribe("*").await.unwrap();
    let names = [
        "a..b",
        ".a",
        "a.",
        "a.>",
        "50%.off",
        "é.x",
        "a:b.c",
        "a+b",
        "$x.y",
        "plain.name",
    ];
    for name in names {
        nats.publish(name, name).await.unwrap();
    }
    for name in names {
        let m = message(&mut all).await;
        assert_eq!(m.topic(), name);
        assert_eq!(m.payload_str(), Some(name));
    }
    nothing_more(&mut all, QUIET).await;
}

#[tokio::test]
async fn patterns_deliver_what_they_match_once() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    // `job.?` is inexact on NATS (`job.>`), filtered locally; the two alternatives overlap
    // (`job.1` matches both) and must not deliver twice.
    let mut jobs = nats.subscribe("job.?,job.+").await.unwrap();
    assert_eq!(jobs.subjects(), ["ephemeral.s.job.>"]);
    let mut one_segment = nats.subscribe("news.+").await.unwrap();
    assert_eq!(one_segment.subjects(), ["ephemeral.s.news.*"]);

    for topic in [
        "job.1", "job.12", "job.1.2", "job..", "news.a", "news.a.b", "news.",
    ] {
        nats.publish(topic, topic).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(message(&mut jobs).await.topic().to_string());
    }
    // `job..` matches `job.?` (`?` is any one character, a dot too).
    assert_eq!(got, ["job.1", "job.12", "job.."]);
    nothing_more(&mut jobs, QUIET).await;
    assert_eq!(message(&mut one_segment).await.topic(), "news.a");
    assert_eq!(message(&mut one_segment).await.topic(), "news.");
    nothing_more(&mut one_segment, QUIET).await;
}

#[tokio::test]
async fn headers_payload_and_ttl_round_trip() {
    let server = NatsServer::start().await;
    let a = Nats::connect(&server.url()).await.unwrap();
    let b = Nats::connect(&server.url()).await.unwrap();
    let mut sub = b.subscribe("orders.*").await.unwrap();
    let payload: Vec<u8> = (0..=255).collect();
    a.publish_with(
        Outgoing::new("orders.created")
            .unwrap()
            .payload(payload.clone())
            .header("attempt", 2)
            .header("ok", true)
            .header("ratio", 0.25)
            .header("note", "50% off\r\nsecond line ")
            .header("bus.pub", "a user header named like the transport's")
            .header("é:key", "x")
            .ttl(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let m = message(&mut sub).await;
    assert_eq!(m.payload(), &payload[..]);
    assert_eq!(m.header("attempt"), Some(&HeaderValue::Int(2)));
    assert_eq!(m.header("ok"), Some(&HeaderValue::Bool(true)));
    assert_eq!(m.header("ratio"), Some(&HeaderValue::Float(0.25)));
    assert_eq!(
        m.header("note"),
        Some(&HeaderValue::from("50% off\r\nsecond line "))
    );
    assert_eq!(
        m.header("bus.pub"),
        Some(&HeaderValue::from(
            "a user header named like the transport's"
        ))
    );
    assert_eq!(m.header("é:key"), Some(&HeaderValue::from("x")));
    assert_eq!(m.headers().len(), 6);
    // Handed out with the time it has left (as on the bus), counted from its arrival.
    let left = m.ttl().unwrap();
    assert!(
        left <= Duration::from_secs(30) && left > Duration::from_secs(20),
        "{left:?}"
    );
    assert_eq!(m.id(), 1);
    assert_ne!(m.origin(), 0);
    let age = std::time::SystemTime::now()
        .duration_since(m.timestamp())
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "{age:?}");
}

#[tokio::test]
async fn expired_messages_are_never_delivered() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let mut sub = nats.subscribe("t.*").await.unwrap();
    nats.publish_with(
        Outgoing::new("t.short")
            .unwrap()
            .ttl(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    nats.publish_with(Outgoing::new("t.zero").unwrap().ttl(Duration::ZERO))
        .await
        .unwrap();
    nats.publish_with(
        Outgoing::new("t.long")
            .unwrap()
            .ttl(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    // Read only after the short one ran out (it arrived long before).
    support::eventually("all three to arrive", || {
        let s = sub.stats();
        s.expired >= 1 || s.delivered > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(message(&mut sub).await.topic(), "t.long");
    nothing_more(&mut sub, QUIET).await;
    let stats = sub.stats();
    assert_eq!((stats.delivered, stats.expired, stats.lagged), (1, 2, 0));
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_and_says_so() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let mut sub = nats
        .subscribe_with("burst", Buffer::bounded(2).unwrap())
        .await
        .unwrap();
    for i in 1..=5 {
        nats.publish("burst", i.to_string()).await.unwrap();
    }
    support::eventually("the burst to be read", || sub.stats().lagged == 3).await;
    assert_eq!(next(&mut sub).await, Err(Lagged(3)));
    assert_eq!(message(&mut sub).await.payload_str(), Some("4"));
    assert_eq!(message(&mut sub).await.payload_str(), Some("5"));
}

#[tokio::test]
async fn a_gap_in_a_publishers_numbers_is_reported_as_lag() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let mut sub = nats.subscribe("gap.*").await.unwrap();
    // Stand in for a publisher whose messages 3 and 4 were lost on the way, and for a
    // second publisher on the same topic, and another topic of the first: no false gaps.
    let raw = nats.client();
    for (topic, publisher, n) in [
        ("gap.a", "00000000000000aa", 1),
        ("gap.a", "00000000000000aa", 2),
        ("gap.b", "00000000000000aa", 7),
        ("gap.a", "00000000000000bb", 1),
        ("gap.a", "00000000000000aa", 5),
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("bus.pub", format!("{publisher}:{n}").as_str());
        raw.publish_with_headers(
            format!("ephemeral.s.{topic}"),
            headers,
            Bytes::from(n.to_string()),
        )
        .await
        .unwrap();
    }
    for expected in ["1", "2", "7", "1"] {
        assert_eq!(message(&mut sub).await.payload_str(), Some(expected));
    }
    assert_eq!(next(&mut sub).await, Err(Lagged(2)));
    let fifth = message(&mut sub).await;
    assert_eq!(
        (fifth.payload_str(), fifth.id(), fifth.origin()),
        (Some("5"), 5, 0xaa)
    );
    assert_eq!(sub.stats().lagged, 2);
}

#[tokio::test]
async fn foreign_subjects_are_counted_and_dropped() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let mut sub = nats.subscribe("*").await.unwrap();
    let raw = nats.client();
    // `%41` is not something the encoding writes; a bare `>` token neither.
    raw.publish("ephemeral.s.a.%41", Bytes::new())
        .await
        .unwrap();
    raw.publish("ephemeral.s.a.>", Bytes::new()).await.unwrap();
    // A plain NATS message on a good subject is delivered, unnumbered.
    raw.publish("ephemeral.s.plain", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let m = message(&mut sub).await;
    assert_eq!((m.topic().as_str(), m.id(), m.origin()), ("plain", 0, 0));
    assert_eq!(sub.stats().undecodable, 2);
}

#[tokio::test]
async fn prefixes_keep_applications_apart() {
    let server = NatsServer::start().await;
    let shop = Nats::connect_with(&server.url(), NatsOptions::default().prefix("shop"))
        .await
        .unwrap();
    let other = Nats::connect(&server.url()).await.unwrap();
    let mut shop_sub = shop.subscribe("*").await.unwrap();
    let mut other_sub = other.subscribe("*").await.unwrap();
    shop.publish("orders.created", "shop").await.unwrap();
    other.publish("orders.created", "other").await.unwrap();
    assert_eq!(message(&mut shop_sub).await.payload_str(), Some("shop"));
    assert_eq!(message(&mut other_sub).await.payload_str(), Some("other"));
    nothing_more(&mut shop_sub, QUIET).await;
    nothing_more(&mut other_sub, QUIET).await;
}

#[tokio::test]
async fn a_prefix_that_extends_another_is_kept_apart_from_it() {
    let server = NatsServer::start().await;
    let connect = |prefix: &'static str| {
        let url = server.url();
        async move {
            Nats::connect_with(&url, NatsOptions::default().prefix(prefix))
                .await
                .unwrap()
        }
    };
    let (app, eu) = (connect("app").await, connect("app.eu").await);
    let mut app_sub = app.subscribe("*").await.unwrap();
    let mut eu_sub = eu.subscribe("*").await.unwrap();
    // Every subject is the prefix, then a token no prefix segment may be (`s` for
    // messages), so subjects of different prefixes never meet: `app.eu.s.x` against
    // `app.s.eu.s.x` here.
    eu.publish("x", "from app.eu").await.unwrap();
    app.publish("eu.s.x", "from app").await.unwrap();
    assert_eq!(message(&mut app_sub).await.payload_str(), Some("from app"));
    assert_eq!(
        message(&mut eu_sub).await.payload_str(),
        Some("from app.eu")
    );
    nothing_more(&mut app_sub, QUIET).await;
    nothing_more(&mut eu_sub, QUIET).await;

    // Requests: a server of `eu.q.x` under `app` does not answer `x` under `app.eu`.
    let _served = app
        .serve("eu.q.x", |_| async { Ok::<_, &str>("app") })
        .await
        .unwrap();
    let error = eu
        .request("x", "", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, NatsError::NoServer { .. }), "{error:?}");

    // A prefix with a segment the crate puts after prefixes is refused, saying why: with
    // `app.s`, its message `x` and `app`'s message `s.x` would both be `app.s.s.x`.
    for reserved in ["app.s", "s", "app.q.eu", "i", "x.wq", "room", "a.kvstats"] {
        let error = Nats::connect_with(&server.url(), NatsOptions::default().prefix(reserved))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NatsError::BadPrefix { prefix, .. } if prefix == reserved),
            "{reserved}: {error:?}"
        );
        assert!(error.to_string().contains("kvstats"), "{error}");
    }
}

#[tokio::test]
async fn too_large_is_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("small.conf");
    std::fs::write(&conf, "max_payload: 4096\n").unwrap();
    let server = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    assert_eq!(nats.max_payload(), 4096);
    let mut sub = nats.subscribe("big").await.unwrap();
    let error = nats.publish("big", vec![0u8; 4096]).await.unwrap_err();
    let NatsError::PayloadTooLarge { len, max } = error else {
        panic!("{error:?}");
    };
    assert!(len > 4096);
    assert_eq!(max, 4096);
    // A refused message uses no number: the next one is 1, with no lag.
    nats.publish("big", vec![0u8; 1000]).await.unwrap();
    let m = message(&mut sub).await;
    assert_eq!(m.id(), 1);
    let error = nats
        .request("big", vec![0u8; 5000], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, NatsError::PayloadTooLarge { max: 4096, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_topics_and_empty_patterns_are_refused() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    assert!(matches!(
        nats.publish("a b", "x").await,
        Err(NatsError::Name(_))
    ));
    assert!(matches!(
        nats.publish("a.*", "x").await,
        Err(NatsError::Name(_))
    ));
    for pattern in ["", " , ", "a b"] {
        let error = nats.subscribe(pattern).await.unwrap_err();
        assert!(
            matches!(error, NatsError::EmptyPattern { .. }),
            "{pattern:?}: {error:?}"
        );
    }
}
