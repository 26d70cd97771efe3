//! `nats_bridge_latency_p99`: a signal raised in one process, live in a bridged sink of
//! another through one nats-server, against a plain async-nats publish → subscriber of the
//! same payload between the same two processes.
//!
//! The measurement starts its own nats-server (the `ephemeral-nats` test harness: it needs
//! one installed, see the README's NATS section; without one the line says why and has no
//! numbers) and re-executes this binary with `--child nats-bridge` as the receiving process,
//! the server's URL in [`URL_ENV`]. The child bridges a sink on `bench.*` (a listener records
//! the moment each signal is live) and subscribes with the plain client to [`PLAIN_SUBJECT`].
//! Turns alternate: `count` raises (ours) or `count` plain publishes (baseline), one per
//! millisecond, each carrying its send time (wall clock, one machine); then the parent asks
//! `take ours <n>` / `take plain <n>` on the child's stdin and the child answers one line
//! `samples <ns> <ns> …`. A turn's value is its p99 in µs; the line reports the median of
//! the measured turns' p99 on each side. The line's note gives the median of the measured
//! turns' p50 on each side too: on this shared VM a p99 moves by a quarter between runs,
//! while a p50 holds within a few per cent, so it is the figure that shows what one step of
//! the path costs.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ephemeral::{Signal, SignalSink};
use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

use super::{Config, measured};
use crate::report::Measurement;
use crate::stats::{median, percentile};
use crate::turns::alternate;

/// The child workload: the receiving process.
pub const CHILD: &str = "nats-bridge";
/// The environment variable carrying the server's URL to the child.
pub const URL_ENV: &str = "EPHEMERAL_BENCH_NATS_URL";
/// The plain client's subject (outside the bridge's prefix).
pub const PLAIN_SUBJECT: &str = "plain.bench";

const NAME: &str = "nats_bridge_latency_p99";
const BASELINE: &str = "plain async-nats publish -> subscriber, same payload, same processes";
const PAYLOAD: usize = 64;
const PACE: Duration = Duration::from_millis(1);
const TARGET: f64 = 0.8;
/// How long the child waits for a turn's samples.
const CHILD_WAIT: Duration = Duration::from_secs(10);

/// The measurement (see the module docs).
pub fn bridge_latency_p99(cfg: &Config) -> Measurement {
    match run(cfg) {
        Ok(m) => m,
        Err(e) => Measurement {
            name: NAME,
            unit: "us",
            ours: None,
            baseline: BASELINE.to_owned(),
            baseline_value: None,
            higher_is_better: false,
            target: TARGET,
            same_run: true,
            note: Some(e),
        },
    }
}

fn run(cfg: &Config) -> Result<Measurement, String> {
    let count = cfg.pick(1_000, 200);
    let rt = super::runtime();
    let server = rt
        .block_on(NatsServer::try_start_with(&[]))
        .map_err(|e| format!("no nats-server: {e}"))?;
    let url = server.url();
    let (nats, sink, bridge) = rt.block_on(async {
        let nats = Nats::connect(&url).await.map_err(|e| e.to_string())?;
        let sink = SignalSink::default();
        let bridge = nats
            .bridge(&sink, "bench.*")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((nats, sink, bridge))
    })?;
    // Both sides' turns use the one child; a failed turn is remembered, not fatal.
    let state = RefCell::new((Kid::spawn(&url)?, None::<String>));
    // Each turn's p50, ours and plain, warm-up turns first.
    let p50s = RefCell::new((Vec::new(), Vec::new()));
    let turn = |ours: bool| -> Option<f64> {
        let mut state = state.borrow_mut();
        let (kid, failure) = &mut *state;
        let result = rt
            .block_on(send(&nats, &sink, ours, count))
            .and_then(|()| kid.take(if ours { "ours" } else { "plain" }, count));
        match result {
            Ok(samples) => {
                let mut p50s = p50s.borrow_mut();
                let side = if ours { &mut p50s.0 } else { &mut p50s.1 };
                side.extend(percentile(&samples, 50.0));
                percentile(&samples, 99.0)
            }
            Err(e) => {
                failure.get_or_insert(e);
                None
            }
        }
    };
    let turns = alternate(
        cfg.turns(),
        || turn(true),
        || turn(false).unwrap_or(f64::NAN),
    );
    drop(bridge);
    let (kid, failure) = state.into_inner();
    kid.finish();
    let mut m = measured(NAME, "us", BASELINE, &turns, false, TARGET);
    if turns.baseline.iter().any(|v| v.is_nan()) {
        m.baseline_value = None;
    }
    let (ours_p50, plain_p50) = p50s.into_inner();
    // The first turn of each side is the warm-up, as in `alternate`.
    let p50 = |turns: &[f64]| median(turns.get(1..).unwrap_or_default());
    m.note = failure.or_else(|| {
        let (ours, plain) = (p50(&ours_p50)?, p50(&plain_p50)?);
        Some(format!("p50: ours {ours:.0} us, plain {plain:.0} us"))
    });
    drop(server);
    Ok(m)
}

/// Sends one turn: `count` raises in the bridged sink, or plain publishes, one per `PACE`.
async fn send(nats: &Nats, sink: &SignalSink, ours: bool, count: usize) -> Result<(), String> {
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..count {
        tick.tick().await;
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&now_nanos().to_le_bytes());
        if ours {
            let signal = Signal::build("bench.tick")
                .map_err(|e| e.to_string())?
                .payload(payload.to_vec());
            sink.raise_with(signal).map_err(|e| e.to_string())?;
        } else {
            nats.client()
                .publish(PLAIN_SUBJECT, payload.to_vec().into())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The one-way latency in µs of a payload that starts with its send time.
fn latency_us(payload: &[u8]) -> Option<u64> {
    let sent = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    Some(now_nanos().saturating_sub(sent) / 1000)
}

// ---------------------------------------------------------------------------------------------
// The receiving child.
// ---------------------------------------------------------------------------------------------

/// Whether `workload` is this module's child.
#[must_use]
pub fn is_child(workload: &str) -> bool {
    workload == CHILD
}

/// Runs the receiving child; returns the exit code.
pub fn child_main() -> i32 {
    let Ok(url) = std::env::var(URL_ENV) else {
        eprintln!("{CHILD}: set {URL_ENV} to the server's URL");
        return 2;
    };
    match super::runtime().block_on(receive(&url)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{CHILD}: {e}");
            1
        }
    }
}

type Samples = Arc<Mutex<Vec<u64>>>;

async fn receive(url: &str) -> Result<(), String> {
    let nats = Nats::connect(url).await.map_err(|e| e.to_string())?;
    let sink = SignalSink::default();
    let ours: Samples = Arc::default();
    let plain: Samples = Arc::default();
    let recorded = Arc::clone(&ours);
    // The moment the signal is live in this sink.
    let _listener = sink.on_signal("bench.*", move |signal| {
        if let Some(us) = signal.payload().and_then(latency_us) {
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(us);
        }
    });
    let _bridge = nats
        .bridge(&sink, "bench.*")
        .await
        .map_err(|e| e.to_string())?;
    let mut subscriber = nats
        .client()
        .subscribe(PLAIN_SUBJECT)
        .await
        .map_err(|e| e.to_string())?;
    let recorded = Arc::clone(&plain);
    let reader = tokio::spawn(async move {
        while let Some(m) = subscriber.next().await {
            if let Some(us) = latency_us(&m.payload) {
                recorded
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(us);
            }
        }
    });
    nats.client().flush().await.map_err(|e| e.to_string())?;
    println!("ready");
    // Commands come one line at a time, between turns: a blocking read in place is fine.
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::task::block_in_place(|| stdin.lock().read_line(&mut line));
        if read.map_err(|e| e.to_string())? == 0 {
            break;
        }
        let mut words = line.split_whitespace();
        let (Some("take"), Some(kind), Some(n)) = (words.next(), words.next(), words.next()) else {
            return Err(format!("unexpected command {line:?}"));
        };
        let n: usize = n.parse().map_err(|_| format!("bad count in {line:?}"))?;
        let samples = if kind == "ours" { &ours } else { &plain };
        let deadline = tokio::time::Instant::now() + CHILD_WAIT;
        let taken = loop {
            {
                let mut s = samples.lock().unwrap_or_else(PoisonError::into_inner);
                if s.len() >= n || tokio::time::Instant::now() >= deadline {
                    break std::mem::take(&mut *s);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let text: Vec<String> = taken.iter().map(u64::to_string).collect();
        println!("samples {}", text.join(" "));
    }
    reader.abort();
    Ok(())
}

/// The receiving child process.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(url: &str) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--child", CHILD])
            .env(URL_ENV, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the receiving child: {e}"))?;
        let stdin = child.stdin.take();
        let out = child
            .stdout
            .take()
            .map(BufReader::new)
            .ok_or("the child has no stdout")?;
        let mut kid = Self { child, stdin, out };
        match kid.line()?.as_str() {
            "ready" => Ok(kid),
            other => Err(format!("the child said {other:?} instead of ready")),
        }
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.out.read_line(&mut line) {
            Ok(0) => Err("the receiving child exited early".to_owned()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(e) => Err(format!("cannot read the child's output: {e}")),
        }
    }

    /// The latencies (µs) of the last `n` messages of `kind`; an error if any is missing.
    fn take(&mut self, kind: &str, n: usize) -> Result<Vec<f64>, String> {
        let stdin = self.stdin.as_mut().ok_or("the child's stdin is closed")?;
        writeln!(stdin, "take {kind} {n}").map_err(|e| e.to_string())?;
        let line = self.line()?;
        let samples: Vec<f64> = line
            .strip_prefix("samples")
            .ok_or_else(|| format!("unexpected child line {line:?}"))?
            .split_whitespace()
            .filter_map(|v| v.parse::<f64>().ok())
            .collect();
        if samples.len() != n {
            return Err(format!(
                "{kind}: the child got {} of {n} messages",
                samples.len()
            ));
        }
        Ok(samples)
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
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
    fn a_payload_carries_its_send_time() {
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&now_nanos().to_le_bytes());
        assert!(latency_us(&payload).is_some_and(|us| us < 1_000_000));
        assert_eq!(latency_us(&[1, 2]), None);
    }
}
