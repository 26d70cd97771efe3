//! Work across machines: three worker processes drain one JetStream work queue, one of
//! them is killed halfway, and nothing is lost.
//!
//! The example starts its own nats-server (the test harness of `ephemeral-nats`: it needs
//! one installed, see the README's NATS section), pushes 3,000 jobs, and starts three copies
//! of itself as workers. Each worker runs an ordinary work coordinator fed from the queue
//! and prints a live line. Halfway through, worker 1 is SIGKILLed by pid: the jobs it held
//! (at most what it had room for) are delivered again, after `ack_wait`, to the others,
//! with their delivery count. The summary checks the books by id: every job pushed ran to
//! completion on some worker (each worker reports every job it finished) or is a dead
//! letter, and counts the redeliveries. Finally the server is stopped, by pid. Runs about
//! five seconds.
//!
//! `cargo run -p ephemeral-examples --bin nats_work_queue`

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ephemeral::{EphemeralOptions, OperationContext};
use ephemeral_nats::Nats;
use ephemeral_nats::queue::{IntakeOptions, Job, WorkQueue, WorkQueueOptions};
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;
use tokio::time::Instant;

const ROLE: &str = "NATS_WORK_QUEUE_WORKER";
const JOBS: usize = 3_000;
const QUEUE: &str = "orders";
const CONCURRENCY: usize = 8;
const PREFETCH: usize = 8;

fn queue_options() -> WorkQueueOptions {
    // A short ack_wait so a dead worker's jobs come back within a second.
    WorkQueueOptions::default()
        .ack_wait(Duration::from_secs(1))
        .max_deliver(5)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(n) = std::env::var(ROLE) {
        return worker(&n).await;
    }
    let mut server = match NatsServer::try_start_with(&[]).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("this example needs a nats-server: {e}");
            std::process::exit(1);
        }
    };
    let server_pid = server.pid().unwrap_or(0);
    let url = server.url();
    println!("nats-server on {url} (pid {server_pid}), started by this example");

    let nats = Nats::connect(&url).await?;
    let queue = nats.work_queue(QUEUE, queue_options()).await?;
    let started = Instant::now();
    for i in 0..JOBS {
        queue.push(&format!("order-{i}"), format!("{i}")).await?;
    }
    // Pushed again: a duplicate id queues nothing.
    let again = queue.push("order-0", "0").await?;
    println!(
        "producer: pushed {JOBS} jobs in {:?} (order-0 again: duplicate = {})",
        started.elapsed(),
        again.duplicate
    );

    let (lines_tx, lines) = mpsc::channel::<(usize, String)>();
    let mut workers: Vec<Child> = (1..=3)
        .map(|n| spawn_worker(n, &url, lines_tx.clone()))
        .collect::<Result<_, _>>()?;
    drop(lines_tx);

    // Kill worker 1 halfway.
    let mut killed_pid = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut books = Books::default();
    loop {
        while let Ok((n, line)) = lines.try_recv() {
            books.on_line(n, &line);
        }
        let stats = queue.stats().await?;
        if killed_pid.is_none() && stats.messages <= (JOBS / 2) as u64 {
            let pid = workers[0].id();
            // SIGKILL: no goodbye to the server, its held jobs simply stop being pinged.
            workers[0].kill()?;
            workers[0].wait()?;
            killed_pid = Some(pid);
            println!(
                "-- killed worker 1 (pid {pid}) with {} jobs left in the queue, {} held cluster-wide",
                stats.messages, stats.held
            );
        }
        if killed_pid.is_some() && stats.messages == 0 && stats.held == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the queue did not drain: {stats:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.client().publish("example.stop", "stop".into()).await?;
    nats.client().flush().await?;
    for (i, child) in workers.iter_mut().enumerate().skip(1) {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("worker {} exited with {status}", i + 1).into());
        }
    }
    while let Ok((n, line)) = lines.recv() {
        books.on_line(n, &line);
    }
    let finals = books.finals;

    let stats = queue.stats().await?;
    // Counted, not derived: the ids some worker finished, and those dead-lettered.
    let mut accounted = books.finished.clone();
    let mut letters = queue.dead_letters().await?;
    while let Some(letter) = letters.next().await {
        if let Some(i) = letter?
            .id
            .strip_prefix("order-")
            .and_then(|i| i.parse().ok())
        {
            accounted.insert(i);
        }
    }
    let missing: Vec<usize> = (0..JOBS).filter(|i| !accounted.contains(i)).collect();
    let acked = JOBS as u64 - stats.messages - stats.dead;
    let survivors: u64 = finals.iter().map(|f| f.acked).sum();
    let redelivered: u64 = finals.iter().map(|f| f.redelivered).sum();
    println!("\nsummary");
    println!("  jobs pushed                    {JOBS}");
    println!(
        "  acknowledged                   {acked} (the work stream removes a job only on its ack)"
    );
    println!("    by the two survivors         {survivors}");
    println!(
        "    by worker 1 before its kill  {}",
        acked - survivors.min(acked)
    );
    println!("  dead letters                   {}", stats.dead);
    println!(
        "  redelivered to the survivors   {redelivered} (worker 1 could hold at most {})",
        CONCURRENCY + PREFETCH
    );
    println!("  left in the queue              {}", stats.messages);
    println!(
        "  ids finished by some worker    {} (worker 1's until its kill included)",
        books.finished.len()
    );
    let books_balance = missing.is_empty() && stats.messages == 0;
    println!(
        "  every id finished or dead:     {}",
        if books_balance {
            "yes, nothing lost".to_owned()
        } else {
            format!("NO: {} missing, first {:?}", missing.len(), missing.first())
        }
    );
    server.stop().await;
    println!(
        "\nstopped nats-server (pid {server_pid}); {:?} in all",
        started.elapsed()
    );
    if !books_balance || redelivered > (CONCURRENCY + PREFETCH) as u64 {
        return Err("the books do not balance".into());
    }
    // Also shown, checked (CI runs it with its output discarded): the second push of
    // order-0 queued nothing, and both survivors reported their final counts, which the
    // queue's acknowledgements cover.
    if !again.duplicate || finals.len() != 2 || survivors > acked {
        return Err(format!(
            "expected order-0's second push to be a duplicate and 2 survivors' final counts \
             within the {acked} acknowledged; saw duplicate = {}, {} final count(s) adding up \
             to {survivors}",
            again.duplicate,
            finals.len()
        )
        .into());
    }
    Ok(())
}

/// A survivor's final counters.
struct Final {
    acked: u64,
    redelivered: u64,
}

/// What the workers reported: every job id one of them finished, and the survivors' final
/// counters.
#[derive(Default)]
struct Books {
    finished: std::collections::HashSet<usize>,
    finals: Vec<Final>,
}

impl Books {
    fn on_line(&mut self, n: usize, line: &str) {
        if let Some(i) = line.strip_prefix("finished ") {
            if let Ok(i) = i.parse() {
                self.finished.insert(i);
            }
        } else if let Some(rest) = line.strip_prefix("final ") {
            let v: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
            if let [acked, redelivered] = v[..] {
                self.finals.push(Final { acked, redelivered });
                println!("worker {n}: stopped: acked {acked}, of them redelivered {redelivered}");
            }
        } else {
            println!("worker {n}: {line}");
        }
    }
}

fn spawn_worker(
    n: usize,
    url: &str,
    lines: mpsc::Sender<(usize, String)>,
) -> std::io::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(ROLE, n.to_string())
        .env("NATS_URL", url)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send((n, line)).is_err() {
                return;
            }
        }
    });
    Ok(child)
}

/// One worker process: a work coordinator fed from the queue, a live line every 300 ms.
async fn worker(n: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL")?;
    let nats = Nats::connect(&url).await?;
    let queue: WorkQueue = nats.work_queue(QUEUE, queue_options()).await?;
    let mut stop = nats.client().subscribe("example.stop").await?;
    let salt: u64 = n.parse()?;
    let (coordinator, intake) = queue
        .work_coordinator(
            move |job: Job, _ctx: OperationContext| async move {
                // 2 to 8 ms of "work", varied by job and worker.
                let i: u64 = std::str::from_utf8(job.payload())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let ms = 2 + (i * 7 + salt * 3) % 7;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                // For the parent's books (not shown): stdout is line-buffered, so a line
                // written before a kill reaches the parent.
                println!("finished {i}");
                Ok::<_, std::convert::Infallible>(())
            },
            EphemeralOptions::default().max_concurrency(CONCURRENCY),
            IntakeOptions::default().prefetch(PREFETCH),
        )
        .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = stop.next() => break,
            _ = tick.tick() => {
                let s = intake.stats();
                println!(
                    "pid {:>6}  running {:>2}  held {:>2}  acked {:>4}  redelivered {:>2}  pings {}",
                    std::process::id(),
                    coordinator.running().len(),
                    s.held,
                    s.acked,
                    s.redelivered,
                    s.pings
                );
            }
        }
    }
    let s = intake.shutdown().await;
    println!("final {} {}", s.acked, s.redelivered);
    Ok(())
}
