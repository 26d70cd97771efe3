//! The cross-process bus against fixed targets: 2,000,000 msg/s and a 500 µs p99.
//!
//! Both baselines are fixed reference numbers. Our side ([`ours_throughput`],
//! [`ours_latency_p99`]) needs a second process: each turn makes a fresh temporary directory,
//! opens the bus `compare-bench` in it, and re-executes this binary with the hidden `--child`
//! flag ([`CHILD_THROUGHPUT`] or [`CHILD_LATENCY`]) as the subscriber, passing the directory in
//! `EPHEMERAL_BUS_DIR` and the message count in [`COUNT_ENV`]. The directory is removed after
//! the turn.
//!
//! The child protocol, one line each on the child's stdout: `ready` once subscribed; for
//! latency, `lat <nanoseconds>` per message in order; then `done <received> lagged <lagged>`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ephemeral_bus::{BUS_DIR_ENV, Buffer, Bus, BusOptions, Overflow};
use futures::StreamExt;

use super::{Config, reference};
use crate::report::Measurement;
use crate::stats::{median, per_second, percentile};

/// The child workload that subscribes and counts messages for [`ours_throughput`].
pub const CHILD_THROUGHPUT: &str = "bus-throughput";
/// The child workload that subscribes and reports one-way latencies for [`ours_latency_p99`].
pub const CHILD_LATENCY: &str = "bus-latency";
/// The environment variable that tells a bus child how many data messages to expect.
pub const COUNT_ENV: &str = "EPHEMERAL_BENCH_BUS_COUNT";

const BUS_NAME: &str = "compare-bench";
const DATA_TOPIC: &str = "bench.data";
const HELLO_TOPIC: &str = "bench.hello";
const PAYLOAD: usize = 64;
/// Latency pacing: one message every 100 µs, 10,000 msg/s.
const PACE: Duration = Duration::from_micros(100);
/// How long a child waits for the next message before it reports what it got.
const CHILD_IDLE: Duration = Duration::from_secs(10);
/// How long the publisher waits for the child's subscription to reach it.
const HANDSHAKE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Ours.
// ---------------------------------------------------------------------------------------------

/// Our side: 64-byte messages per second from one publisher process to one subscriber process,
/// the median of the configured turns (2M messages a turn, 100k under `--quick`), timed from
/// the first publish until the child reports it received the last.
///
/// # Errors
///
/// Why there is no number: the child failed, or messages were lost.
pub fn ours_throughput(cfg: &Config) -> Result<f64, String> {
    let exe = this_exe()?;
    let messages = cfg.pick(2_000_000, 100_000);
    // One unmeasured warm-up turn, then the measured ones.
    throughput_turn(&exe, messages)?.rate()?;
    let mut rates = Vec::with_capacity(cfg.turns());
    for _ in 0..cfg.turns() {
        rates.push(throughput_turn(&exe, messages)?.rate()?);
    }
    median(&rates).ok_or_else(|| "no throughput turn produced a number".to_owned())
}

/// Our side: p99 one-way latency in µs with a receiver awaiting each message, paced at 10,000
/// msg/s, over the samples of all measured turns (10,000 messages a turn, 1,000 under
/// `--quick`; one unmeasured warm-up turn first).
///
/// # Errors
///
/// Why there is no number: the child failed, or messages were lost.
pub fn ours_latency_p99(cfg: &Config) -> Result<f64, String> {
    let exe = this_exe()?;
    let messages = cfg.pick(10_000, 1_000);
    latency_turn(&exe, messages)?;
    let mut samples = Vec::with_capacity(messages * cfg.turns());
    for _ in 0..cfg.turns() {
        samples.extend(latency_turn(&exe, messages)?);
    }
    percentile(&samples, 99.0).ok_or_else(|| "no latency sample".to_owned())
}

/// What one throughput turn measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThroughputTurn {
    /// Messages published.
    pub sent: usize,
    /// Messages the child received.
    pub received: u64,
    /// Messages the child was told it lost (`Lagged`).
    pub lagged: u64,
    /// From the first publish until the child's `done` line arrived.
    pub elapsed: Duration,
}

impl ThroughputTurn {
    /// Messages per second, or why the turn does not count (a lost message).
    ///
    /// # Errors
    ///
    /// When the child did not receive every message.
    pub fn rate(&self) -> Result<f64, String> {
        if self.received == self.sent as u64 && self.lagged == 0 {
            Ok(per_second(self.sent, self.elapsed))
        } else {
            Err(format!(
                "ours: the subscriber received {} of {} messages ({} lagged)",
                self.received, self.sent, self.lagged
            ))
        }
    }
}

/// One throughput turn: `exe --child bus-throughput` subscribes, this process publishes
/// `messages` 64-byte messages as fast as `publish` returns.
///
/// # Errors
///
/// When the bus cannot be opened, the child cannot start or reports something unexpected.
pub fn throughput_turn(exe: &Path, messages: usize) -> Result<ThroughputTurn, String> {
    let dir = TempDir::new()?;
    let rt = super::runtime();
    rt.block_on(async {
        let bus = open(dir.path()).await?;
        let mut kid = Kid::spawn(exe, CHILD_THROUGHPUT, dir.path(), messages)?;
        wait_for_subscriber(&bus).await?;
        let payload = [7u8; PAYLOAD];
        let start = Instant::now();
        for _ in 0..messages {
            bus.publish(DATA_TOPIC, payload)
                .await
                .map_err(|e| format!("publish failed: {e}"))?;
        }
        let (received, lagged) = kid.done(&mut |_| Err("unexpected latency line".into()))?;
        let elapsed = start.elapsed();
        kid.wait()?;
        Ok(ThroughputTurn {
            sent: messages,
            received,
            lagged,
            elapsed,
        })
    })
}

/// One latency turn: `exe --child bus-latency` subscribes, this process publishes `messages`
/// 64-byte messages carrying their send time, one every 100 µs; returns the one-way latencies
/// in µs, in order.
///
/// # Errors
///
/// When the bus cannot be opened, the child cannot start, reports something unexpected, or
/// lost a message.
pub fn latency_turn(exe: &Path, messages: usize) -> Result<Vec<f64>, String> {
    let dir = TempDir::new()?;
    let rt = super::runtime();
    rt.block_on(async {
        let bus = open(dir.path()).await?;
        let mut kid = Kid::spawn(exe, CHILD_LATENCY, dir.path(), messages)?;
        wait_for_subscriber(&bus).await?;
        let mut tick = tokio::time::interval(PACE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..messages {
            tick.tick().await;
            let mut payload = [0u8; PAYLOAD];
            payload[..8].copy_from_slice(&now_nanos().to_le_bytes());
            bus.publish(DATA_TOPIC, payload)
                .await
                .map_err(|e| format!("publish failed: {e}"))?;
        }
        let mut samples = Vec::with_capacity(messages);
        let (received, lagged) = kid.done(&mut |nanos| {
            samples.push(nanos as f64 / 1000.0);
            Ok(())
        })?;
        kid.wait()?;
        if received != messages as u64 || lagged != 0 || samples.len() != messages {
            return Err(format!(
                "ours: the subscriber received {received} of {messages} messages ({lagged} lagged, {} samples)",
                samples.len()
            ));
        }
        Ok(samples)
    })
}

// ---------------------------------------------------------------------------------------------
// The subscriber child.
// ---------------------------------------------------------------------------------------------

/// Whether `workload` is one of this module's child workloads.
#[must_use]
pub fn is_child(workload: &str) -> bool {
    workload == CHILD_THROUGHPUT || workload == CHILD_LATENCY
}

/// Runs the subscriber child `workload` in this process (the bus directory comes from
/// `EPHEMERAL_BUS_DIR`, the count from [`COUNT_ENV`]) and prints its protocol lines; returns
/// the exit code.
pub fn child_main(workload: &str) -> i32 {
    let count = match std::env::var(COUNT_ENV).map(|v| v.parse::<u64>()) {
        Ok(Ok(n)) => n,
        _ => {
            eprintln!("{workload}: set {COUNT_ENV} to the number of messages to expect");
            return 2;
        }
    };
    if std::env::var_os(BUS_DIR_ENV).is_none() {
        eprintln!("{workload}: set {BUS_DIR_ENV} to the bus's parent directory");
        return 2;
    }
    let latency = match workload {
        CHILD_THROUGHPUT => false,
        CHILD_LATENCY => true,
        other => {
            eprintln!(
                "unknown bus child workload {other:?}: use {CHILD_THROUGHPUT} or {CHILD_LATENCY}"
            );
            return 2;
        }
    };
    match super::runtime().block_on(subscriber(count, latency)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{workload}: {e}");
            1
        }
    }
}

async fn subscriber(count: u64, latency: bool) -> Result<(), String> {
    let bus = Bus::open(BUS_NAME)
        .await
        .map_err(|e| format!("cannot open the bus: {e}"))?;
    let buffer = Buffer::bounded(65_536).map_err(|e| e.to_string())?;
    let mut sub = bus
        .subscribe_with("bench.*", buffer, Overflow::Wait)
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    println!("ready");
    // Samples are kept until the end: writing them as they come could fill the pipe (the
    // publisher reads it only after its last message) and stall this receiver.
    let mut latencies = Vec::with_capacity(if latency { count as usize } else { 0 });
    let (mut got, mut lagged) = (0u64, 0u64);
    while got + lagged < count {
        match tokio::time::timeout(CHILD_IDLE, sub.next()).await {
            Ok(Some(Ok(m))) if m.topic().as_str() == DATA_TOPIC => {
                got += 1;
                if latency {
                    let now = now_nanos();
                    let sent = m
                        .payload()
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(now, u64::from_le_bytes);
                    latencies.push(now.saturating_sub(sent));
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(l))) => lagged += l.count(),
            Ok(None) => return Err("the subscription ended".into()),
            Err(_) => {
                eprintln!("no message for {CHILD_IDLE:?}; reporting what arrived");
                break;
            }
        }
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for nanos in latencies {
        let _ = writeln!(out, "lat {nanos}");
    }
    let _ = writeln!(out, "done {got} lagged {lagged}");
    let _ = out.flush();
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn this_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("ours: cannot find this binary: {e}"))
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn open(dir: &Path) -> Result<Bus, String> {
    Bus::open_with(BUS_NAME, BusOptions::default().dir(dir))
        .await
        .map_err(|e| format!("ours: cannot open the bus in {}: {e}", dir.display()))
}

/// Publishes on the hello topic (which the child ignores) until it reaches the child.
async fn wait_for_subscriber(bus: &Bus) -> Result<(), String> {
    let deadline = Instant::now() + HANDSHAKE;
    loop {
        let reached = bus
            .publish(HELLO_TOPIC, [])
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        if reached > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "ours: the subscriber child did not reach this process within {HANDSHAKE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A subscriber child process and its stdout.
struct Kid {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(exe: &Path, workload: &str, dir: &Path, count: usize) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .args(["--child", workload])
            .env(BUS_DIR_ENV, dir)
            .env(COUNT_ENV, count.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("ours: cannot start the subscriber child: {e}"))?;
        let out = child
            .stdout
            .take()
            .map(BufReader::new)
            .ok_or("ours: the child has no stdout")?;
        let mut kid = Self { child, out };
        match kid.line()?.as_str() {
            "ready" => Ok(kid),
            other => Err(format!("ours: the child said {other:?} instead of ready")),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.out.read_line(&mut line) {
            Ok(0) => Err("ours: the subscriber child exited early".to_owned()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(e) => Err(format!("ours: cannot read the child's output: {e}")),
        }
    }

    /// Reads lines until `done`, handing each latency sample to `sample`.
    fn done(
        &mut self,
        sample: &mut dyn FnMut(u64) -> Result<(), String>,
    ) -> Result<(u64, u64), String> {
        loop {
            let line = self.line()?;
            match parse_child_line(&line)? {
                ChildLine::Latency(nanos) => sample(nanos)?,
                ChildLine::Done { received, lagged } => return Ok((received, lagged)),
                ChildLine::Ready => return Err("ours: the child said ready twice".into()),
            }
        }
    }

    fn wait(mut self) -> Result<(), String> {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("ours: cannot wait for the child: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("ours: the subscriber child failed ({status})"))
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        // Only when a turn failed half-way: do not leave the child behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of a bus child's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildLine {
    /// Subscribed; the publisher may start.
    Ready,
    /// One message's one-way latency in nanoseconds.
    Latency(u64),
    /// The last line: data messages received and lost (`Lagged`).
    Done {
        /// Data messages received.
        received: u64,
        /// Messages the subscription was told it lost.
        lagged: u64,
    },
}

/// Parses one line of a bus child's stdout.
///
/// # Errors
///
/// A line that is not `ready`, `lat <n>` or `done <n> lagged <n>`.
pub fn parse_child_line(line: &str) -> Result<ChildLine, String> {
    let bad = || format!("ours: unexpected bus child output line {line:?}");
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad);
    let mut words = line.split_whitespace();
    let parsed = match words.next() {
        Some("ready") => ChildLine::Ready,
        Some("lat") => ChildLine::Latency(num(words.next())?),
        Some("done") => {
            let received = num(words.next())?;
            if words.next() != Some("lagged") {
                return Err(bad());
            }
            ChildLine::Done {
                received,
                lagged: num(words.next())?,
            }
        }
        _ => return Err(bad()),
    };
    if words.next().is_some() {
        return Err(bad());
    }
    Ok(parsed)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!(
            "ephemeral-compare-bus-{}-{}",
            std::process::id(),
            now_nanos()
        ));
        std::fs::create_dir(&path)
            .map_err(|e| format!("ours: cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------

/// Bus throughput versus 2,000,000 msg/s.
pub fn throughput(cfg: &Config) -> Measurement {
    let ours = ours_throughput(cfg);
    Measurement {
        ours: ours.as_ref().ok().copied(),
        note: Some(match ours {
            Ok(_) => format!(
                "{} messages of {PAYLOAD} bytes a turn, median of {} turns",
                cfg.pick(2_000_000, 100_000),
                cfg.turns()
            ),
            Err(why) => why,
        }),
        ..reference(
            "bus_throughput",
            "msg/s",
            "fixed target: 2,000,000 msg/s of 64 bytes, process to process",
            2_000_000.0,
            true,
            1.0,
        )
    }
}

/// Bus p99 one-way latency versus 500 µs.
pub fn latency_p99(cfg: &Config) -> Measurement {
    let ours = ours_latency_p99(cfg);
    Measurement {
        ours: ours.as_ref().ok().copied(),
        note: Some(match ours {
            Ok(_) => format!(
                "p99 of {} samples ({} turns of {} at 10k msg/s)",
                cfg.pick(10_000, 1_000) * cfg.turns(),
                cfg.turns(),
                cfg.pick(10_000, 1_000)
            ),
            Err(why) => why,
        }),
        ..reference(
            "bus_latency_p99",
            "us",
            "fixed target: 500 us p99 one-way at 10k msg/s",
            500.0,
            false,
            1.0,
        )
    }
}
