//! `nats_intake_{1,2,4}w_vs_pull` and `nats_intake_confirmed_2w_vs_pull`: K worker processes
//! drain one JetStream work queue, each through a work coordinator (concurrency 16, no-op
//! body, tracking on) fed by the queue's intake, against K processes each running a plain
//! async-nats pull + ack loop on the same queue's consumer.
//!
//! The measurement starts its own nats-server (the `ephemeral-nats` test harness; without
//! one the line says why and has no numbers). Each turn pushes the jobs (64 B each, not
//! timed), starts K copies of this binary with `--child nats-intake` (the side in
//! [`SIDE_ENV`]), waits until each says `ready` (connected, queue bound, nothing pulled
//! yet), writes `go` to all, and times until the work stream is empty (every job
//! acknowledged). A turn's value is jobs per second; the line reports the median of the
//! measured turns on each side. Ours acks with `AckMode::Fire` (the plain loop's `ack()` is
//! fire-and-forget too), except the `confirmed` line, which uses the default confirmed acks
//! against the same plain loop. The intake runs with its default prefetch (as many waiting
//! jobs as `max_concurrency`) unless `EPHEMERAL_BENCH_INTAKE_PREFETCH` sets another, to see
//! what a deeper local queue buys.
//!
//! Each of our workers reports its intake's pull waits when it stops (the time from sending
//! a pull request to its first job, [`IntakeStats::mean_pull_wait`]); the line's note gives
//! their mean over all turns (the warm-up included) and the rate it allows: a worker holds
//! at most `max_concurrency + prefetch` jobs, asked for or received, so it takes at most
//! about that many per wait.
//!
//! The two sides hold different numbers of jobs by default: ours `max_concurrency +
//! prefetch` = 32 (the intake's default, chosen so slow jobs spread over the nodes), the
//! plain loop async-nats's default batch of [`PLAIN_BATCH`] (200, asked for again at half).
//! On a no-op body both wait on the server's round trips, so the line mostly compares these
//! budgets. To show what our intake itself costs, the note adds a few turns of ours with the
//! plain loop's budget (prefetch `PLAIN_BATCH − 16`), against the line's baseline median.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ephemeral::{EphemeralOptions, OperationContext};
use ephemeral_nats::Nats;
use ephemeral_nats::queue::{
    AckMode, IntakeOptions, IntakeStats, Job, WorkQueue, WorkQueueOptions,
};
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

use super::{Config, measured};
use crate::report::Measurement;
use crate::stats::median;
use crate::turns::alternate_both;

/// The child workload: one worker process.
pub const CHILD: &str = "nats-intake";
/// The side a child runs: `fire`, `confirmed` or `plain`.
pub const SIDE_ENV: &str = "EPHEMERAL_BENCH_INTAKE_SIDE";
/// The server's URL, for the child.
pub const URL_ENV: &str = "EPHEMERAL_BENCH_NATS_URL";
/// The queue's name, for the child.
pub const QUEUE_ENV: &str = "EPHEMERAL_BENCH_INTAKE_QUEUE";

const BASELINE: &str = "K processes, each a plain async-nats pull + ack loop on the same queue";
const CONCURRENCY: usize = 16;
/// The plain loop's budget: async-nats's default batch for `PullConsumer::messages`.
pub const PLAIN_BATCH: usize = 200;
/// Sets our workers' prefetch (the intake's default without it).
const PREFETCH_ENV: &str = "EPHEMERAL_BENCH_INTAKE_PREFETCH";
const PAYLOAD: usize = 64;
/// How long a turn may take before it counts as failed.
const TURN_LIMIT: Duration = Duration::from_secs(120);

/// `nats_intake_1w_vs_pull`.
pub fn intake_1w(cfg: &Config) -> Measurement {
    measure(cfg, "nats_intake_1w_vs_pull", 1, false, 0.7)
}

/// `nats_intake_2w_vs_pull`.
pub fn intake_2w(cfg: &Config) -> Measurement {
    measure(cfg, "nats_intake_2w_vs_pull", 2, false, 0.7)
}

/// `nats_intake_4w_vs_pull`.
pub fn intake_4w(cfg: &Config) -> Measurement {
    measure(cfg, "nats_intake_4w_vs_pull", 4, false, 0.7)
}

/// `nats_intake_confirmed_2w_vs_pull`.
pub fn intake_confirmed_2w(cfg: &Config) -> Measurement {
    measure(cfg, "nats_intake_confirmed_2w_vs_pull", 2, true, 0.3)
}

fn measure(
    cfg: &Config,
    name: &'static str,
    workers: usize,
    confirmed: bool,
    target: f64,
) -> Measurement {
    match run(cfg, name, workers, confirmed, target) {
        Ok(m) => m,
        Err(e) => Measurement {
            name,
            unit: "jobs/s",
            ours: None,
            baseline: BASELINE.to_owned(),
            baseline_value: None,
            higher_is_better: true,
            target,
            same_run: true,
            note: Some(e),
        },
    }
}

fn run(
    cfg: &Config,
    name: &'static str,
    workers: usize,
    confirmed: bool,
    target: f64,
) -> Result<Measurement, String> {
    let jobs = cfg.pick(200_000, 20_000);
    let rt = super::runtime();
    let server = rt
        .block_on(NatsServer::try_start_with(&[]))
        .map_err(|e| format!("no nats-server: {e}"))?;
    let url = server.url();
    let nats = rt
        .block_on(Nats::connect(&url))
        .map_err(|e| e.to_string())?;
    // Both sides' turns share these; a failed turn is remembered, not fatal.
    let failure = std::cell::RefCell::new(None::<String>);
    let waits = std::cell::RefCell::new(PullWaits::default());
    let batch = std::cell::Cell::new(0_u64);
    let turn = |side: &str, prefetch: Option<usize>| -> f64 {
        batch.set(batch.get() + 1);
        let result = rt
            .block_on(fill(&nats, batch.get(), jobs))
            .and_then(|queue| {
                // The pull waits of the line's own turns only (they make its note).
                let mut scratch = PullWaits::default();
                let mut line = waits.borrow_mut();
                let into = if prefetch.is_some() {
                    &mut scratch
                } else {
                    &mut *line
                };
                let elapsed = drain(&rt, &url, &queue, side, workers, prefetch, into);
                // Each turn has its own streams: free their store.
                rt.block_on(async {
                    let js = nats.jetstream();
                    let _ = js.delete_stream(queue.stream_name()).await;
                    let _ = js.delete_stream(queue.dead_stream_name()).await;
                });
                Ok(jobs as f64 / elapsed?.as_secs_f64())
            });
        match result {
            Ok(rate) => rate,
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                f64::NAN
            }
        }
    };
    let ours_side = if confirmed { "confirmed" } else { "fire" };
    let turns = alternate_both(
        cfg.turns(),
        || turn(ours_side, None),
        || turn("plain", None),
    );
    // Ours with the plain loop's budget, unless the run already sets a prefetch.
    let same_budget = prefetch().is_none().then(|| {
        let extra = PLAIN_BATCH - CONCURRENCY;
        let rates: Vec<f64> = (0..cfg.pick(3, 1))
            .map(|_| turn(ours_side, Some(extra)))
            .collect();
        (extra, median(&rates))
    });
    let mut m = measured(name, "jobs/s", BASELINE, &turns, true, target);
    if turns.ours.iter().any(|v| v.is_nan()) {
        m.ours = None;
    }
    if turns.baseline.iter().any(|v| v.is_nan()) {
        m.baseline_value = None;
    }
    let credit = CONCURRENCY + prefetch().unwrap_or(CONCURRENCY);
    m.note = failure.into_inner().or_else(|| {
        let waits = waits.into_inner().note(workers, credit);
        let budget = same_budget.and_then(|(extra, rate)| {
            let (rate, base) = (rate?, m.baseline_value?);
            Some(format!(
                "with the plain loop's budget ({CONCURRENCY} running + {extra} waiting = \
                 async-nats's default batch of {PLAIN_BATCH}), ours took {rate:.0} jobs/s, \
                 {:.2} of the baseline",
                rate / base
            ))
        });
        match (waits, budget) {
            (Some(w), Some(b)) => Some(format!("{w}; {b}")),
            (w, b) => w.or(b),
        }
    });
    drop(server);
    Ok(m)
}

/// A fresh queue with `jobs` jobs of [`PAYLOAD`] bytes (pushed many at a time; not timed).
async fn fill(nats: &Nats, batch: u64, jobs: usize) -> Result<WorkQueue, String> {
    let queue = nats
        .work_queue(&format!("bench{batch}"), WorkQueueOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let payload = bytes_of(PAYLOAD);
    let pushed: Vec<_> = futures::stream::iter(0..jobs)
        .map(|i| {
            let queue = queue.clone();
            let payload = payload.clone();
            async move { queue.push(&format!("j{i}"), payload).await }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    if let Some(e) = pushed.into_iter().find_map(Result::err) {
        return Err(format!("push: {e}"));
    }
    Ok(queue)
}

fn bytes_of(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

/// The prefetch [`PREFETCH_ENV`] asks for, if any.
fn prefetch() -> Option<usize> {
    std::env::var(PREFETCH_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Our workers' pull waits, summed over turns.
#[derive(Debug, Default, Clone, Copy)]
struct PullWaits {
    answered: u64,
    wait: Duration,
}

impl PullWaits {
    fn add(&mut self, other: Self) {
        self.answered += other.answered;
        self.wait += other.wait;
    }

    /// What a worker says when it stops: `pulls <answered> <wait in ns>`.
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        if words.next()? != "pulls" {
            return None;
        }
        let answered = words.next()?.parse().ok()?;
        let nanos = words.next()?.parse().ok()?;
        Some(Self {
            answered,
            wait: Duration::from_nanos(nanos),
        })
    }

    fn say(stats: &IntakeStats) -> String {
        format!(
            "pulls {} {}",
            stats.pulls_answered,
            stats.pull_wait.as_nanos()
        )
    }

    /// The note of the line: the mean wait and the rate `workers` nodes holding `credit`
    /// jobs each could reach if the server answered every pull in that time.
    fn note(self, workers: usize, credit: usize) -> Option<String> {
        // The mean as the intake's own stats define it.
        let mut stats = IntakeStats::default();
        stats.pulls_answered = self.answered;
        stats.pull_wait = self.wait;
        let mean = stats.mean_pull_wait()?;
        let ceiling = (workers * credit) as f64 / mean.as_secs_f64();
        Some(format!(
            "ours: a pull request waited {:.0} µs for its first job (mean of {} requests); \
             holding at most {credit} jobs each, {workers} worker(s) can take at most about \
             {:.1} k jobs/s at that wait",
            mean.as_secs_f64() * 1e6,
            self.answered,
            ceiling / 1e3
        ))
    }
}

/// Starts the workers (with `prefetch`, if given), says `go`, and times until the work
/// stream is empty; adds the pull waits our workers report when they stop to `waits`.
fn drain(
    rt: &tokio::runtime::Runtime,
    url: &str,
    queue: &WorkQueue,
    side: &str,
    workers: usize,
    prefetch: Option<usize>,
    waits: &mut PullWaits,
) -> Result<Duration, String> {
    let mut kids = (0..workers)
        .map(|_| Kid::spawn(url, queue.name(), side, prefetch))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    for kid in &mut kids {
        kid.say("go")?;
    }
    let elapsed = rt.block_on(async {
        loop {
            let stats = queue.stats().await.map_err(|e| e.to_string())?;
            if stats.messages == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > TURN_LIMIT {
                return Err(format!("{side}: not drained in {TURN_LIMIT:?}: {stats:?}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for kid in kids {
        if let Some(reported) = kid.finish() {
            waits.add(reported);
        }
    }
    elapsed
}

// ---------------------------------------------------------------------------------------------
// The worker child.
// ---------------------------------------------------------------------------------------------

/// Whether `workload` is this module's child.
#[must_use]
pub fn is_child(workload: &str) -> bool {
    workload == CHILD
}

/// Runs one worker child; returns the exit code.
pub fn child_main() -> i32 {
    let (Ok(url), Ok(queue), Ok(side)) = (
        std::env::var(URL_ENV),
        std::env::var(QUEUE_ENV),
        std::env::var(SIDE_ENV),
    ) else {
        eprintln!("{CHILD}: set {URL_ENV}, {QUEUE_ENV} and {SIDE_ENV}");
        return 2;
    };
    match super::runtime().block_on(work(&url, &queue, &side)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{CHILD}: {e}");
            1
        }
    }
}

/// Reads one line from stdin (blocking in place: commands are rare).
fn read_line() -> String {
    let mut line = String::new();
    let _ = tokio::task::block_in_place(|| std::io::stdin().lock().read_line(&mut line));
    line
}

async fn work(url: &str, name: &str, side: &str) -> Result<(), String> {
    let nats = Nats::connect(url).await.map_err(|e| e.to_string())?;
    let queue = nats
        .work_queue(name, WorkQueueOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    if side == "plain" {
        let stream = nats
            .jetstream()
            .get_stream(queue.stream_name())
            .await
            .map_err(|e| e.to_string())?;
        let consumer: ephemeral_nats::async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer("work")
            .await
            .map_err(|e| e.to_string())?;
        println!("ready");
        if read_line().trim() != "go" {
            return Ok(());
        }
        let pull = tokio::spawn(async move {
            let Ok(mut messages) = consumer.messages().await else {
                return;
            };
            // A pull stream reports transient trouble (a missed heartbeat on a busy machine,
            // a pull that timed out) as an item and goes on pulling: a loop that stopped at
            // the first one would leave the queue undrained and the turn without a figure.
            let mut reported = 0;
            while let Some(next) = messages.next().await {
                match next {
                    Ok(message) => {
                        let _ = message.ack().await;
                    }
                    Err(e) if reported < 5 => {
                        reported += 1;
                        eprintln!("{CHILD} plain: {e}; pulling on");
                    }
                    Err(_) => {}
                }
            }
        });
        // Until the parent closes stdin.
        let _ = read_line();
        pull.abort();
        return Ok(());
    }
    let ack = if side == "confirmed" {
        AckMode::Confirmed
    } else {
        AckMode::Fire
    };
    println!("ready");
    if read_line().trim() != "go" {
        return Ok(());
    }
    let (_coordinator, intake) = queue
        .work_coordinator(
            |_job: Job, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
            EphemeralOptions::default().max_concurrency(CONCURRENCY),
            match prefetch() {
                Some(n) => IntakeOptions::default().ack_mode(ack).prefetch(n),
                None => IntakeOptions::default().ack_mode(ack),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let _ = read_line();
    println!("{}", PullWaits::say(&intake.stats()));
    drop(intake);
    Ok(())
}

/// One worker child process.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(url: &str, queue: &str, side: &str, prefetch: Option<usize>) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut command = Command::new(exe);
        if let Some(n) = prefetch {
            command.env(PREFETCH_ENV, n.to_string());
        }
        let mut child = command
            .args(["--child", CHILD])
            .env(URL_ENV, url)
            .env(QUEUE_ENV, queue)
            .env(SIDE_ENV, side)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a worker child: {e}"))?;
        let stdin = child.stdin.take();
        let mut out: BufReader<ChildStdout> = child
            .stdout
            .take()
            .map(BufReader::new)
            .ok_or("the child has no stdout")?;
        let mut line = String::new();
        match out.read_line(&mut line) {
            Ok(n) if n > 0 && line.trim() == "ready" => Ok(Self { child, stdin, out }),
            _ => Err(format!("a worker child said {line:?} instead of ready")),
        }
    }

    fn say(&mut self, what: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the child's stdin is closed")?;
        writeln!(stdin, "{what}").map_err(|e| e.to_string())
    }

    /// Closes its stdin (the child stops) and reads what it says until it exits: the pull
    /// waits, from one of ours.
    fn finish(mut self) -> Option<PullWaits> {
        drop(self.stdin.take());
        let mut reported = None;
        let mut line = String::new();
        while matches!(self.out.read_line(&mut line), Ok(n) if n > 0) {
            reported = reported.or_else(|| PullWaits::parse(&line));
            line.clear();
        }
        let _ = self.child.wait();
        reported
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_pull_waits_make_the_note() {
        let mut waits = PullWaits::parse("pulls 4 2000000\n").expect("a report");
        assert_eq!((waits.answered, waits.wait), (4, Duration::from_millis(2)));
        assert!(PullWaits::parse("ready").is_none());
        assert!(
            PullWaits::default().note(1, 32).is_none(),
            "nothing answered"
        );
        waits.add(PullWaits::parse("pulls 4 2000000").expect("a report"));
        let note = waits.note(2, 32).expect("a note");
        // 500 µs a pull; 2 workers × 32 jobs per 500 µs = 128 k jobs/s.
        assert!(note.contains("waited 500 µs"), "{note}");
        assert!(note.contains("mean of 8 requests"), "{note}");
        assert!(note.contains("128.0 k jobs/s"), "{note}");
    }
}
