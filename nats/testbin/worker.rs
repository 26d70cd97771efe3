//! A worker process for the work-queue tests (feature `testing`; not part of the library).
//!
//! `nats-worker url=<url> queue=<name> [keyed=<partitions>] [concurrency=8] [prefetch=8]
//! [ack_wait_ms=2000] [max_deliver=5] [body_ms=1-5] [pin_timeout_ms=2000]
//! [member_ttl_ms=1500] [ack=confirmed|fire]`
//!
//! Reports on the core subject `test.report`, flushing each line:
//! `ready <pid>` once pulling; `ran <id> <key> <seq> <delivered> <pid>` when a body starts
//! (before its ack); `settled <id> <outcome> <pid>` after it is settled (`acked` only once
//! the server confirmed); `stats <pid> <accepted> <completed> <failed> <cancelled>
//! <pulled> <acked> <nacked> <dead> <handed_back> <pull_requests> <pulls_answered>` after
//! `test.control` says `stop`, then exits. The payload of a job is its sequence number
//! within its key.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ephemeral::{EphemeralOptions, OperationContext};
use ephemeral_nats::Nats;
use ephemeral_nats::queue::{AckMode, IntakeOptions, Job, Outcome, WorkQueueOptions};
use futures::StreamExt;

fn arg<'a>(args: &'a HashMap<String, String>, name: &str, default: &'a str) -> &'a str {
    args.get(name).map_or(default, String::as_str)
}

fn num(args: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    args.get(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let pid = std::process::id();
    let url = arg(&args, "url", "nats://127.0.0.1:4222");
    let nats = Nats::connect(url).await.expect("connect");
    let reporter = nats.client().clone();
    let mut options = WorkQueueOptions::default()
        .ack_wait(Duration::from_millis(num(&args, "ack_wait_ms", 2000)))
        .max_deliver(u32::try_from(num(&args, "max_deliver", 5)).expect("max_deliver"))
        .backoff([Duration::from_millis(100)])
        .pin_timeout(Duration::from_millis(num(&args, "pin_timeout_ms", 2000)))
        .member_ttl(Duration::from_millis(num(&args, "member_ttl_ms", 1500)));
    if let Some(p) = args.get("keyed") {
        options = options.partitions(p.parse().expect("partitions"));
    }
    let queue = nats
        .work_queue(arg(&args, "queue", "work"), options)
        .await
        .expect("queue");
    let (low, high) = arg(&args, "body_ms", "1-5")
        .split_once('-')
        .map(|(a, b)| {
            (
                a.parse::<u64>().expect("body_ms"),
                b.parse::<u64>().expect("body_ms"),
            )
        })
        .expect("body_ms=<min>-<max>");
    let concurrency = usize::try_from(num(&args, "concurrency", 8)).expect("concurrency");
    let prefetch = usize::try_from(num(&args, "prefetch", 8)).expect("prefetch");
    let ack = if arg(&args, "ack", "confirmed") == "fire" {
        AckMode::Fire
    } else {
        AckMode::Confirmed
    };

    let rng = Arc::new(AtomicU64::new(
        u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ));
    let body_reporter = reporter.clone();
    let body = move |job: Job, _ctx: OperationContext| {
        let reporter = body_reporter.clone();
        let rng = Arc::clone(&rng);
        async move {
            let line = format!(
                "ran {} {} {} {} {pid}",
                job.id(),
                job.key().unwrap_or("-"),
                String::from_utf8_lossy(job.payload()),
                job.delivered()
            );
            report(&reporter, line).await;
            // Relaxed: a private random-number state.
            let r = rng
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                >> 33;
            let ms = low + r % (high - low + 1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::convert::Infallible>(())
        }
    };
    let settle_reporter = reporter.clone();
    let intake_options = IntakeOptions::default()
        .prefetch(prefetch)
        .ack_mode(ack)
        .on_settled(move |s| {
            let outcome = match s.outcome {
                Outcome::Acked => "acked",
                Outcome::AckUnconfirmed => "unconfirmed",
                Outcome::Nacked(_) => "nacked",
                Outcome::Terminated => "terminated",
                Outcome::DeadLettered => "dead",
                _ => "abandoned",
            };
            let line = format!("settled {} {outcome} {pid}", s.id);
            let reporter = settle_reporter.clone();
            tokio::spawn(async move { report(&reporter, line).await });
        });
    let options = EphemeralOptions::default()
        .max_concurrency(concurrency)
        .max_tracked(100);
    let mut control = reporter.subscribe("test.control").await.expect("subscribe");
    let stats = if args.contains_key("keyed") {
        let (coordinator, intake) = queue
            .keyed_coordinator(body, options, intake_options)
            .await
            .expect("coordinator");
        report(&reporter, format!("ready {pid}")).await;
        wait_for_stop(&mut control).await;
        let intake_stats = intake.shutdown().await;
        (coordinator.stats(), intake_stats)
    } else {
        let (coordinator, intake) = queue
            .work_coordinator(body, options, intake_options)
            .await
            .expect("coordinator");
        report(&reporter, format!("ready {pid}")).await;
        wait_for_stop(&mut control).await;
        let intake_stats = intake.shutdown().await;
        (coordinator.stats(), intake_stats)
    };
    // Let the spawned `settled` reports go out first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (c, i) = stats;
    report(
        &reporter,
        format!(
            "stats {pid} {} {} {} {} {} {} {} {} {} {} {}",
            c.accepted,
            c.completed,
            c.failed,
            c.cancelled,
            i.pulled,
            i.acked,
            i.nacked,
            i.dead_lettered,
            i.handed_back,
            i.pull_requests,
            i.pulls_answered
        ),
    )
    .await;
}

async fn wait_for_stop(control: &mut async_nats::Subscriber) {
    while let Some(m) = control.next().await {
        if m.payload.as_ref() == b"stop" {
            return;
        }
    }
}

async fn report(client: &async_nats::Client, line: String) {
    let _ = client.publish("test.report", Bytes::from(line)).await;
    let _ = client.flush().await;
}
