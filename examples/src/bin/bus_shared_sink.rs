//! A signal sink shared by two processes through an `ephemeral-bus` bridge: a worker process
//! raises `error.*` signals with a short time-to-live; the monitor process sees them in its
//! own sink, asks `has_signal` like any local code, and watches them expire.
//!
//! `cargo run -p ephemeral-examples --bin bus_shared_sink`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ephemeral::{Signal, SignalSink};
use ephemeral_bus::Bus;

const CHILD: &str = "BUS_SHARED_SINK_CHILD";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD) {
        return worker(&name).await;
    }
    let name = format!("example-sink-{}", std::process::id());
    let bus = Bus::open(&name).await?;
    let sink = SignalSink::default();
    let bridge = bus.bridge(&sink, "error.*").await?;

    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, &name)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("raised"));

    while !sink.has_signal("error.*") {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // What arrived, with the time it had left; no signal may live longer here than the
    // worker gave it (the bridge carries the remaining time to live).
    let mut longer_than_given = Vec::new();
    for signal in sink.sense("error.*") {
        let left = signal.remaining(tokio::time::Instant::now(), sink.max_age());
        println!(
            "monitor sees {} (key {}) from another process, {} ms left",
            signal.name(),
            signal.key().unwrap_or("none"),
            left.as_millis()
        );
        let given = match signal.name().as_str() {
            "error.db.timeout" => Duration::from_millis(500),
            "error.payment" => Duration::from_millis(300),
            _ => Duration::ZERO,
        };
        if left > given {
            longer_than_given.push(format!("{} with {left:?} left", signal.name()));
        }
    }
    while sink.has_signal("error.*") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "all remote errors expired; bridge raised {} signal(s)",
        bridge.raised()
    );
    let status = child.wait()?;
    // What this example shows, checked (CI runs it with its output discarded): both errors
    // crossed to this process's sink (the second arrives before the first, with 500 ms to
    // live, expires; `info.started` did not match the bridge), none with more time than the
    // worker gave it, and the worker ended cleanly. Their expiry is what ended the loop above.
    if bridge.raised() != 2 || !longer_than_given.is_empty() || !status.success() {
        return Err(format!(
            "expected 2 bridged errors, none living longer than given, and a clean worker \
             exit; saw {} bridged, {longer_than_given:?}, worker exit {status}",
            bridge.raised()
        )
        .into());
    }
    Ok(())
}

async fn worker(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::open(name).await?;
    let sink = SignalSink::default();
    let _bridge = bus.bridge(&sink, "error.*").await?;
    sink.raise_with(
        Signal::build("error.db.timeout")?
            .key("orders")
            .expires_in(Duration::from_millis(500)),
    )?;
    sink.raise_with(Signal::build("error.payment")?.expires_in(Duration::from_millis(300)))?;
    sink.raise("info.started")?; // not bridged: the pattern is error.*
    println!("raised");
    // Stay a moment so the bridge has published before the process leaves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
