//! Work queues across real processes: worker processes (the `nats-worker` bin) drain one
//! queue; the test starts them, SIGKILLs one by pid mid-run, and checks from their reports
//! (core NATS subject `test.report`, each line flushed before the body goes on) that
//! nothing was lost and every extra run is an accounted redelivery.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ephemeral_nats::Nats;
use ephemeral_nats::queue::{WorkQueue, WorkQueueOptions};
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;
use rustix::process::{Pid, Signal, kill_process};
use tokio::time::Instant;

/// Generous: a shared 2-core machine with debug builds.
const PATIENCE: Duration = Duration::from_secs(60);
const CONCURRENCY: u64 = 8;
const PREFETCH: u64 = 8;

/// A report line from a worker.
#[derive(Debug, Clone)]
enum Report {
    Ready,
    Ran {
        id: String,
        key: String,
        seq: u64,
        delivered: u32,
        pid: u32,
    },
    Settled {
        id: String,
        outcome: String,
        pid: u32,
    },
    Stats {
        pid: u32,
        values: Vec<u64>,
    },
}

fn parse(line: &str) -> Report {
    let parts: Vec<&str> = line.split(' ').collect();
    let n = |i: usize| parts[i].parse::<u64>().expect("a number in a report");
    match parts[0] {
        "ready" => Report::Ready,
        "ran" => Report::Ran {
            id: parts[1].to_owned(),
            key: parts[2].to_owned(),
            seq: n(3),
            delivered: n(4) as u32,
            pid: n(5) as u32,
        },
        "settled" => Report::Settled {
            id: parts[1].to_owned(),
            outcome: parts[2].to_owned(),
            pid: n(3) as u32,
        },
        "stats" => Report::Stats {
            pid: n(1) as u32,
            values: (2..parts.len()).map(n).collect(),
        },
        other => panic!("unknown report {other}: {line}"),
    }
}

/// Worker processes killed when the test ends, whatever happens.
struct Workers(Vec<Child>);

impl Workers {
    fn start(url: &str, queue: &str, n: usize, extra: &[&str]) -> Self {
        let children = (0..n)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_nats-worker"))
                    .arg(format!("url={url}"))
                    .arg(format!("queue={queue}"))
                    .arg(format!("concurrency={CONCURRENCY}"))
                    .arg(format!("prefetch={PREFETCH}"))
                    .args(extra)
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start a worker")
            })
            .collect();
        Self(children)
    }

    fn pid(&self, i: usize) -> u32 {
        self.0[i].id()
    }

    /// SIGKILL by pid: no cleanup, no goodbye to the server.
    fn kill(&mut self, i: usize) {
        let pid = Pid::from_raw(self.pid(i) as i32).expect("a pid");
        kill_process(pid, Signal::KILL).expect("kill the worker");
        let _ = self.0[i].wait();
    }

    fn wait_all(&mut self) {
        let deadline = std::time::Instant::now() + PATIENCE;
        for child in &mut self.0 {
            while child.try_wait().expect("try_wait").is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a worker did not exit"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Collects reports until `done` holds, failing after [`PATIENCE`].
async fn collect_until(
    reports: &mut async_nats::Subscriber,
    all: &mut Vec<Report>,
    mut done: impl FnMut(&[Report]) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(all) {
        let message = tokio::time::timeout_at(deadline, reports.next())
            .await
            .unwrap_or_else(|_| {
                let tail: Vec<_> = all.iter().rev().take(12).collect();
                panic!("timed out after {} reports; the last: {tail:?}", all.len())
            })
            .expect("the report subscription ended");
        all.push(parse(std::str::from_utf8(&message.payload).expect("utf-8")));
    }
}

async fn wait_drained(queue: &WorkQueue) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = queue.stats().await.expect("stats");
        if stats.messages == 0 && stats.held == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "not drained: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the survivors and collects their `stats` lines.
async fn stop_survivors(
    nats: &Nats,
    reports: &mut async_nats::Subscriber,
    all: &mut Vec<Report>,
    survivors: usize,
) {
    nats.client()
        .publish("test.control", "stop".into())
        .await
        .unwrap();
    nats.client().flush().await.unwrap();
    collect_until(reports, all, |r| {
        r.iter()
            .filter(|r| matches!(r, Report::Stats { .. }))
            .count()
            == survivors
    })
    .await;
}

/// A worker that pulled jobs had pull requests answered: at least one, at most one per
/// request and one per job (an answered request is one that brought a job).
fn assert_pulls_answered(pid: u32, pulled: u64, pull_requests: u64, answered: u64) {
    assert!(
        answered <= pull_requests && answered <= pulled,
        "{pid}: {answered} answered of {pull_requests} requests, {pulled} jobs"
    );
    if pulled > 0 {
        assert!(
            answered >= 1,
            "{pid} pulled {pulled} jobs on no answered request"
        );
    }
}

fn count_ready(r: &[Report]) -> usize {
    r.iter().filter(|r| matches!(r, Report::Ready)).count()
}

fn acked_count(r: &[Report]) -> usize {
    r.iter()
        .filter(|r| matches!(r, Report::Settled { outcome, .. } if outcome == "acked"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_nothing() {
    const JOBS: usize = 2_000;
    let server = NatsServer::start().await;
    let url = server.url();
    let nats = Nats::connect(&url).await.unwrap();
    let queue = nats
        .work_queue(
            "spread",
            WorkQueueOptions::default()
                .ack_wait(Duration::from_secs(1))
                .max_deliver(5),
        )
        .await
        .unwrap();
    for i in 0..JOBS {
        queue
            .push(&format!("job-{i}"), format!("{i}"))
            .await
            .unwrap();
    }
    let mut reports = nats.client().subscribe("test.report").await.unwrap();
    nats.client().flush().await.unwrap();
    let mut workers = Workers::start(
        &url,
        "spread",
        3,
        &["ack_wait_ms=1000", "max_deliver=5", "body_ms=5-15"],
    );
    let mut all = Vec::new();
    collect_until(&mut reports, &mut all, |r| count_ready(r) == 3).await;
    // Kill worker 0 at about 30 %.
    collect_until(&mut reports, &mut all, |r| acked_count(r) >= JOBS * 3 / 10).await;
    let killed = workers.pid(0);
    workers.kill(0);
    wait_drained(&queue).await;
    stop_survivors(&nats, &mut reports, &mut all, 2).await;
    workers.wait_all();

    let mut runs: HashMap<&str, Vec<(u32, u32)>> = HashMap::new();
    let mut acks: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut stats = HashMap::new();
    for report in &all {
        match report {
            Report::Ran {
                id, delivered, pid, ..
            } => runs.entry(id).or_default().push((*delivered, *pid)),
            Report::Settled { id, outcome, pid } => {
                assert_eq!(outcome, "acked", "{id} on {pid}");
                acks.entry(id).or_default().push(*pid);
            }
            Report::Stats { pid, values } => {
                stats.insert(*pid, values.clone());
            }
            Report::Ready => {}
        }
    }
    assert_eq!(runs.len(), JOBS, "every job ran");
    // Acknowledged exactly once: the stream is empty (work-queue retention removes a job
    // only on its ack; no dead letters), no job was acked twice, and every job whose ack
    // is not in the reports ran last on the killed worker (it was killed between the
    // confirmed ack and the report going out).
    assert_eq!(queue.stats().await.unwrap().dead, 0);
    assert!(
        acks.values().all(|pids| pids.len() == 1),
        "a job acked twice"
    );
    let unreported: Vec<_> = runs
        .iter()
        .filter(|(id, _)| !acks.contains_key(*id))
        .collect();
    assert!(
        unreported
            .iter()
            .all(|(_, r)| r.last().is_some_and(|&(_, pid)| pid == killed)),
        "{unreported:?}"
    );
    let capacity = (CONCURRENCY + PREFETCH) as usize;
    assert!(unreported.len() <= capacity, "{unreported:?}");
    // Every extra run is a redelivery of a job the killed worker held, and there are no
    // more of those than it could hold.
    let mut redelivered = HashSet::new();
    for (id, r) in &runs {
        for (i, &(delivered, pid)) in r.iter().enumerate() {
            if i > 0 {
                assert!(delivered >= 2, "{id}: {r:?}");
                assert_eq!(
                    r[0].1, killed,
                    "{id} ran again but not after the kill: {r:?}"
                );
                assert_ne!(pid, killed, "{id}: {r:?}");
            }
            if delivered >= 2 {
                redelivered.insert(*id);
            }
        }
    }
    assert!(
        redelivered.len() <= capacity,
        "{} redelivered jobs, the killed worker held at most {capacity}",
        redelivered.len()
    );
    let extra_runs: usize = runs.values().map(|r| r.len() - 1).sum();
    assert!(extra_runs <= redelivered.len());
    // The survivors' stats add up: accepted = completed = acked, pulled = acked (nothing
    // handed back while draining), and with the killed worker's acks they cover all jobs.
    assert_eq!(stats.len(), 2);
    let mut survivor_acks = 0;
    for (pid, v) in &stats {
        let [
            accepted,
            completed,
            failed,
            cancelled,
            pulled,
            acked,
            nacked,
            dead,
            _handed,
            pull_requests,
            answered,
        ] = v[..]
        else {
            panic!("stats of {pid}: {v:?}")
        };
        assert_pulls_answered(*pid, pulled, pull_requests, answered);
        assert_eq!(
            (failed, cancelled, nacked, dead),
            (0, 0, 0, 0),
            "{pid}: {v:?}"
        );
        assert_eq!(accepted, completed, "{pid}: {v:?}");
        assert_eq!(completed, acked, "{pid}: {v:?}");
        assert_eq!(pulled, acked, "{pid}: {v:?}");
        let reported = acks.values().filter(|p| p[0] == *pid).count() as u64;
        assert_eq!(reported, acked, "{pid}: {v:?}");
        survivor_acks += acked as usize;
    }
    let killed_acks = acks.values().filter(|p| p[0] == killed).count();
    assert_eq!(survivor_acks + killed_acks + unreported.len(), JOBS);
    assert!(
        killed_acks > 0,
        "the killed worker acked nothing before the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_workers_and_a_kill() {
    keyed(3, true).await;
}

async fn keyed(n: usize, kill: bool) {
    const KEYS: usize = 40;
    const PER_KEY: usize = 50;
    let server = NatsServer::start().await;
    let url = server.url();
    let nats = Nats::connect(&url).await.unwrap();
    let queue = nats
        .work_queue(
            "ordered",
            WorkQueueOptions::default()
                .partitions(8)
                .ack_wait(Duration::from_secs(1))
                .max_deliver(5)
                .pin_timeout(Duration::from_secs(1))
                .member_ttl(Duration::from_millis(1000)),
        )
        .await
        .unwrap();
    // Interleaved keys, each key's jobs in sequence order.
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            queue
                .push_keyed(
                    &format!("k{key}"),
                    &format!("k{key}-{seq}"),
                    format!("{seq}"),
                )
                .await
                .unwrap();
        }
    }
    let mut reports = nats.client().subscribe("test.report").await.unwrap();
    nats.client().flush().await.unwrap();
    let mut workers = Workers::start(
        &url,
        "ordered",
        n,
        &[
            "keyed=8",
            "ack_wait_ms=1000",
            "max_deliver=5",
            "body_ms=2-6",
            "pin_timeout_ms=1000",
            "member_ttl_ms=1000",
        ],
    );
    let mut all = Vec::new();
    collect_until(&mut reports, &mut all, |r| count_ready(r) == n).await;
    collect_until(&mut reports, &mut all, |r| {
        acked_count(r) >= KEYS * PER_KEY * 3 / 10
    })
    .await;
    // Kill a worker that owns partitions: the one that reported the latest start.
    let Some(Report::Ran { pid: killed, .. }) = all
        .iter()
        .rev()
        .find(|r| matches!(r, Report::Ran { .. }))
        .cloned()
    else {
        unreachable!("jobs were acked, so some started")
    };
    if kill {
        let index = (0..n)
            .find(|&i| workers.pid(i) == killed)
            .expect("a worker's pid");
        workers.kill(index);
    }
    wait_drained(&queue).await;
    stop_survivors(&nats, &mut reports, &mut all, n - usize::from(kill)).await;
    workers.wait_all();

    // Per key, the first start of each job comes in sequence order, across all workers
    // (reports reach the test in the order the server got them; each is flushed before
    // its body starts).
    let mut firsts: HashMap<String, Vec<u64>> = HashMap::new();
    let mut started = HashSet::new();
    let mut ran_on_killed = 0;
    for report in &all {
        if let Report::Ran {
            id, key, seq, pid, ..
        } = report
        {
            ran_on_killed += usize::from(*pid == killed);
            if started.insert(id.clone()) {
                firsts.entry(key.clone()).or_default().push(*seq);
            }
        }
    }
    assert_eq!(firsts.len(), KEYS);
    for (key, seqs) in &firsts {
        let expected: Vec<u64> = (0..PER_KEY as u64).collect();
        assert_eq!(seqs, &expected, "key {key}");
    }
    assert!(ran_on_killed > 0, "the chosen worker ran nothing");
    // All acknowledged once: the stream is empty, no dead letters, no job acked twice.
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.messages, stats.dead), (0, 0));
    let mut acked = HashSet::new();
    for report in &all {
        if let Report::Settled { id, outcome, pid } = report {
            assert_eq!(outcome, "acked", "{id} on {pid}");
            assert!(acked.insert(id.clone()), "{id} acked twice");
        }
    }
    assert_eq!(started.len(), KEYS * PER_KEY);
    // Each partition's pull requests are counted as the plain queue's are.
    let mut reported = 0;
    for report in &all {
        if let Report::Stats { pid, values } = report {
            reported += 1;
            let pulled = values[4];
            let (pull_requests, answered) = (values[9], values[10]);
            assert_pulls_answered(*pid, pulled, pull_requests, answered);
        }
    }
    assert_eq!(reported, n - usize::from(kill), "every survivor reported");
}
