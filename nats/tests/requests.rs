//! Requests and replies over queue groups, against a real server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;

use ephemeral::HeaderValue;
use ephemeral_nats::testing::NatsServer;
use ephemeral_nats::{Nats, NatsError, Outgoing};

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_request_is_answered_across_connections() {
    let server = NatsServer::start().await;
    let a = Nats::connect(&server.url()).await.unwrap();
    let b = Nats::connect(&server.url()).await.unwrap();
    let server_side = a
        .serve("math.double", |request| async move {
            let n: u64 = request
                .payload_str()
                .unwrap_or("")
                .parse()
                .map_err(|_| "not a number")?;
            let factor = match request.header("factor") {
                Some(HeaderValue::Int(f)) => *f as u64,
                _ => 2,
            };
            Ok::<_, &str>((n * factor).to_string())
        })
        .await
        .unwrap();
    let reply = b.request("math.double", "21", LONG).await.unwrap();
    assert_eq!(reply.payload_str(), Some("42"));
    assert_eq!(reply.topic(), "math.double");
    let reply = b
        .request_with(
            Outgoing::new("math.double")
                .unwrap()
                .payload("7")
                .header("factor", 3),
            LONG,
        )
        .await
        .unwrap();
    assert_eq!(reply.payload_str(), Some("21"));
    assert_eq!(server_side.handled(), 2);
    assert_eq!(server_side.topic(), "math.double");
}

#[tokio::test]
async fn nobody_serving_is_no_server_at_once() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let started = Instant::now();
    // A long timeout: the answer must not wait for it.
    let error = nats
        .request("nobody.home", "", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, NatsError::NoServer { topic } if topic == "nobody.home"),
        "{error:?}"
    );
    assert!(error.to_string().contains("Nats::serve"));

    // A server that was dropped no longer answers, and a request through the same
    // connection right after the drop is `NoServer` at once: it never reaches the dropped
    // server to wait out its timeout (it did, most of the time, when the unsubscription
    // waited for the runtime to get to the server's task).
    for _ in 0..20 {
        let gone = nats
            .serve("nobody.home", |_| async { Ok::<_, &str>("here") })
            .await
            .unwrap();
        assert!(nats.request("nobody.home", "", LONG).await.is_ok());
        drop(gone);
        let error = nats.request("nobody.home", "", LONG).await.unwrap_err();
        assert!(matches!(error, NatsError::NoServer { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn a_stopped_server_is_no_server_from_every_connection() {
    let server = NatsServer::start().await;
    let serving = Nats::connect(&server.url()).await.unwrap();
    let asking = Nats::connect(&server.url()).await.unwrap();
    for _ in 0..20 {
        let gone = serving
            .serve("nobody.home", |_| async { Ok::<_, &str>("here") })
            .await
            .unwrap();
        assert!(asking.request("nobody.home", "", LONG).await.is_ok());
        gone.stop().await;
        let error = asking.request("nobody.home", "", LONG).await.unwrap_err();
        assert!(matches!(error, NatsError::NoServer { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn a_failing_or_panicking_handler_is_handler_failed() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let failing = nats
        .serve("fails", |_| async {
            Err::<Vec<u8>, _>("the database is down")
        })
        .await
        .unwrap();
    let _panicking = nats
        .serve("panics", |_| async {
            if true {
                panic!("boom");
            }
            Ok::<Vec<u8>, &str>(Vec::new())
        })
        .await
        .unwrap();
    let error = nats.request("fails", "", LONG).await.unwrap_err();
    assert!(
        matches!(&error, NatsError::HandlerFailed { topic, message } if topic == "fails" && message == "the database is down"),
        "{error:?}"
    );
    let error = nats.request("panics", "", LONG).await.unwrap_err();
    assert!(
        matches!(&error, NatsError::HandlerFailed { message, .. } if message.contains("boom")),
        "{error:?}"
    );
    // The panicking server keeps serving.
    assert!(matches!(
        nats.request("panics", "", LONG).await,
        Err(NatsError::HandlerFailed { .. })
    ));
    assert_eq!((failing.handled(), failing.failed()), (1, 1));
}

#[tokio::test]
async fn a_slow_handler_is_a_timeout() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let _slow = nats
        .serve("slow", |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, &str>("late")
        })
        .await
        .unwrap();
    let error = nats
        .request("slow", "", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NatsError::Timeout { topic, after } if topic == "slow" && *after == Duration::from_millis(200)),
        "{error:?}"
    );
}

#[tokio::test]
async fn servers_share_requests_each_handled_once() {
    let server = NatsServer::start().await;
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for count in &counts {
        let nats = Nats::connect(&server.url()).await.unwrap();
        let count = Arc::clone(count);
        servers.push(
            nats.serve("work", move |_| {
                let count = Arc::clone(&count);
                async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, &str>("done")
                }
            })
            .await
            .unwrap(),
        );
        handles.push(nats);
    }
    let client = Nats::connect(&server.url()).await.unwrap();
    for _ in 0..60 {
        client.request("work", "", LONG).await.unwrap();
    }
    let per_server: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(per_server.iter().sum::<usize>(), 60, "{per_server:?}");
    // NATS picks at random: with 60 requests each of 3 servers gets some (the chance one
    // gets none is 3 × (2/3)^60 ≈ 1e-10).
    assert!(per_server.iter().all(|&n| n > 0), "{per_server:?}");
}

#[tokio::test]
async fn a_reply_too_large_for_the_server_is_a_handler_failure_not_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("small.conf");
    std::fs::write(&conf, "max_payload: 4096\n").unwrap();
    let server = NatsServer::start_with(&["-c", conf.to_str().unwrap()]).await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let _big = nats
        .serve("big", |_| async { Ok::<_, &str>(vec![0u8; 8192]) })
        .await
        .unwrap();
    let error = nats.request("big", "", LONG).await.unwrap_err();
    assert!(
        matches!(&error, NatsError::HandlerFailed { message, .. } if message.contains("max_payload of 4096")),
        "{error:?}"
    );
}

#[tokio::test]
async fn one_server_handles_requests_concurrently() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    // Every handler waits until all 16 are running at once: handled one at a time, the
    // first would wait for ever and every request would time out.
    const AT_ONCE: usize = 16;
    let barrier = Arc::new(tokio::sync::Barrier::new(AT_ONCE));
    let _server = nats
        .serve("together", move |_| {
            let barrier = Arc::clone(&barrier);
            async move {
                barrier.wait().await;
                Ok::<_, &str>("done")
            }
        })
        .await
        .unwrap();
    let requests = (0..AT_ONCE).map(|_| nats.request("together", "", LONG));
    for reply in futures::future::join_all(requests).await {
        assert_eq!(reply.unwrap().payload_str(), Some("done"));
    }
}

/// A server whose handler slots are all busy, with `extra` more requests waiting in its
/// subscription's buffer: the server, the gate that holds its handlers, and the replies
/// of every request sent (the first `MAX_CONCURRENT_REQUESTS` are being handled).
async fn a_full_server(
    server: &NatsServer,
    serving: &Nats,
    asking: &Nats,
    extra: usize,
) -> (
    ephemeral_nats::Server,
    Arc<tokio::sync::Semaphore>,
    Vec<tokio::task::JoinHandle<Result<ephemeral_nats::Message, NatsError>>>,
) {
    use ephemeral_nats::MAX_CONCURRENT_REQUESTS as SLOTS;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let handler = {
        let gate = Arc::clone(&gate);
        let running = Arc::clone(&running);
        move |_| {
            let gate = Arc::clone(&gate);
            running.fetch_add(1, Ordering::SeqCst);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, &str>("done")
            }
        }
    };
    let served = serving.serve("busy", handler).await.unwrap();
    // An observer sees every request as the server routes it (a plain subscription next
    // to the queue group).
    let observer = async_nats::connect(server.url()).await.unwrap();
    let mut seen = observer.subscribe("ephemeral.q.busy").await.unwrap();
    // A round trip through the server on the observer's connection, so the server has its
    // subscription before any request is sent (`flush` only writes: the server reads each
    // connection on its own, and could route a request from `asking` first).
    let mut ready = observer.subscribe("observer.ready").await.unwrap();
    observer.publish("observer.ready", "".into()).await.unwrap();
    tokio::time::timeout(LONG, futures::StreamExt::next(&mut ready))
        .await
        .expect("the observer's round trip");
    let ask = |asking: &Nats| {
        let asking = asking.clone();
        // Far longer than the test waits: an unanswered request shows as a test timeout.
        tokio::spawn(async move { asking.request("busy", "", Duration::from_secs(120)).await })
    };
    let mut replies: Vec<_> = (0..SLOTS).map(|_| ask(asking)).collect();
    support::eventually("every handler slot busy", || {
        running.load(Ordering::SeqCst) == SLOTS
    })
    .await;
    replies.extend((0..extra).map(|_| ask(asking)));
    for _ in 0..SLOTS + extra {
        tokio::time::timeout(LONG, futures::StreamExt::next(&mut seen))
            .await
            .expect("the observer sees every request");
    }
    // The serving connection's round trip: what the server routed to it before (the
    // waiting requests) is in its subscription's buffer.
    // (A message to itself: `flush` only writes, it waits for no answer.)
    let client = serving.client();
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(LONG, futures::StreamExt::next(&mut echo))
        .await
        .expect("the serving connection's round trip");
    assert_eq!(running.load(Ordering::SeqCst), SLOTS);
    (served, gate, replies)
}

/// Requests waiting in a server's buffer (every handler slot busy) were dropped with the
/// server: each requester waited out its whole timeout. Dropping the server now answers
/// each at once with `ServerStopped` (its handler never ran: safe to send again), and the
/// requests being handled finish and are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_in_a_dropped_server_are_refused_at_once() {
    let server = NatsServer::start().await;
    let serving = Nats::connect(&server.url()).await.unwrap();
    let asking = Nats::connect(&server.url()).await.unwrap();
    let (served, gate, mut replies) = a_full_server(&server, &serving, &asking, 4).await;
    drop(served);
    for waiting in replies.split_off(ephemeral_nats::MAX_CONCURRENT_REQUESTS) {
        let reply = tokio::time::timeout(LONG, waiting)
            .await
            .expect("a waiting request is answered when its server is dropped")
            .unwrap();
        let error = reply.unwrap_err();
        assert!(
            matches!(&error, NatsError::ServerStopped { topic } if topic == "busy"),
            "{error:?}"
        );
        assert!(error.to_string().contains("send it again"), "{error}");
    }
    gate.add_permits(ephemeral_nats::MAX_CONCURRENT_REQUESTS);
    for running in replies {
        let reply = tokio::time::timeout(LONG, running).await.unwrap().unwrap();
        assert_eq!(reply.unwrap().payload(), b"done");
    }
}

/// `stop` is the graceful end: requests this server had already received, waiting for a
/// handler slot, are handled and answered before it returns (they were dropped, and
/// their requesters waited out their timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_handles_the_requests_waiting_in_the_server_before_it_returns() {
    let server = NatsServer::start().await;
    let serving = Nats::connect(&server.url()).await.unwrap();
    let asking = Nats::connect(&server.url()).await.unwrap();
    let (served, gate, replies) = a_full_server(&server, &serving, &asking, 4).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let stopping = tokio::spawn(served.stop());
    gate.add_permits(ephemeral_nats::MAX_CONCURRENT_REQUESTS + 4);
    tokio::time::timeout(LONG, stopping)
        .await
        .expect("stop returns once every request is answered")
        .unwrap();
    for reply in replies {
        let reply = tokio::time::timeout(LONG, reply)
            .await
            .expect("every request received is answered")
            .unwrap();
        assert_eq!(reply.unwrap().payload(), b"done");
        handled.fetch_add(1, Ordering::SeqCst);
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        ephemeral_nats::MAX_CONCURRENT_REQUESTS + 4
    );
    // Stopped: nobody serves the topic any more.
    let error = asking.request("busy", "", LONG).await.unwrap_err();
    assert!(matches!(error, NatsError::NoServer { .. }), "{error:?}");
}

/// `stop` while the connection is down cannot wait for the unsubscription to complete
/// (the client sends it only once the connection is back): it returns at once and ends
/// as a drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_while_the_connection_is_down_returns_at_once() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let served = nats
        .serve("offline", |_| async { Ok::<_, &str>("ok") })
        .await
        .unwrap();
    server.stop().await;
    support::eventually("the client sees the connection down", || {
        !nats.is_connected()
    })
    .await;
    tokio::time::timeout(LONG, served.stop())
        .await
        .expect("stop returns while the connection is down");
}
