//! Work queues in one process: push and dedupe, settle by terminal state, dead letters,
//! the janitor, deferral, a server restart.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, OperationContext, OperationState, SignalSink};
use ephemeral_nats::Nats;
use ephemeral_nats::queue::{
    IntakeOptions, Job, ORPHAN_REASON, Outcome, QueueError, QueueStats, WorkQueue, WorkQueueOptions,
};
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

/// Polls the queue's stats until `done` holds, failing after `within`.
async fn wait_stats(
    queue: &WorkQueue,
    within: Duration,
    done: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    poll_stats(queue, within, done)
        .await
        .unwrap_or_else(|stats| panic!("timed out; last stats {stats:?}"))
}

/// Polls the queue's stats until `done` holds: `Err` with the last stats after `within`.
async fn poll_stats(
    queue: &WorkQueue,
    within: Duration,
    done: impl Fn(&QueueStats) -> bool,
) -> Result<QueueStats, QueueStats> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let stats = queue.stats().await.expect("stats");
        if done(&stats) {
            return Ok(stats);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(stats);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ok_body()
-> impl Fn(Job, OperationContext) -> futures::future::Ready<Result<(), String>> + Send + Sync + 'static
{
    |_job: Job, _ctx: OperationContext| futures::future::ready(Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_pushed_twice_is_one_job() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("dedupe", WorkQueueOptions::default())
        .await
        .unwrap();
    let first = queue.push("order-1", "a").await.unwrap();
    let second = queue.push("order-1", "a").await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    assert_eq!(queue.stats().await.unwrap().messages, 1);

    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(job.id().to_owned());
                async { Ok::<_, String>(()) }
            },
            EphemeralOptions::default().max_concurrency(2),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), ["order-1"]);
    assert_eq!((stats.pulled, stats.acked), (1, 1));
    assert_eq!(coordinator.stats().completed, 1);
}

/// A value serde_json cannot encode is refused as such: it used to be reported as "job
/// payload is not the expected JSON: key must be a string", the message of a payload that
/// does not decode, though nothing had been decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_json_cannot_encode_is_refused_as_an_encoding_error() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("unencodable", WorkQueueOptions::default())
        .await
        .unwrap();
    let value = std::collections::HashMap::from([((1, 2), "tuple keys")]);
    let error = queue.push_json("tuple-map", &value).await.unwrap_err();
    assert!(
        matches!(&error, QueueError::Encode { id, .. } if id == "tuple-map"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("cannot be pushed as JSON"), "{text}");
    assert!(!text.contains("not the expected JSON"), "{text}");
    assert_eq!(queue.stats().await.unwrap().messages, 0);
}

/// A push to a server whose JetStream storage is full fails at once (no retries until the
/// push timeout: the same push would fail again) with an error that says storage is what
/// is missing, not that the server "refused the request as made".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_full_jetstream_says_storage_is_full() {
    let server =
        NatsServer::start_with_config("jetstream { max_file_store: 2MB, max_memory_store: 2MB }")
            .await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("full", WorkQueueOptions::default())
        .await
        .unwrap();
    let big = "x".repeat(100_000);
    let mut pushed = 0;
    let error = loop {
        match queue.push(&format!("job-{pushed}"), big.clone()).await {
            Ok(_) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 100, "2 MB of storage took {pushed} jobs of 100 kB");
    };
    assert!(pushed > 0, "the first job fits: {error:?}");
    let text = error.to_string();
    assert!(text.contains("no storage left"), "{text}");
    assert!(text.contains("max_file_store"), "{text}");
}

/// A queue's claims bucket has one time to live, fixed when it is created. A second
/// opener asking for another used to get a `Claims` whose `ttl()` said 1 s while its
/// claims lasted the bucket's hour (a claim was still held 2.5 s later); it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_opened_with_another_ttl_than_the_buckets_are_refused() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("claimed", WorkQueueOptions::default())
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    let claims = queue.claims(hour).await.unwrap();
    assert!(claims.claim("job-1").await.unwrap());
    let error = queue
        .claims(Duration::from_secs(1))
        .await
        .expect_err("another ttl");
    assert!(
        matches!(&error, QueueError::Incompatible { problem, .. } if problem.contains("3600s")),
        "{error:?}"
    );
    // The same ttl binds the same claims.
    let again = queue.claims(hour).await.unwrap();
    assert_eq!(again.ttl(), hour);
    assert!(!again.claim("job-1").await.unwrap());
}

/// NATS trims header values, and a job id travels as one: ` a` used to be taken for a
/// duplicate of `a` (silently not queued) and `a ` delivered as `a`. Such ids are refused;
/// whitespace inside an id round-trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_with_whitespace_at_either_end_are_refused() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("spaced", WorkQueueOptions::default())
        .await
        .unwrap();
    assert!(!queue.push("a", "1").await.unwrap().duplicate);
    for id in [" a", "a ", "\u{a0}a", " "] {
        let error = queue.push(id, "2").await.expect_err(id);
        assert!(
            matches!(&error, QueueError::BadId { id: told, .. } if told == id),
            "{id:?}: {error:?}"
        );
        assert!(error.to_string().contains("whitespace"), "{error}");
    }
    assert!(!queue.push("a b", "3").await.unwrap().duplicate);
    assert_eq!(queue.stats().await.unwrap().messages, 2);
    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let (_coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(job.id().to_owned());
                async { Ok::<_, String>(()) }
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    intake.shutdown().await;
    assert_eq!(*ran.lock().unwrap(), ["a", "a b"]);
}

/// `validate` checks every value the server would refuse: a duplicate window or a
/// dead-letter max age below its 100 ms minimum used to pass, then fail as an untyped
/// JetStream error when the queue was opened. The bounds themselves, and durations past
/// what JetStream carries, open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_the_server_would_refuse_are_refused_by_validate() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    for (options, option) in [
        (
            WorkQueueOptions::default().duplicate_window(Duration::from_millis(1)),
            "duplicate_window",
        ),
        (
            WorkQueueOptions::default().dead_letter_max_age(Duration::from_millis(50)),
            "dead_letter_max_age",
        ),
    ] {
        let error = options.validate().expect_err(option);
        assert!(
            matches!(&error, QueueError::Options { option: o, .. } if *o == option),
            "{error:?}"
        );
        assert!(error.to_string().contains("at least 100 ms"), "{error}");
        let opened = nats.work_queue("refused", options).await;
        assert!(
            matches!(&opened, Err(QueueError::Options { option: o, .. }) if *o == option),
            "{:?}",
            opened.err()
        );
    }
    for (i, options) in [
        WorkQueueOptions::default()
            .duplicate_window(Duration::from_millis(100))
            .dead_letter_max_age(Duration::from_millis(100)),
        WorkQueueOptions::default()
            .duplicate_window(Duration::MAX)
            .dead_letter_max_age(Duration::MAX)
            .max_age(Duration::MAX),
    ]
    .into_iter()
    .enumerate()
    {
        options.validate().unwrap();
        let queue = nats
            .work_queue(&format!("bounds-{i}"), options)
            .await
            .unwrap_or_else(|e| panic!("options {i}: {e}"));
        assert!(!queue.push("j", "x").await.unwrap().duplicate);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_are_acked_and_gone() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("basic", WorkQueueOptions::default())
        .await
        .unwrap();
    for i in 0..200 {
        queue
            .push(&format!("job-{i}"), format!("{i}"))
            .await
            .unwrap();
    }
    let (coordinator, intake) = queue
        .work_coordinator(
            ok_body(),
            EphemeralOptions::default().max_concurrency(4),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(
        (stats.pulled, stats.acked, stats.redelivered),
        (200, 200, 0)
    );
    assert_eq!(coordinator.stats().completed, 200);
    // A node of concurrency 4 holds at most 8 jobs (4 running, 4 waiting), so 200 jobs
    // took at least 25 answered pull requests, each with its wait from sending to its
    // first job.
    assert!(
        (25..=stats.pull_requests).contains(&stats.pulls_answered),
        "{stats:?}"
    );
    assert!(stats.pull_wait > Duration::ZERO, "{stats:?}");
    let mean = stats.mean_pull_wait().expect("pulls were answered");
    assert!(
        mean > Duration::ZERO && mean <= stats.pull_wait,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_job_is_dead_lettered_after_max_deliver() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let options = WorkQueueOptions::default()
        .ack_wait(Duration::from_secs(2))
        .max_deliver(3)
        .backoff([Duration::from_millis(100)]);
    let queue = nats.work_queue("failing", options).await.unwrap();
    queue.push("poison", "x").await.unwrap();
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&deliveries);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(job.delivered());
                async { Err::<(), _>("always fails") }
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    let stats = wait_stats(&queue, support::PATIENCE, |s| {
        s.dead == 1 && s.messages == 0
    })
    .await;
    assert_eq!(stats.held, 0);
    let intake_stats = intake.shutdown().await;
    assert_eq!(*deliveries.lock().unwrap(), [1, 2, 3]);
    let failed = coordinator.failed();
    assert_eq!(failed.len(), 3);
    assert!(
        failed
            .iter()
            .all(|op| op.error.as_deref() == Some("always fails"))
    );
    assert_eq!((intake_stats.nacked, intake_stats.dead_lettered), (2, 1));

    let dead: Vec<_> = queue.dead_letters().await.unwrap().collect().await;
    assert_eq!(dead.len(), 1);
    let letter = dead.into_iter().next().unwrap().unwrap();
    assert_eq!(&*letter.id, "poison");
    assert_eq!(
        (
            letter.deliveries,
            letter.reason.as_str(),
            letter.error.as_str()
        ),
        (3, "failed", "always fails")
    );
    assert_eq!(letter.payload.as_ref(), b"x");
    assert!(queue.remove_dead_letter(letter.sequence).await.unwrap());
    assert_eq!(queue.stats().await.unwrap().dead, 0);
}

/// A dead letter carries the payload and headers saying why (the error cut to 1024 bytes):
/// a push keeps room for them, so every job that is queued can be dead-lettered. One that
/// fit a push but not its dead letter used to stay in the work stream for ever.
/// A worker that dies holding a job's last delivery cannot dead-letter it; the server keeps
/// it for ever, undelivered, and only tells an advisory. An intake's janitor moves it to
/// the dead letters (reason `max deliveries`) and out of the work stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_dead_letters_a_job_whose_worker_died_on_its_last_delivery() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let options = WorkQueueOptions::default()
        .max_deliver(1)
        .ack_wait(Duration::from_secs(1));
    let queue = nats.work_queue("orphaned-worker", options).await.unwrap();
    queue.push("last-chance", "payload").await.unwrap();
    // The worker that dies: takes the job's only delivery and never answers.
    let consumer: async_nats::jetstream::consumer::PullConsumer = nats
        .jetstream()
        .get_stream(queue.stream_name())
        .await
        .unwrap()
        .get_consumer("work")
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let taken = batch.next().await.expect("the job").unwrap();
    assert_eq!(taken.info().unwrap().delivered, 1);
    drop((batch, taken));
    // A live node: its janitor hears the server give up on the job after ack_wait.
    let (_coordinator, intake) = queue
        .work_coordinator(
            ok_body(),
            EphemeralOptions::default(),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.dead == 1 && s.messages == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!((stats.pulled, stats.dead_lettered), (0, 0), "{stats:?}");
    let dead: Vec<_> = queue.dead_letters().await.unwrap().collect().await;
    let letter = dead.into_iter().next().unwrap().unwrap();
    assert_eq!(&*letter.id, "last-chance");
    assert_eq!(letter.reason, "max deliveries");
    assert_eq!(letter.deliveries, 1);
    assert_eq!(letter.stream_sequence, 1);
    assert_eq!(&letter.payload[..], b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pushed_job_fits_its_dead_letter() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let options = WorkQueueOptions::default()
        .ack_wait(Duration::from_secs(1))
        .max_deliver(1);
    let queue = nats.work_queue("big", options).await.unwrap();
    let max_payload = nats.max_payload();
    // Fits a push (payload, id header), not a dead letter: refused, naming the limit.
    let error = queue
        .push("big", vec![b'x'; max_payload - 35])
        .await
        .expect_err("a job that could never be dead-lettered");
    let QueueError::JobTooLarge {
        len,
        max,
        max_payload: told,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*len, *told), (max_payload - 35, max_payload));
    let max = *max;
    assert!(
        (max_payload - 1400..max_payload - 1300).contains(&max),
        "{max}"
    );
    let text = error.to_string();
    assert!(
        text.contains("too large") && text.contains(&format!("at most {max} bytes")),
        "{text}"
    );
    assert!(matches!(
        queue.push("big", vec![b'x'; max + 1]).await,
        Err(QueueError::JobTooLarge { .. })
    ));
    // The largest that fits, failing with an error text far past the 1024 bytes kept.
    queue.push("big", vec![b'x'; max]).await.unwrap();
    queue.push("small", "s").await.unwrap();
    let (_coordinator, intake) = queue
        .work_coordinator(
            |_job: Job, _ctx: OperationContext| async { Err::<(), _>("é".repeat(3000)) },
            EphemeralOptions::default().max_concurrency(2),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.dead == 2 && s.messages == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!((stats.dead_lettered, stats.abandoned), (2, 0));
    let mut dead: Vec<_> = queue
        .dead_letters()
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    dead.sort_by_key(|letter| letter.payload.len());
    assert_eq!(&*dead[1].id, "big");
    assert_eq!(dead[1].payload.len(), max);
    assert_eq!(dead[1].error, "é".repeat(512), "cut to 1024 bytes");
}

/// Queue `x`'s dead-letter stream is `…_WQ_x_DEAD`, queue `x_DEAD`'s work stream: such a
/// name is refused, and a dead-letter stream set up for anything else is not adopted (it
/// used to be: queue `x` took `x_DEAD`'s work stream for its dead letters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_never_adopts_another_stream_for_its_dead_letters() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let error = nats
        .work_queue("x_DEAD", WorkQueueOptions::default())
        .await
        .expect_err("a name ending in _DEAD");
    assert!(
        matches!(&error, QueueError::BadName { name, .. } if name == "x_DEAD"),
        "{error:?}"
    );
    assert!(error.to_string().contains("ends in `_DEAD`"), "{error}");
    // A stream of the dead-letter stream's name made for something else (here, what
    // queue `x_DEAD`'s work stream looked like): refused, and left as it is.
    let js = nats.jetstream();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EPHEMERAL_WQ_y_DEAD".to_owned(),
        subjects: vec!["ephemeral.wq.y_DEAD.j".to_owned()],
        retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("ephemeral.wq.y_DEAD.j", "other job".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let error = nats
        .work_queue("y", WorkQueueOptions::default())
        .await
        .expect_err("another stream as its dead-letter stream");
    assert!(
        matches!(&error, QueueError::Incompatible { stream, problem }
            if stream == "EPHEMERAL_WQ_y_DEAD" && problem.contains("not a dead-letter stream")),
        "{error:?}"
    );
    let mut other = js.get_stream("EPHEMERAL_WQ_y_DEAD").await.unwrap();
    assert_eq!(other.info().await.unwrap().state.messages, 1);
    // A dead-letter stream on other subjects is refused too.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "EPHEMERAL_WQ_z_DEAD".to_owned(),
        subjects: vec!["elsewhere.z".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let error = nats
        .work_queue("z", WorkQueueOptions::default())
        .await
        .expect_err("another limits stream as its dead-letter stream");
    assert!(
        matches!(&error, QueueError::Incompatible { problem, .. }
            if problem.contains("elsewhere.z")),
        "{error:?}"
    );
    // Names that only look alike are fine.
    nats.work_queue("y_dead", WorkQueueOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_cancel_terminates_the_job_with_a_signal() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("dropped", WorkQueueOptions::default())
        .await
        .unwrap();
    queue.push("unwanted", "x").await.unwrap();
    let sink = SignalSink::default();
    let (coordinator, intake) = queue
        .work_coordinator(
            |_job: Job, ctx: OperationContext| async move {
                ctx.token().cancelled().await;
                Err::<(), _>("cancelled")
            },
            EphemeralOptions::default()
                .max_concurrency(1)
                .signals(sink.clone()),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    support::eventually("the job to run", || coordinator.running().len() == 1).await;
    let id = coordinator.running()[0].id;
    assert!(coordinator.cancel_operation(id));
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(
        (stats.terminated, stats.dead_lettered, stats.nacked),
        (1, 0, 0)
    );
    let dropped = sink.latest("nats.job.dropped").expect("the dropped signal");
    assert_eq!(dropped.key(), Some("unwanted"));
    assert_eq!(queue.stats().await.unwrap().dead, 0);
}

/// A coordinator that closes (here `cancel`) stops its intake. It used to keep pulling: on a
/// plain queue with `max_deliver` 1, 4 of 6 jobs pushed afterwards were taken only to be
/// handed back, so all 4 became dead letters without ever running; on a keyed queue 5 of 6
/// stayed held for ever (kept alive, never settled: `Intake::shutdown` never returned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_coordinator_stops_its_intake_and_leaves_the_jobs_to_others() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    for keyed in [false, true] {
        let options = WorkQueueOptions::default().max_deliver(1);
        let (name, options) = if keyed {
            ("closed-keyed", options.partitions(1))
        } else {
            ("closed-plain", options)
        };
        let queue = nats.work_queue(name, options).await.unwrap();
        let intake_options = || IntakeOptions::default().pull_expiry(Duration::from_millis(100));
        let concurrency = EphemeralOptions::default().max_concurrency(2);
        let (cancel, first): (Box<dyn Fn()>, _) = if keyed {
            let (c, i) = queue
                .keyed_coordinator(ok_body(), concurrency.clone(), intake_options())
                .await
                .unwrap();
            (Box::new(move || c.cancel()), i)
        } else {
            let (c, i) = queue
                .work_coordinator(ok_body(), concurrency.clone(), intake_options())
                .await
                .unwrap();
            (Box::new(move || c.cancel()), i)
        };
        cancel();
        support::eventually("the intake to stop", || first.is_stopped()).await;
        for n in 0..6 {
            let id = format!("job-{n}");
            if keyed {
                queue.push_keyed("k", &id, "x").await.unwrap();
            } else {
                queue.push(&id, "x").await.unwrap();
            }
        }
        let ran = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ran);
        let body = move |job: Job, _ctx: OperationContext| {
            seen.lock()
                .unwrap()
                .push((job.id().to_owned(), job.delivered()));
            async { Ok::<_, String>(()) }
        };
        let second = if keyed {
            queue
                .keyed_coordinator(body, concurrency, intake_options())
                .await
                .unwrap()
                .1
        } else {
            queue
                .work_coordinator(body, concurrency, intake_options())
                .await
                .unwrap()
                .1
        };
        wait_stats(&queue, support::PATIENCE, |s| {
            s.messages == 0 && s.held == 0
        })
        .await;
        let second = second.shutdown().await;
        let first = tokio::time::timeout(support::PATIENCE, first.shutdown())
            .await
            .expect("the closed node holds nothing");
        let mut ran = ran.lock().unwrap().clone();
        if !keyed {
            ran.sort();
        }
        let expected: Vec<(String, u32)> = (0..6).map(|n| (format!("job-{n}"), 1)).collect();
        assert_eq!(ran, expected, "keyed: {keyed}");
        assert_eq!((first.pulled, second.acked), (0, 6), "keyed: {keyed}");
        assert_eq!(queue.stats().await.unwrap().dead, 0, "keyed: {keyed}");
    }
}

/// A defer rule on the coordinator's options is kept beside the intake's: it used to be
/// replaced by the intake's, so with `circuit.open` held a job pulled while only
/// `circuit.*` deferred ran at once. With a resume rule the two cannot be merged: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_defer_rule_on_the_coordinator_is_kept_beside_the_intakes() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("two-rules", WorkQueueOptions::default())
        .await
        .unwrap();
    let sink = SignalSink::default();
    let circuit = sink.hold("circuit.open").unwrap();
    let options = EphemeralOptions::default()
        .max_concurrency(2)
        .signals(sink.clone())
        .defer_on("circuit.*");
    let error = queue
        .work_coordinator(
            ok_body(),
            options.clone().resume_on("circuit.closed"),
            IntakeOptions::default().defer_on("maintenance.*"),
        )
        .await
        .expect_err("two defer rules and a resume rule");
    assert!(
        matches!(
            error,
            QueueError::Options {
                option: "defer_on",
                ..
            }
        ),
        "{error:?}"
    );
    let (coordinator, intake) = queue
        .work_coordinator(
            ok_body(),
            options,
            IntakeOptions::default().defer_on("maintenance.*"),
        )
        .await
        .unwrap();
    queue.push("while-open", "x").await.unwrap();
    // The intake pulls (only `maintenance.*` stops it); the coordinator defers the start.
    support::eventually("the job to wait, deferred", || {
        coordinator
            .snapshot()
            .iter()
            .any(|s| s.state == OperationState::Deferred)
    })
    .await;
    assert_eq!(intake.stats().started, 0);
    drop(circuit);
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!((stats.pulled, stats.acked), (1, 1));
}

/// An intake whose coordinator has no pending room (paused, `max_pending` 1 below the 2
/// jobs it holds) still stops at once. It used to wait inside `enqueue` for room that
/// never came: `Intake::shutdown` had not returned after 5 s, and nothing was handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_intake_hands_back_at_once_while_its_coordinator_has_no_room() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("no-room", WorkQueueOptions::default())
        .await
        .unwrap();
    let (coordinator, intake) = queue
        .work_coordinator(
            ok_body(),
            EphemeralOptions::default()
                .max_concurrency(1)
                .max_pending(1),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    coordinator.pause();
    for n in 0..3 {
        queue.push(&format!("job-{n}"), "x").await.unwrap();
    }
    support::eventually("two jobs held", || intake.stats().pulled == 2).await;
    let stats = tokio::time::timeout(support::PATIENCE, intake.shutdown())
        .await
        .expect("the intake stops though the coordinator has no room");
    assert_eq!((stats.pulled, stats.nacked, stats.held), (2, 2, 0));
    assert_eq!(coordinator.stats().completed, 0);
    let after = queue.stats().await.unwrap();
    assert_eq!((after.messages, after.dead), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_by_a_signal_is_handed_back_and_runs_later() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("cancelled", WorkQueueOptions::default())
        .await
        .unwrap();
    let sink = SignalSink::default();
    let _hold = sink.hold("maintenance.db").unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let settled = Arc::clone(&outcomes);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(job.delivered());
                async { Ok::<_, String>(()) }
            },
            EphemeralOptions::default()
                .max_concurrency(1)
                .signals(sink.clone())
                .cancel_on("maintenance.*"),
            IntakeOptions::default()
                .cancel_delay(Duration::from_millis(300))
                .on_settled(move |s| settled.lock().unwrap().push(s.outcome.clone())),
        )
        .await
        .unwrap();
    queue.push("later", "x").await.unwrap();
    support::eventually("a cancellation", || !coordinator.cancelled().is_empty()).await;
    assert!(matches!(
        coordinator.cancelled()[0].state,
        OperationState::Cancelled(ephemeral::CancelReason::Signal(_))
    ));
    drop(_hold);
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    intake.shutdown().await;
    // Cancelled at admission (the body never ran), handed back with the delay, then run.
    assert_eq!(*runs.lock().unwrap(), [2]);
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(
        outcomes[0],
        Outcome::Nacked(Some(Duration::from_millis(300)))
    );
    assert_eq!(outcomes[1], Outcome::Acked);
}

/// A node that stalls past `ack_wait` (stopped, swapped out, a body blocking its runtime)
/// has lost its leases: the server may have given its held jobs to another node. A held
/// job that had not started is given up, not started late next to the other node's run:
/// it used to start the moment the stall ended (SIGSTOPped worker for 3 s, ack_wait 1 s:
/// 4 of its 4 waiting jobs ran on delivery 1 after another node had run and acked them).
/// The runtime here stalls itself: the first body blocks its only thread for 2.5 × ack_wait.
#[tokio::test]
async fn a_waiting_job_whose_lease_ran_out_in_a_stall_is_given_up_not_started() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let ack_wait = Duration::from_secs(1);
    let queue = nats
        .work_queue("stalled", WorkQueueOptions::default().ack_wait(ack_wait))
        .await
        .unwrap();
    queue.push("blocker", "x").await.unwrap();
    queue.push("waiting", "y").await.unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&runs);
    let go = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&go);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock()
                    .unwrap()
                    .push((job.id().to_owned(), job.delivered()));
                let gate = Arc::clone(&gate);
                async move {
                    if job.id() == "blocker" && job.delivered() == 1 {
                        gate.notified().await;
                        // The stall: no ping, no tick, nothing runs on this runtime.
                        std::thread::sleep(ack_wait * 5 / 2);
                    }
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default().prefetch(1),
        )
        .await
        .unwrap();
    support::eventually("both jobs held", || intake.held() == 2).await;
    go.notify_one();
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    let runs = runs.lock().unwrap().clone();
    let waiting: Vec<u32> = runs
        .iter()
        .filter(|(id, _)| id == "waiting")
        .map(|&(_, d)| d)
        .collect();
    assert_eq!(
        waiting,
        [2],
        "the waiting job ran only once it was delivered again: {runs:?}"
    );
    assert!(stats.abandoned >= 1, "{stats:?}");
    let given_up = coordinator.cancelled();
    assert!(
        given_up.iter().any(|op| matches!(
            &op.state,
            OperationState::Cancelled(ephemeral::CancelReason::Admission(why)) if why.contains("lease")
        )),
        "{given_up:?}"
    );
}

#[tokio::test]
async fn a_push_the_server_never_confirms_says_it_may_be_queued() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let options = WorkQueueOptions::default().push_timeout(Duration::from_millis(500));
    let queue = nats.work_queue("unconfirmed", options).await.unwrap();
    server.kill();
    let error = queue.push("j1", "x").await.unwrap_err();
    assert!(
        matches!(&error, ephemeral_nats::queue::QueueError::PushUnconfirmed { queue, id, .. }
            if queue == "unconfirmed" && id == "j1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("same id"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_delay_past_what_jetstream_carries_is_clamped_not_wrapped() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("huge-delay", WorkQueueOptions::default())
        .await
        .unwrap();
    let sink = SignalSink::default();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let settled = Arc::clone(&outcomes);
    let (coordinator, intake) = queue
        .work_coordinator(
            |_job: Job, ctx: OperationContext| async move {
                ctx.token().cancelled().await;
                Err::<(), _>("stopped")
            },
            EphemeralOptions::default()
                .max_concurrency(1)
                .signals(sink.clone())
                .cancel_running_on("stop.*"),
            IntakeOptions::default()
                .cancel_delay(Duration::MAX)
                .on_settled(move |s| settled.lock().unwrap().push(s.outcome.clone())),
        )
        .await
        .unwrap();
    queue.push("h1", "x").await.unwrap();
    support::eventually("the job running", || coordinator.stats().running == 1).await;
    sink.raise("stop.now").unwrap();
    support::eventually("the job settled", || !outcomes.lock().unwrap().is_empty()).await;
    // Unclamped, the delay overflowed the server's nanoseconds and the job came back at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(coordinator.stats().accepted, 1, "the job came back");
    let max = Duration::from_nanos(i64::MAX as u64);
    assert_eq!(outcomes.lock().unwrap()[0], Outcome::Nacked(Some(max)));
    assert_eq!(
        queue.stats().await.unwrap().messages,
        1,
        "the cluster keeps it"
    );
    drop(intake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defer_pauses_intake_without_acking() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let ack_wait = Duration::from_secs(1);
    let queue = nats
        .work_queue("deferred", WorkQueueOptions::default().ack_wait(ack_wait))
        .await
        .unwrap();
    for i in 0..100 {
        queue.push(&format!("job-{i}"), "x").await.unwrap();
    }
    let sink = SignalSink::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let body_gate = Arc::clone(&gate);
    let (coordinator, intake) = queue
        .work_coordinator(
            move |_job: Job, _ctx: OperationContext| {
                let gate = Arc::clone(&body_gate);
                async move {
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default()
                .max_concurrency(4)
                .signals(sink.clone()),
            IntakeOptions::default().defer_on("backpressure.*"),
        )
        .await
        .unwrap();
    support::eventually("four bodies running", || coordinator.running().len() == 4).await;
    let hold = sink.hold("backpressure.db").unwrap();
    tokio::time::sleep(ack_wait).await;
    let settled = queue.stats().await.unwrap();
    let pulled = intake.stats().pulled;
    assert!(settled.held <= 8, "{settled:?}");
    // Three times ack_wait: nothing more pulled, nothing acknowledged or redelivered.
    for _ in 0..15 {
        tokio::time::sleep(ack_wait / 5).await;
        let stats = queue.stats().await.unwrap();
        assert_eq!(stats.messages, 100, "{stats:?}");
        assert_eq!(stats.redelivered, 0, "{stats:?}");
        assert!(stats.held <= 8, "{stats:?}");
        assert_eq!(intake.stats().pulled, pulled);
    }
    let during = intake.stats();
    assert_eq!((during.acked, during.nacked, during.redelivered), (0, 0, 0));
    assert!(during.pings > 0, "{during:?}");
    drop(hold);
    gate.add_permits(100);
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!(
        (stats.acked, stats.redelivered, stats.leases_lost),
        (100, 0, 0)
    );
    assert_eq!(coordinator.stats().completed, 100);
}

/// A job the server counts as acknowledged (at or below its consumer's ack floor) but keeps
/// in the work stream is never delivered again, and the queue never drains. nats-server
/// 2.15.1 leaves such jobs when it restarts under load (an ack it answered while shutting
/// down, the stream's removal lost: 2 probe runs in 40). Made here by moving the consumer
/// past two queued jobs; an intake moves them to the dead letters, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_left_below_the_ack_floor_are_moved_to_the_dead_letters() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let ack_wait = Duration::from_secs(1);
    let queue = nats
        .work_queue("orphans", WorkQueueOptions::default().ack_wait(ack_wait))
        .await
        .unwrap();
    for i in 1..=3 {
        queue.push(&format!("job-{i}"), "x").await.unwrap();
    }
    // The queue's consumer reset: its ack floor past jobs 1 and 2.
    let stream = nats
        .jetstream()
        .get_stream(queue.stream_name())
        .await
        .unwrap();
    stream.reset_consumer("work", Some(3)).await.unwrap();
    let stuck = queue.stats().await.unwrap();
    assert_eq!((stuck.messages, stuck.queued, stuck.held), (3, 1, 0));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let body_ran = Arc::clone(&ran);
    let (_coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| {
                body_ran.lock().unwrap().push(job.id().to_owned());
                futures::future::ready(Ok::<_, String>(()))
            },
            EphemeralOptions::default(),
            IntakeOptions::default(),
        )
        .await
        .unwrap();
    let drained = wait_stats(&queue, support::PATIENCE, |s| s.messages == 0).await;
    assert_eq!((drained.dead, drained.held), (2, 0), "{drained:?}");
    assert_eq!(*ran.lock().unwrap(), ["job-3"], "orphans are not run");
    let mut dead: Vec<_> = queue
        .dead_letters()
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    dead.sort_by_key(|letter| letter.stream_sequence);
    let ids: Vec<&str> = dead.iter().map(|letter| &*letter.id).collect();
    assert_eq!(ids, ["job-1", "job-2"]);
    assert!(dead.iter().all(|letter| letter.reason == ORPHAN_REASON));
    assert!(dead[0].error.contains("acknowledged"), "{}", dead[0].error);
    let stats = intake.shutdown().await;
    assert_eq!((stats.orphaned, stats.acked), (2, 1), "{stats:?}");
}

/// A keyed node holds no more than `max_concurrency + prefetch`, and keeps its partition's
/// pin while full. It used to renew its standing one-job request (which kept the pin) each
/// time it was answered, whatever it held: with a blocked body, room for 2 and one
/// partition it took all 30 jobs. Now, while full, it sends only keep-alives that name the
/// pin and can deliver nothing; watched for 3 pin timeouts, it holds 2 and keeps its pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_keyed_node_keeps_its_pin_without_taking_more_jobs() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let pin_timeout = Duration::from_secs(1);
    let queue = nats
        .work_queue(
            "bounded",
            WorkQueueOptions::default()
                .partitions(1)
                .pin_timeout(pin_timeout),
        )
        .await
        .unwrap();
    for i in 0..30 {
        queue
            .push_keyed(&format!("k{i}"), &format!("job-{i}"), "x")
            .await
            .unwrap();
    }
    let stream_name = {
        let mut names = nats.jetstream().stream_names();
        let mut found = None;
        while let Some(name) = names.next().await {
            let name = name.unwrap();
            if name.ends_with("_WQ_bounded") {
                found = Some(name);
            }
        }
        found.expect("the work stream")
    };
    let stream = nats.jetstream().get_stream(&stream_name).await.unwrap();
    let pinned = || {
        let stream = stream.clone();
        async move {
            let info = stream.consumer_info("part-0").await.unwrap();
            info.priority_groups
                .first()
                .and_then(|g| g.pinned_client_id.clone())
        }
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let body_gate = Arc::clone(&gate);
    let (coordinator, intake) = queue
        .keyed_coordinator(
            move |_job: Job, _ctx: OperationContext| {
                let gate = Arc::clone(&body_gate);
                async move {
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default().prefetch(1),
        )
        .await
        .unwrap();
    // max_concurrency 1 + prefetch 1.
    let bound = 2;
    support::eventually("a body running", || coordinator.running().len() == 1).await;
    let full = wait_stats(&queue, support::PATIENCE, |s| s.held >= bound).await;
    let pin = pinned().await.expect("the node holds the partition's pin");
    // Three pin timeouts: without a renewal the pin would lapse after one, and a node that
    // renewed it by pulling would take a job per renewal.
    for _ in 0..6 {
        tokio::time::sleep(pin_timeout / 2).await;
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats.held, bound,
            "held past the bound: {stats:?} (first full: {full:?})"
        );
        assert_eq!(intake.held() as u64, bound, "{:?}", intake.stats());
        assert_eq!(
            pinned().await.as_ref(),
            Some(&pin),
            "the pin was lost or moved"
        );
    }
    gate.add_permits(30);
    wait_stats(&queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let stats = intake.shutdown().await;
    assert_eq!((stats.acked, stats.redelivered), (30, 0), "{stats:?}");
}

/// A node that takes over a partition while its room is full still catches up. It starts
/// none of the partition's jobs until the old owner's have come back, and those come only
/// to a pull: a bound that stopped its pulls once full (reverted in 1dc1cb0) stalled such a
/// partition for good. Here node `second` (which ranks above `first` for the one partition)
/// joins while `first` runs a blocked body; `second` fills its room of 2 with new jobs
/// before the job `first` handed back is due, yet still gets that job and, once `first`'s
/// body ends, runs everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_with_no_room_still_catches_up() {
    let server = NatsServer::start().await;
    let queue = |nats: Nats| async move {
        nats.work_queue("handover", WorkQueueOptions::default().partitions(1))
            .await
            .unwrap()
    };
    let first_queue = queue(Nats::connect(&server.url()).await.unwrap()).await;
    let second_queue = queue(Nats::connect(&server.url()).await.unwrap()).await;
    for i in 0..10 {
        first_queue
            .push_keyed(&format!("k{i}"), &format!("job-{i}"), "x")
            .await
            .unwrap();
    }
    let ran = Arc::new(Mutex::new(Vec::<(&'static str, String)>::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (seen, body_gate) = (Arc::clone(&ran), Arc::clone(&gate));
    let (first, first_intake) = first_queue
        .keyed_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(("first", job.id().to_owned()));
                let gate = Arc::clone(&body_gate);
                async move {
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok::<_, String>(())
                }
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default().prefetch(1).node("first"),
        )
        .await
        .unwrap();
    support::eventually("first running a body and holding 2", || {
        first.running().len() == 1 && first_intake.held() == 2
    })
    .await;
    let seen = Arc::clone(&ran);
    let (_second, second_intake) = second_queue
        .keyed_coordinator(
            move |job: Job, _ctx: OperationContext| {
                seen.lock().unwrap().push(("second", job.id().to_owned()));
                futures::future::ready(Ok::<_, String>(()))
            },
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default().prefetch(1).node("second"),
        )
        .await
        .unwrap();
    // `second` owns the partition and holds more than its room: it is catching up, and
    // keeps pulling (one job at a time) for the job `first` handed back.
    support::eventually("second pulling past its room while catching up", || {
        second_intake.held() >= 3
    })
    .await;
    assert_eq!(
        ran.lock().unwrap().len(),
        1,
        "second started a job before first's came back and settled"
    );
    gate.add_permits(1);
    wait_stats(&second_queue, support::PATIENCE, |s| {
        s.messages == 0 && s.held == 0
    })
    .await;
    let second_stats = second_intake.shutdown().await;
    let first_stats = first_intake.shutdown().await;
    let ran = ran.lock().unwrap().clone();
    let mut ids: Vec<&str> = ran.iter().map(|(_, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "{ran:?}");
    assert_eq!(
        (first_stats.acked, second_stats.acked),
        (1, 9),
        "{ran:?} {first_stats:?} {second_stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_during_intake_loses_nothing() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue(
            "restart",
            WorkQueueOptions::default().ack_wait(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    for i in 0..500 {
        queue.push(&format!("job-{i}"), "x").await.unwrap();
    }
    let acked = Arc::new(Mutex::new(std::collections::HashMap::<String, u32>::new()));
    let tally = Arc::clone(&acked);
    let (coordinator, intake) = queue
        .work_coordinator(
            |_job: Job, _ctx: OperationContext| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, String>(())
            },
            EphemeralOptions::default().max_concurrency(8),
            IntakeOptions::default().on_settled(move |s| {
                if s.outcome == Outcome::Acked {
                    *tally.lock().unwrap().entry(s.id.to_string()).or_default() += 1;
                }
            }),
        )
        .await
        .unwrap();
    support::eventually("200 acked", || acked.lock().unwrap().len() >= 200).await;
    server.restart().await;
    for i in 500..1000 {
        queue.push(&format!("job-{i}"), "x").await.unwrap();
    }
    if let Err(last) = poll_stats(&queue, Duration::from_secs(20), |s| {
        s.messages == 0 && s.held == 0
    })
    .await
    {
        // Says whether a job is missing or every job was acknowledged and the stream still
        // lists a message (seen once in CI, 2026-12-06: messages 1, queued 0, held 0).
        let acked = acked.lock().unwrap();
        let missing: Vec<String> = (0..1000)
            .map(|i| format!("job-{i}"))
            .filter(|id| !acked.contains_key(id))
            .collect();
        panic!(
            "timed out; last stats {last:?}; {} jobs acked, missing {missing:?}; {:?}",
            acked.len(),
            coordinator.stats()
        );
    }
    let stats = intake.shutdown().await;
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), 1000, "{stats:?}");
    assert!(acked.values().all(|n| *n == 1), "{stats:?}");
    // Acks sent while the server was down were never confirmed: those jobs came back and
    // ran again (counted), and each job was acknowledged exactly once in the end.
    assert_eq!(
        stats.pulled,
        stats.acked + stats.ack_unconfirmed,
        "{stats:?}"
    );
    assert_eq!(stats.acked, 1000, "{stats:?}");
    // Every extra delivery is a redelivery (one lost in flight during the restart may show up
    // only as its second delivery, so not the other way round).
    assert!(stats.redelivered >= stats.pulled - 1000, "{stats:?}");
    assert_eq!(coordinator.stats().completed, stats.pulled);
}

/// A work queue on a server (or account) without JetStream says to enable it, as stores,
/// rooms and durable subscriptions do, rather than the client's bare "requested JetStream
/// resource does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_a_work_queue_says_to_enable_it() {
    for keyed in [None, Some(4)] {
        let server = NatsServer::start_with(&["--jetstream=false"]).await;
        let nats = Nats::connect(&server.url()).await.expect("connect");
        let mut options = WorkQueueOptions::default();
        if let Some(p) = keyed {
            options = options.partitions(p);
        }
        let error = nats
            .work_queue("nojs", options)
            .await
            .map(|_| ())
            .expect_err("no JetStream");
        let text = error.to_string();
        assert!(
            text.contains("JetStream is not enabled") && text.contains("`-js`"),
            "{text}"
        );
    }
}

/// With the server down, opening a work queue says so at once: it waited out each JetStream
/// request's timeout and then said only "timed out" (as stores did before be9212e).
#[tokio::test]
async fn with_the_server_down_opening_a_work_queue_says_the_connection_is_down() {
    let mut server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.expect("connect");
    server.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while nats.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = nats
        .work_queue("down", WorkQueueOptions::default())
        .await
        .map(|_| ())
        .expect_err("open while down");
    let text = error.to_string();
    assert!(
        text.contains("not connected to the NATS server") && text.contains("nats.offline"),
        "{text}"
    );
}

/// Listing the dead letters costs about one request per letter kept, not one per sequence
/// number: a dead-letter stream whose sequences are mostly deleted (letters removed once
/// handled) used to be read with one request per deleted number as well.
#[tokio::test]
async fn listing_dead_letters_skips_deleted_sequences_without_a_request_each() {
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("sparse", WorkQueueOptions::default())
        .await
        .unwrap();
    let js = nats.jetstream();
    let subject = "ephemeral.wq.sparse.dead";
    // Letters `a`, `b`, `c` among 1,100 handled (removed) ones, the last few removed too.
    let mut removed = Vec::new();
    for i in 0..1_103u32 {
        let payload = match i {
            0 => "a",
            550 => "b",
            1_000 => "c",
            _ => "handled",
        };
        let ack = js.publish(subject, payload.into()).await.unwrap();
        let seq = ack.await.unwrap().sequence;
        if payload == "handled" {
            removed.push(seq);
        }
    }
    for seq in removed {
        assert!(queue.remove_dead_letter(seq).await.unwrap());
    }
    // Every message API request on the connection, seen by an observer; a sentinel sent on
    // the same connection after the listing marks the end (one connection's messages
    // arrive in order).
    let observer = async_nats::connect(server.url()).await.unwrap();
    let mut seen = observer.subscribe("$JS.API.>").await.unwrap();
    let mut sentinel = observer.subscribe("sentinel").await.unwrap();
    // A round trip on the observer's connection, so the server has both subscriptions
    // before the listing (`flush` only writes; the server reads each connection on its own).
    let mut ready = observer.subscribe("observer.ready").await.unwrap();
    observer.publish("observer.ready", "".into()).await.unwrap();
    tokio::time::timeout(support::PATIENCE, ready.next())
        .await
        .expect("the observer's round trip");

    let dead: Vec<_> = queue.dead_letters().await.unwrap().collect().await;
    let payloads: Vec<_> = dead
        .iter()
        .map(|l| String::from_utf8_lossy(&l.as_ref().unwrap().payload).into_owned())
        .collect();
    assert_eq!(payloads, ["a", "b", "c"]);
    let sequences: Vec<_> = dead.iter().map(|l| l.as_ref().unwrap().sequence).collect();
    assert_eq!(sequences, [1, 551, 1_001]);

    let client = js.client();
    client.publish("sentinel", "".into()).await.unwrap();
    client.flush().await.unwrap();
    tokio::time::timeout(support::PATIENCE, sentinel.next())
        .await
        .expect("the sentinel");
    let mut gets = 0;
    // Unconstrained: tokio's cooperative budget would answer `Pending` after ~128 reads.
    while let Some(Some(m)) =
        futures::FutureExt::now_or_never(tokio::task::unconstrained(seen.next()))
    {
        if m.subject.contains(".MSG.GET.") || m.subject.starts_with("$JS.API.DIRECT.GET.") {
            gets += 1;
        }
    }
    // One per letter and one to find there is none after the last, at most (the stream's
    // info is asked apart from these).
    assert!(gets <= 3 + 1, "{gets} message requests for 3 letters");
}

/// A job that starts while its intake hands back the waiting ones (here: `shutdown`) must
/// either run or be handed back, never both. The hand-back took a list of the jobs not
/// started, then cancelled each: one that started in between was counted in `handed_back`
/// and cancelled while running, and, its body going on, acked as well.
///
/// The window is opened on purpose: the first job cancelled finishes at once, and the
/// `on_finalized` of the intake runs inside the hand-back, where it lets the running job
/// end and waits until the next one has started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_starts_during_a_hand_back_is_run_or_handed_back_not_both() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = NatsServer::start().await;
    let nats = Nats::connect(&server.url()).await.unwrap();
    let queue = nats
        .work_queue("hand-back-race", WorkQueueOptions::default())
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<String>();
    let started_tx = Mutex::new(started_tx);
    let started_rx = Arc::new(Mutex::new(started_rx));
    let armed = Arc::new(AtomicBool::new(false));
    let body = {
        let gate = Arc::clone(&gate);
        move |job: Job, _ctx: OperationContext| {
            let id = job.id().to_owned();
            started_tx.lock().unwrap().send(id.clone()).unwrap();
            let gate = Arc::clone(&gate);
            // The body ignores its token: a cancel does not stop it.
            async move {
                if id == "a" {
                    let _ = gate.acquire().await;
                }
                Ok::<(), String>(())
            }
        }
    };
    let on_finalized = {
        let armed = Arc::clone(&armed);
        let gate = Arc::clone(&gate);
        let started_rx = Arc::clone(&started_rx);
        move |snapshot: &ephemeral::OperationSnapshot| {
            if !matches!(snapshot.state, OperationState::Cancelled(_))
                || !armed.swap(false, Ordering::SeqCst)
            {
                return;
            }
            // Inside the hand-back: let `a` end, so that the worker starts the other
            // waiting job, and wait for that start (the worker thread is given away
            // meanwhile, so the runtime's other tasks go on).
            gate.add_permits(1);
            tokio::task::block_in_place(|| {
                let started = started_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(support::PATIENCE)
                    .expect("the other waiting job starts");
                assert_ne!(started, "a");
            });
        }
    };
    let (coordinator, intake) = queue
        .work_coordinator(
            body,
            EphemeralOptions::default().max_concurrency(1),
            IntakeOptions::default()
                .prefetch(2)
                .on_finalized(on_finalized),
        )
        .await
        .unwrap();
    queue.push("a", "x").await.unwrap();
    let first =
        tokio::task::block_in_place(|| started_rx.lock().unwrap().recv_timeout(support::PATIENCE));
    assert_eq!(first.as_deref(), Ok("a"));
    queue.push("b", "x").await.unwrap();
    queue.push("c", "x").await.unwrap();
    support::eventually("three jobs held", || intake.stats().pulled == 3).await;
    armed.store(true, Ordering::SeqCst);
    let stats = tokio::time::timeout(support::PATIENCE, intake.shutdown())
        .await
        .expect("the intake shuts down");
    assert!(
        !armed.load(Ordering::SeqCst),
        "the hand-back cancelled a job"
    );
    // Every job ran or was handed back, and one that ran was not handed back.
    assert_eq!(stats.started + stats.handed_back, stats.pulled, "{stats:?}");
    assert_eq!(stats.acked + stats.nacked, stats.pulled, "{stats:?}");
    assert_eq!(stats.handed_back, stats.nacked, "{stats:?}");
    assert_eq!(
        (stats.pulled, stats.started, stats.acked, stats.handed_back),
        (3, 2, 2, 1),
        "{stats:?}"
    );
    assert_eq!(coordinator.stats().completed, 2);
}
