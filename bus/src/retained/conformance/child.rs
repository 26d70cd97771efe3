//! Child processes: the roles they play, and the parent's handle on one.
//!
//! A child reports on its stdout, one line at a time, flushed: `ready`, `acked <n>`,
//! `done`, `ok <n>` or `bad: <why>`. The parent writes lines to its stdin to pace it.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::Lagged;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{Backend, LONG};
use crate::retained::{DurableOptions, RoomOptions, StoreOptions, clock};

/// The environment variable naming a child's role.
pub const ROLE_ENV: &str = "EPHEMERAL_CONFORMANCE_ROLE";
/// The environment variable with a child's arguments, separated by spaces.
pub const ARGS_ENV: &str = "EPHEMERAL_CONFORMANCE_ARGS";

/// Prints one line and flushes it (the parent reads line by line).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads one line of stdin (`None` at its end).
async fn hear() -> Option<String> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    })
    .await
    .ok()
    .flatten()
}

/// The value the writer role writes under number `i`: every byte depends on `i`, so a
/// value half-written (or of another key) never passes for whole.
pub(crate) fn pattern(i: u64, len: usize) -> Vec<u8> {
    let seed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|j| (seed.rotate_left((j % 64) as u32) as u8) ^ (j as u8))
        .collect()
}

/// Runs the role named `role` with the arguments of [`ARGS_ENV`]; returns the exit code.
pub(crate) async fn run<B: Backend>(b: &B, role: &str) -> i32 {
    let args: Vec<String> = std::env::var(ARGS_ENV)
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().unwrap_or(0);
    match play(b, role, &arg, &num).await {
        Ok(()) => 0,
        Err(why) => {
            say(&format!("bad: {why}"));
            1
        }
    }
}

async fn play<B: Backend>(
    b: &B,
    role: &str,
    arg: &impl Fn(usize) -> String,
    num: &impl Fn(usize) -> u64,
) -> Result<(), String> {
    let e = |e: crate::retained::StoreError| e.to_string();
    match role {
        // <store> <n>: sets k0..k{n-1} = v<i>; then gets the key the parent names.
        "set-values" => {
            let store = b.store(&arg(0), StoreOptions::default()).await.map_err(e)?;
            for i in 0..num(1) {
                store
                    .set(&format!("k{i}"), format!("v{i}"), None)
                    .await
                    .map_err(e)?;
            }
            say("ready");
            let key = hear().await.ok_or("no key to read")?;
            match store.get(&key).await.map_err(e)? {
                Some(v) => say(&format!("got {}", String::from_utf8_lossy(&v))),
                None => say("got none"),
            }
            Ok(())
        }
        // <store> <key> <ttl ms>: sets it, says the wall-clock ms after the set returned.
        "set-ttl" => {
            let store = b.store(&arg(0), StoreOptions::default()).await.map_err(e)?;
            store
                .set(&arg(1), b"short-lived", Duration::from_millis(num(2)))
                .await
                .map_err(e)?;
            say(&format!(
                "set {}",
                clock::to_ms(std::time::SystemTime::now())
            ));
            let _ = hear().await;
            Ok(())
        }
        // <store> <value len>: four tasks write w.<i> = pattern(i) as fast as they can,
        // saying `acked <i>` once each set returned, until killed.
        "writer" => {
            let store = b.store(&arg(0), StoreOptions::default()).await.map_err(e)?;
            let len = usize::try_from(num(1)).unwrap_or(1024);
            let next = Arc::new(AtomicU64::new(0));
            // Before the writers start: on a fast backend their first `acked` would
            // otherwise come first.
            say("ready");
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (store, next) = (store.clone(), Arc::clone(&next));
                    tokio::spawn(async move {
                        loop {
                            // Relaxed: a counter handing out numbers.
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if store
                                .set(&format!("w.{i}"), pattern(i, len), None)
                                .await
                                .is_err()
                            {
                                break;
                            }
                            say(&format!("acked {i}"));
                        }
                    })
                })
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            Err("a write failed".into())
        }
        // <store> <n>: owned values o.<i>, one plain value `plain`; then waits to be killed.
        "owner" => {
            let store = b.store(&arg(0), StoreOptions::default()).await.map_err(e)?;
            for i in 0..num(1) {
                store
                    .set_owned(&format!("o.{i}"), b"mine", None)
                    .await
                    .map_err(e)?;
            }
            store.set("plain", b"stays", None).await.map_err(e)?;
            say("ready");
            let _ = hear().await;
            std::future::pending::<()>().await;
            Ok(())
        }
        // <room> <sender id> <n>: waits for `go`, sends "<id>:<i>" for i in 0..n. It exits
        // right after its last send, without flushing the bus: the notices of its last
        // messages may die with it, and joiners must still get every message.
        "sender" => {
            let room = b
                .room(&arg(0), RoomOptions::default().max_messages(100_000))
                .await
                .map_err(e)?;
            say("ready");
            hear().await.ok_or("no go")?;
            for i in 0..num(2) {
                room.send(format!("{}:{i}", arg(1))).await.map_err(e)?;
            }
            say("done");
            Ok(())
        }
        // <room> <total> <senders>: joins, reads `total` messages, checks them.
        "joiner" => {
            let room = b
                .room(&arg(0), RoomOptions::default().max_messages(100_000))
                .await
                .map_err(e)?;
            let mut joined = room.join().await.map_err(e)?;
            say("joined");
            let mut check = RoomCheck::new(usize::try_from(num(2)).unwrap_or(0));
            while check.count < num(1) {
                match tokio::time::timeout(LONG, joined.next()).await {
                    Ok(Some(Ok(m))) => check.see(m.sequence(), m.payload_str().unwrap_or(""))?,
                    Ok(Some(Err(Lagged(n)))) => return Err(format!("lagged {n}")),
                    Ok(None) => return Err("the room ended".into()),
                    Err(_) => return Err(format!("stuck at {}", check.count)),
                }
            }
            say(&format!("ok {}", check.count));
            Ok(())
        }
        // <pattern> <name> <max messages>: attaches, then leaves (is "stopped").
        "durable-attach" => {
            let sub = b
                .subscribe_durable_with(
                    &arg(0),
                    &arg(1),
                    DurableOptions::default().max_messages(num(2)),
                )
                .await
                .map_err(e)?;
            drop(sub);
            say("attached");
            Ok(())
        }
        // <topic> <n>: publishes payloads 0..n (decimal text).
        "publisher" => {
            for i in 0..num(1) {
                b.publish(&arg(0), i.to_string().as_bytes())
                    .await
                    .map_err(e)?;
            }
            say("done");
            Ok(())
        }
        // <pattern> <name> <max messages> <expect>: attaches, reads what is kept (lags
        // reported as `lagged <n>`), acknowledges it, says `got <first> <last> <count>`.
        "durable-read" => {
            let mut sub = b
                .subscribe_durable_with(
                    &arg(0),
                    &arg(1),
                    DurableOptions::default().max_messages(num(2)),
                )
                .await
                .map_err(e)?;
            let expect = num(3);
            let (mut first, mut last, mut count) = (None, None, 0u64);
            let mut last_seq = 0;
            loop {
                let wait = if count < expect {
                    LONG
                } else {
                    Duration::from_millis(300)
                };
                match tokio::time::timeout(wait, sub.next()).await {
                    Ok(Some(Ok(m))) => {
                        let n: u64 = m
                            .payload_str()
                            .and_then(|p| p.parse().ok())
                            .ok_or("a payload that is not a number")?;
                        if let Some(prev) = last
                            && n != prev + 1
                        {
                            return Err(format!("{n} after {prev}: out of order"));
                        }
                        first.get_or_insert(n);
                        last = Some(n);
                        last_seq = m.sequence();
                        count += 1;
                    }
                    Ok(Some(Err(Lagged(n)))) => say(&format!("lagged {n}")),
                    Ok(None) => return Err("the subscription ended".into()),
                    Err(_) => break,
                }
            }
            if count > 0 {
                sub.ack_sequence(last_seq).await.map_err(e)?;
            }
            match (first, last) {
                (Some(f), Some(l)) => say(&format!("got {f} {l} {count}")),
                _ => say("got none"),
            }
            Ok(())
        }
        other => Err(format!("unknown role {other}")),
    }
}

/// Checks a joiner's view of a room: sequences consecutive (no gap, no duplicate), and
/// each sender's messages `<id>:<i>` in order from 0.
pub(crate) struct RoomCheck {
    next_of: Vec<u64>,
    last_seq: Option<u64>,
    pub(crate) count: u64,
}

impl RoomCheck {
    pub(crate) fn new(senders: usize) -> Self {
        Self {
            next_of: vec![0; senders],
            last_seq: None,
            count: 0,
        }
    }

    pub(crate) fn see(&mut self, seq: u64, payload: &str) -> Result<(), String> {
        if let Some(last) = self.last_seq
            && seq != last + 1
        {
            return Err(format!("sequence {seq} after {last}: a gap or a duplicate"));
        }
        self.last_seq = Some(seq);
        let (sender, i) = payload
            .split_once(':')
            .and_then(|(s, i)| Some((s.parse::<usize>().ok()?, i.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("payload {payload:?}"))?;
        let next = self
            .next_of
            .get_mut(sender)
            .ok_or_else(|| format!("unknown sender {sender}"))?;
        if i != *next {
            return Err(format!("sender {sender}: {i} where {next} was due"));
        }
        *next += 1;
        self.count += 1;
        Ok(())
    }
}

/// The parent's handle on a child.
pub(crate) struct Kid {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: Option<ChildStdin>,
}

impl Kid {
    /// Starts this binary again as `role` with `args`, connected to `b`'s backend.
    pub(crate) fn spawn<B: Backend>(b: &B, role: &str, args: &[&str]) -> Kid {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = Command::new(exe);
        command
            .env(ROLE_ENV, role)
            .env(ARGS_ENV, args.join(" "))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in b.child_env() {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn a child");
        let stdout = child.stdout.take().expect("the child's stdout");
        let stdin = child.stdin.take();
        Kid {
            child,
            lines: BufReader::new(stdout).lines(),
            stdin,
        }
    }

    /// The next line, within [`LONG`]; `None` once the child closed its stdout.
    pub(crate) async fn try_line(&mut self) -> Option<String> {
        match tokio::time::timeout(LONG, self.lines.next_line()).await {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading a child's output: {e}"),
            Err(_) => panic!("a child said nothing for {LONG:?}"),
        }
    }

    /// The next line, which must exist and must not be a `bad:` report.
    pub(crate) async fn line(&mut self) -> String {
        let line = self.try_line().await.expect("the child ended early");
        assert!(!line.starts_with("bad:"), "a child failed: {line}");
        line
    }

    /// Waits for the line `expected`.
    pub(crate) async fn expect(&mut self, expected: &str) {
        let line = self.line().await;
        assert_eq!(line, expected, "a child said something else");
    }

    /// Writes one line to the child's stdin.
    pub(crate) async fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to a child");
        stdin.flush().await.expect("flush to a child");
    }

    /// SIGKILL, and waits until the process is gone (its locks released by the kernel).
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.expect("kill a child");
    }

    /// Waits for a clean exit.
    pub(crate) async fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(LONG, self.child.wait())
            .await
            .expect("a child exits")
            .expect("wait for a child");
        assert!(status.success(), "a child exited with {status}");
    }
}
