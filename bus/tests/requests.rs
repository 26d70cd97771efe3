//! Request/reply: only registered servers answer, observers get copies, streams end cleanly.

mod support;

use std::time::Duration;

use ephemeral_bus::frame::{self, Frame, Interest, LEN_PREFIX};
use ephemeral_bus::{BusError, MessageKind, ReplyStatus};
use futures::StreamExt;
use support::{eventually, open};

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_of_the_exact_topic_never_take_a_request() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let watcher = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    // Every way of "watching" a request topic, in another peer and in the requester's own.
    let _exact = watcher.subscribe("math.double").await.unwrap();
    let _old_style = watcher.subscribe("_req.math.double").await.unwrap();
    let _everything = watcher.subscribe("*").await.unwrap();
    let _observer = watcher.observe("math.double").await.unwrap();
    let _local_exact = client.subscribe("math.double").await.unwrap();
    let _local_observer = client.observe("*").await.unwrap();
    assert!(matches!(
        client.request("math.double", b"1", LONG).await,
        Err(BusError::NoServer { .. })
    ));
    let _s = server
        .serve("math.double", |m| async move {
            let n: u64 = m.payload_str().unwrap().parse().unwrap();
            (n * 2).to_string().into_bytes()
        })
        .await
        .unwrap();
    for i in 0..100u64 {
        let reply = client
            .request("math.double", i.to_string(), LONG)
            .await
            .unwrap();
        assert_eq!(reply.payload_str(), Some((i * 2).to_string().as_str()));
        assert_eq!(reply.kind(), MessageKind::Reply);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_get_copies_of_requests_and_replies_and_subscribers_get_none() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let watcher = open(tmp.path(), "t").await;
    let mut remote_copies = watcher.observe("math.*").await.unwrap();
    let mut messages = watcher.subscribe("*").await.unwrap();
    let mut server_side_copies = server.observe("math.double").await.unwrap();
    let mut other_topic = watcher.observe("news.*").await.unwrap();
    let _s = server
        .serve("math.double", |m| async move { m.payload().repeat(2) })
        .await
        .unwrap();

    let reply = client.request("math.double", b"ab", LONG).await.unwrap();
    assert_eq!(reply.payload(), b"abab");
    for copies in [&mut remote_copies, &mut server_side_copies] {
        let mut pair = Vec::new();
        for _ in 0..2 {
            let copy = tokio::time::timeout(LONG, copies.next()).await.unwrap();
            pair.push(copy.unwrap().unwrap());
        }
        // Request and reply come from two peers: their copies may arrive in either order.
        pair.sort_by_key(|m| m.kind() == MessageKind::Reply);
        let (request, answer) = (&pair[0], &pair[1]);
        assert_eq!(request.kind(), MessageKind::Request);
        assert_eq!(request.payload(), b"ab");
        assert_eq!(request.topic().as_str(), "math.double");
        assert_eq!(answer.kind(), MessageKind::Reply);
        assert_eq!(answer.reply_status(), Some(ReplyStatus::Ok));
        assert_eq!(answer.correlation(), request.correlation());
        assert_eq!(answer.payload(), b"abab");
    }
    // Plain subscriptions see no request traffic at all, even with `*`.
    client.publish("after", b"").await.unwrap();
    let next = tokio::time::timeout(LONG, messages.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.topic().as_str(), "after");
    assert!(other_topic.try_recv().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_see_every_user_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let publisher = open(tmp.path(), "t").await;
    let watcher = open(tmp.path(), "t").await;
    let mut all = watcher.subscribe("*").await.unwrap();
    let _server = watcher.serve("x", |_| async { Vec::new() }).await.unwrap();
    let topics = [
        "_private.x",
        "\u{fc}nicode.x",
        "_req.x",
        "_reply.x",
        "plain",
    ];
    for topic in topics {
        assert_eq!(publisher.publish(topic, b"").await.unwrap(), 1, "{topic}");
    }
    for topic in topics {
        let m = tokio::time::timeout(LONG, all.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.topic().as_str(), topic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_requesters_spread_over_the_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let b = open(tmp.path(), "t").await;
    let c = open(tmp.path(), "t").await;
    let _sb = b.serve("who", |_| async { b"b".to_vec() }).await.unwrap();
    let _sc = c.serve("who", |_| async { b"c".to_vec() }).await.unwrap();
    // Each requester is a fresh handle making one request, as a CLI call is.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let once = open(tmp.path(), "t").await;
        let reply = once.request("who", b"", LONG).await.unwrap();
        answers.push(reply.payload()[0]);
    }
    assert!(
        answers.contains(&b'b') && answers.contains(&b'c'),
        "every one-shot request went to one server: {answers:?}"
    );
}

/// A handler that can fail (`try_serve`, as NATS's `serve`): its error reaches the requester
/// in another peer and in its own as `ServerFailed` with the error's text, is counted as the
/// handler's error, and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallible_handlers_error_reaches_the_requester_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let requester = open(tmp.path(), "t").await;
    let _double = server
        .try_serve("math.double", |request| async move {
            let text = request.payload_str().unwrap_or_default().to_owned();
            let n: u64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not a number"))?;
            Ok::<_, String>((n * 2).to_string())
        })
        .await
        .unwrap();
    for bus in [&requester, &server] {
        let err = bus.request("math.double", b"x", LONG).await.unwrap_err();
        assert!(
            matches!(&err, BusError::ServerFailed { topic, message }
                if topic == "math.double" && message == "`x` is not a number"),
            "{err:?}"
        );
        let reply = bus.request("math.double", b"21", LONG).await.unwrap();
        assert_eq!(reply.payload_str(), Some("42"));
    }
    // A call is counted once its reply is on its way: the last one may still be counting.
    let counts = || {
        server
            .stats()
            .handlers
            .iter()
            .find(|h| h.name == "math.double")
            .map(|h| (h.calls, h.errors))
    };
    eventually(LONG, || counts() == Some((4, 2))).await;
    assert_eq!(counts(), Some((4, 2)));
}

/// A reply over the max payload is not lost (the requester would wait out its timeout):
/// the requester is answered at once with `ServerFailed` saying what was wrong, from a
/// server in another peer and in its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_max_payload_is_a_prompt_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let small = |dir| ephemeral_bus::Bus::open_with("t", support::options(dir).max_payload(100));
    let server = small(tmp.path()).await.unwrap();
    let requester = small(tmp.path()).await.unwrap();
    let _big = server
        .serve("big", |_| async { vec![7u8; 101] })
        .await
        .unwrap();
    let _fits = server
        .serve("fits", |_| async { vec![7u8; 100] })
        .await
        .unwrap();
    for bus in [&requester, &server] {
        let started = std::time::Instant::now();
        let err = bus.request("big", b"", LONG).await.unwrap_err();
        assert!(started.elapsed() < LONG / 2, "answered, not timed out");
        match err {
            BusError::ServerFailed { topic, message } => {
                assert_eq!(topic, "big");
                assert!(
                    message.contains("101 bytes") && message.contains("100"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            bus.request("fits", b"", LONG)
                .await
                .unwrap()
                .payload()
                .len(),
            100
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_peer_that_no_longer_serves_is_answered_gone() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let tmp = tempfile::tempdir().unwrap();
    let bus = open(tmp.path(), "t").await;
    let sock = bus.dir().join(format!("{:016x}.sock", bus.peer_id()));
    let mut raw = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let me = 0xfeed_u64;
    let mut bytes = Vec::new();
    frame::encode(
        &Frame::Hello {
            peer: me,
            subscriptions: vec![(Interest::Messages, "unrelated".into())],
        },
        &mut bytes,
    );
    // A request for a topic this peer does not serve, addressed to it (as if it had
    // stopped serving after the requester chose it): build one through a real requester.
    let server = open(tmp.path(), "u").await;
    let client = open(tmp.path(), "u").await;
    let mut copies = client.observe("gone.*").await.unwrap();
    let _s = server
        .serve("gone.topic", |_| async { Vec::new() })
        .await
        .unwrap();
    client.request("gone.topic", b"", LONG).await.unwrap();
    let request = copies.next().await.unwrap().unwrap();
    assert_eq!(request.kind(), MessageKind::Request);
    frame::encode(&Frame::Message(request.clone()), &mut bytes);
    // Re-address it to the bus under test: patch the `to` field (right after the route byte).
    let at = bytes.len() - {
        let mut own = Vec::new();
        frame::encode(&Frame::Message(request), &mut own);
        own.len()
    } + LEN_PREFIX
        + 2
        + 8
        + 8
        + 1
        + 8
        + 8
        + 1;
    bytes[at..at + 8].copy_from_slice(&bus.peer_id().to_le_bytes());
    raw.write_all(&bytes).await.unwrap();

    // Read frames until the reply comes back: hello first, then a `Gone` reply.
    let mut got = None;
    let deadline = tokio::time::Instant::now() + LONG;
    while got.is_none() && tokio::time::Instant::now() < deadline {
        let mut len = [0u8; LEN_PREFIX];
        raw.read_exact(&mut len).await.unwrap();
        let mut buf = len.to_vec();
        buf.resize(LEN_PREFIX + u32::from_le_bytes(len) as usize, 0);
        raw.read_exact(&mut buf[LEN_PREFIX..]).await.unwrap();
        if let Ok(Frame::Message(m)) = frame::decode(&buf) {
            got = Some(m);
        }
    }
    let reply = got.expect("a reply frame");
    assert_eq!(reply.kind(), MessageKind::Reply);
    assert_eq!(reply.reply_status(), Some(ReplyStatus::Gone));
    assert!(eventually(LONG, || bus.stats().corrupt_frames == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_bounded_number_queues_a_bounded_number_and_refuses_the_rest() {
    use ephemeral_bus::ServeOptions;
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler_gate = Arc::clone(&gate);
    let _s = server
        .serve_with(
            "slot",
            ServeOptions::default().max_concurrent(2).max_queued(1),
            move |m| {
                let started_tx = started_tx.clone();
                let gate = Arc::clone(&handler_gate);
                async move {
                    started_tx.send(m.payload().to_vec()).unwrap();
                    gate.acquire().await.unwrap().forget();
                    m.payload().to_vec()
                }
            },
        )
        .await
        .unwrap();

    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4u8 {
        let client = client.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let result = client.request("slot", [i], LONG).await;
            done_tx.send(result).unwrap();
        });
    }
    // Two run, one waits in the queue, the fourth is refused at once.
    let first = tokio::time::timeout(LONG, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, Err(BusError::ServerBusy { .. })),
        "{first:?}"
    );
    for _ in 0..2 {
        tokio::time::timeout(LONG, started.recv()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(started.try_recv().is_err(), "a third handler started");
    assert!(done.try_recv().is_err(), "an admitted request ended early");

    gate.add_permits(3);
    let mut answered = 0;
    for _ in 0..3 {
        let result = tokio::time::timeout(LONG, done.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result.unwrap().payload().len(), 1);
        answered += 1;
    }
    assert_eq!(answered, 3);
    assert!(
        started.try_recv().is_ok(),
        "the queued request ran once room freed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_server_stops_it_at_once_and_answers_what_it_held() {
    use ephemeral_bus::ServeOptions;

    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let s = server
        .serve_with(
            "stuck",
            ServeOptions::default().max_concurrent(1),
            move |_| {
                let started_tx = started_tx.clone();
                async move {
                    started_tx.send(()).unwrap();
                    std::future::pending::<Vec<u8>>().await
                }
            },
        )
        .await
        .unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { client.request("stuck", b"", Duration::from_secs(600)).await },
            )
        })
        .collect();
    tokio::time::timeout(LONG, started.recv()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    // The running one and the queued one both hear at once that the server is gone.
    for request in waiting {
        let result = tokio::time::timeout(LONG, request).await.unwrap().unwrap();
        assert!(
            matches!(result, Err(BusError::PeerGone { .. })),
            "{result:?}"
        );
    }
    assert!(
        eventually(LONG, || client
            .peer_list()
            .iter()
            .all(|p| p.serves.is_empty()))
        .await,
        "the server unregistered"
    );
    assert!(matches!(
        client.request("stuck", b"", LONG).await,
        Err(BusError::NoServer { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_replies_ends_with_the_servers_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let _s = server
        .serve_stream("count.to", |m| {
            let n: u8 = m.payload_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            futures::stream::iter((1..=n).map(|i| vec![i]))
        })
        .await
        .unwrap();
    for (client, n) in [(&client, 5u8), (&server, 3), (&client, 0)] {
        let replies: Vec<_> = client
            .request_stream("count.to", n.to_string(), LONG)
            .await
            .unwrap()
            .collect()
            .await;
        let items: Vec<u8> = replies
            .into_iter()
            .map(|r| r.unwrap().payload()[0])
            .collect();
        assert_eq!(items, (1..=n).collect::<Vec<_>>());
    }
    // A plain request to a stream server gets its first item.
    let first = client.request("count.to", b"4", LONG).await.unwrap();
    assert_eq!(first.payload(), [1]);
    // A plain server answers a stream request with one item, then the stream ends.
    let _plain = server
        .serve("plain", |_| async { b"one".to_vec() })
        .await
        .unwrap();
    let replies: Vec<_> = client
        .request_stream("plain", b"", LONG)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].as_ref().unwrap().payload(), b"one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_with_an_error_when_its_server_fails_stops_or_stalls() {
    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let _boom = server
        .serve_stream("boom", |_| {
            futures::stream::iter([vec![1], vec![2]])
                .chain(futures::stream::once(async { panic!("stream exploded") }))
        })
        .await
        .unwrap();
    let replies: Vec<_> = client
        .request_stream("boom", b"", LONG)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(replies[0].is_ok() && replies[1].is_ok());
    match &replies[2] {
        Err(BusError::ServerFailed { message, .. }) => assert!(message.contains("exploded")),
        other => panic!("expected ServerFailed, got {other:?}"),
    }

    // Two items, then nothing: the wait for the next one is bounded by the timeout.
    let _stall = server
        .serve_stream("stall", |_| {
            futures::stream::iter([vec![1], vec![2]]).chain(futures::stream::pending())
        })
        .await
        .unwrap();
    let replies: Vec<_> = client
        .request_stream("stall", b"", Duration::from_millis(300))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(replies.len(), 3);
    assert!(
        matches!(replies[2], Err(BusError::Timeout { .. })),
        "{replies:?}"
    );

    // The server stops mid-stream: the stream ends with PeerGone after what arrived.
    let stopping = server
        .serve_stream("stop", |_| {
            futures::stream::iter([vec![1]]).chain(futures::stream::pending())
        })
        .await
        .unwrap();
    let mut replies = client
        .request_stream("stop", b"", Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(replies.next().await.unwrap().unwrap().payload(), [1]);
    drop(stopping);
    let last = tokio::time::timeout(LONG, replies.next()).await.unwrap();
    assert!(
        matches!(last, Some(Err(BusError::PeerGone { .. }))),
        "{last:?}"
    );
    assert!(replies.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_reply_stream_stops_the_servers_handler() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Sets its flag when the server drops the handler's stream.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    let _s = server
        .serve_stream("forever", move |_| {
            let guard = Dropped(Arc::clone(&flag));
            futures::stream::unfold((0u64, guard), |(i, guard)| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((i.to_le_bytes().to_vec(), (i + 1, guard)))
            })
        })
        .await
        .unwrap();
    let mut replies = client.request_stream("forever", b"", LONG).await.unwrap();
    for _ in 0..3 {
        replies.next().await.unwrap().unwrap();
    }
    assert!(!stopped.load(Ordering::SeqCst));
    drop(replies);
    assert!(
        eventually(LONG, || stopped.load(Ordering::SeqCst)).await,
        "the server kept producing for a requester that left"
    );
}

/// A streaming server whose items nobody waits for any more is told to stop, however the
/// requester stopped waiting. Before, only dropping a `ReplyStream` did: a plain `request`
/// to a streaming server took its first item and left the server streaming to nobody for
/// ever (each item counted in the requester's `late_replies`), and a `request_stream` or a
/// `request` that timed out, or a `request` future dropped mid-wait, did the same. Now the
/// requester's peer answers an item nobody waits for with a cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_that_stops_waiting_stops_the_servers_stream() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the handler streams the server has dropped.
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let server = open(tmp.path(), "t").await;
    let client = open(tmp.path(), "t").await;
    let stopped = Arc::new(AtomicUsize::new(0));
    let mut servers = Vec::new();
    // Endless; the first item comes at once on `fast`, after the requests below gave up
    // on `slow`.
    for (topic, first) in [("fast", Duration::ZERO), ("slow", Duration::from_secs(1))] {
        let flag = Arc::clone(&stopped);
        let s = server
            .serve_stream(topic, move |_| {
                let guard = Dropped(Arc::clone(&flag));
                futures::stream::unfold((0u64, guard), move |(i, guard)| async move {
                    let wait = if i == 0 {
                        first
                    } else {
                        Duration::from_millis(5)
                    };
                    tokio::time::sleep(wait).await;
                    Some((i.to_le_bytes().to_vec(), (i + 1, guard)))
                })
            })
            .await
            .unwrap();
        servers.push(s);
    }
    let stops = |n: usize| {
        let stopped = Arc::clone(&stopped);
        move || stopped.load(Ordering::SeqCst) == n
    };

    // A plain request: the first item is the answer, and the stream stops.
    let first = client.request("fast", b"", LONG).await.unwrap();
    assert_eq!(first.payload(), 0u64.to_le_bytes());
    assert!(
        eventually(LONG, stops(1)).await,
        "the server kept streaming after the one answer"
    );
    // A plain request that times out.
    let timed_out = client
        .request("slow", b"", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(timed_out, BusError::Timeout { .. }), "{timed_out}");
    assert!(eventually(LONG, stops(2)).await, "a timed-out request");
    // A stream that times out waiting for a reply, and is still held.
    let mut replies = client
        .request_stream("slow", b"", Duration::from_millis(50))
        .await
        .unwrap();
    assert!(matches!(
        replies.next().await,
        Some(Err(BusError::Timeout { .. }))
    ));
    assert!(eventually(LONG, stops(3)).await, "a timed-out stream");
    // A request future dropped while it waits.
    let waiting = client.request("slow", b"", LONG);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .is_err()
    );
    assert!(eventually(LONG, stops(4)).await, "a dropped request");
    drop((replies, servers));
}
