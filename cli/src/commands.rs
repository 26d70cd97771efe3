//! The bus subcommands.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ephemeral_bus::{
    BUS_DIR_ENV, Buffer, Bus, BusName, BusOptions, HOLD_HEADER, KEY_HEADER, Message, Outgoing,
    Overflow, RELEASE_HEADER, SEQ_HEADER,
};
use futures::StreamExt;
use tokio::time::Instant;

use crate::exit::{Failure, IO, NO_BUS, REFUSED, USAGE};
use crate::render::{self, Kind, Line};

/// The bus every subcommand talks to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) bus: BusName,
    pub(crate) create: bool,
}

/// The sequence number `raise` and `hold` stamp on their signal: with this process's origin
/// (random per process), it identifies the signal to the bridges' de-duplication.
const CLI_SEQ: i64 = 1;

impl Target {
    /// `<parent>/ephemeral-<bus>`, the parent chosen as the bus itself does.
    fn dir(&self) -> PathBuf {
        BusOptions::default().bus_dir(&self.bus)
    }

    /// Opens the bus, refusing to create one unless `--create` was given.
    pub(crate) async fn open(&self) -> Result<Bus, Failure> {
        let dir = self.dir();
        if !self.create {
            match std::fs::symlink_metadata(&dir) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Failure::new(
                        NO_BUS,
                        format!(
                            "no bus named `{}`: {} does not exist. Start the service that opens it, \
                             pick another with --bus NAME, point {BUS_DIR_ENV} at its parent \
                             directory, or pass --create to open it anyway",
                            self.bus,
                            dir.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(Failure::new(
                        REFUSED,
                        format!(
                            "bus `{}` refused: cannot read {}: {e}",
                            self.bus,
                            dir.display()
                        ),
                    ));
                }
                Err(e) => {
                    return Err(Failure::new(
                        IO,
                        format!("bus `{}`: cannot read {}: {e}", self.bus, dir.display()),
                    ));
                }
            }
        }
        Ok(Bus::open(self.bus.as_str()).await?)
    }
}

/// Waits until every peer has read what this process queued for it, so that a one-shot
/// command does not exit (and drop its queues) before its messages left (bounded by the
/// bus's handshake timeout, 1 s, per peer).
async fn flush(bus: &Bus) {
    bus.flush().await;
}

/// Resolves when the process is asked to stop (Ctrl-C / SIGINT, or SIGTERM).
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Writes one line to stdout and flushes it; `false` when stdout is gone (a closed pipe).
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// `ephemeral watch`.
pub(crate) async fn watch(
    target: &Target,
    pattern: &str,
    json: bool,
    count: Option<u64>,
    requests: bool,
) -> Result<(), Failure> {
    let bus = target.open().await?;
    let buffer =
        Buffer::Bounded(std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN));
    let messages = bus
        .subscribe_with(pattern, buffer, Overflow::DropOldest)
        .await?;
    // Copies of requests and replies, when asked for: observing never takes a request away
    // from its server.
    let copies = if requests {
        Some(bus.observe_with(pattern, buffer).await?)
    } else {
        None
    };
    let mut subscription =
        futures::stream::select(messages, futures::stream::iter(copies).flatten());
    eprintln!(
        "watching `{pattern}` on bus `{}` ({}); Ctrl-C to stop",
        bus.name(),
        bus.dir().display()
    );
    if count == Some(0) {
        return Ok(());
    }
    // Live holds seen, by (origin, sequence): the line that announced them and their lease end.
    let mut holds: HashMap<(u64, i64), (Line, Instant)> = HashMap::new();
    let mut shown = 0u64;
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        let mut lines = Vec::new();
        tokio::select! {
            () = &mut stop => return Ok(()),
            item = subscription.next() => match item {
                None => return Err(Failure::new(IO, "the bus closed under the watcher")),
                Some(Err(lagged)) => {
                    let text = if json {
                        render::lagged_json(lagged.count())
                    } else {
                        render::lagged_text(lagged.count())
                    };
                    if !emit(&text) {
                        return Ok(());
                    }
                }
                Some(Ok(message)) => lines.extend(classify(&message, &mut holds)),
            },
            _ = sweep.tick() => {
                let now = Instant::now();
                let lapsed: Vec<(u64, i64)> = holds
                    .iter()
                    .filter(|(_, (_, until))| *until <= now)
                    .map(|(k, _)| *k)
                    .collect();
                for k in lapsed {
                    if let Some((mut line, _)) = holds.remove(&k) {
                        line.kind = Kind::Lapsed;
                        line.time = SystemTime::now();
                        lines.push(line);
                    }
                }
            }
        }
        for line in lines {
            let text = if json { line.json() } else { line.text() };
            if !emit(&text) {
                return Ok(());
            }
            shown += 1;
            if count.is_some_and(|n| shown >= n) {
                return Ok(());
            }
        }
    }
}

fn int_header(message: &Message, key: &str) -> Option<i64> {
    match message.header(key) {
        Some(ephemeral::HeaderValue::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The lines a message produces: hold refreshes show once, when the hold begins.
fn classify(message: &Message, holds: &mut HashMap<(u64, i64), (Line, Instant)>) -> Vec<Line> {
    let kind = Kind::of(message);
    match kind {
        Kind::Held => {
            let seq = int_header(message, SEQ_HEADER).unwrap_or(0);
            let lease = int_header(message, HOLD_HEADER).unwrap_or(1000).max(1);
            // Allow one missed refresh on a busy machine before calling the hold lapsed.
            let until = Instant::now() + Duration::from_millis(lease.unsigned_abs()) * 2;
            let key = (message.origin(), seq);
            if let Some((_, lease_end)) = holds.get_mut(&key) {
                *lease_end = until;
                return Vec::new();
            }
            let line = Line::from_message(message, kind);
            holds.insert(key, (line.clone(), until));
            vec![line]
        }
        Kind::Released => {
            let seq = int_header(message, RELEASE_HEADER).unwrap_or(0);
            match holds.remove(&(message.origin(), seq)) {
                Some((mut line, _)) => {
                    line.kind = Kind::Released;
                    line.time = message.timestamp();
                    vec![line]
                }
                None => vec![Line::from_message(message, kind)],
            }
        }
        _ => vec![Line::from_message(message, kind)],
    }
}

/// The parts of a signal given on the command line.
#[derive(Debug)]
pub(crate) struct SignalArgs {
    pub(crate) name: String,
    pub(crate) key: Option<String>,
    pub(crate) payload: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl SignalArgs {
    /// The message a bridge publishes for such a signal (see the bridge's header constants).
    fn outgoing(&self) -> Result<Outgoing, Failure> {
        let mut out = Outgoing::new(&self.name)?.header(SEQ_HEADER, CLI_SEQ);
        if let Some(key) = &self.key {
            out = out.header(KEY_HEADER, key.as_str());
        }
        if let Some(payload) = &self.payload {
            out = out.payload(payload.as_bytes());
        }
        for (k, v) in &self.headers {
            out = out.header(k, v.as_str());
        }
        Ok(out)
    }
}

fn reached_text(reached: usize) -> String {
    match reached {
        0 => "no subscriber".to_owned(),
        1 => "1 subscriber".to_owned(),
        n => format!("{n} subscribers"),
    }
}

/// `ephemeral raise`.
pub(crate) async fn raise(
    target: &Target,
    signal: &SignalArgs,
    ttl: Option<Duration>,
) -> Result<(), Failure> {
    let mut out = signal.outgoing()?;
    if let Some(ttl) = ttl {
        out = out.ttl(ttl);
    }
    let bus = target.open().await?;
    let reached = bus.publish_with(out).await?;
    flush(&bus).await;
    println!(
        "raised {} on bus `{}` (reached {})",
        signal.name,
        bus.name(),
        reached_text(reached)
    );
    Ok(())
}

/// `ephemeral hold`: refreshes a hold lease until interrupted, then releases it.
pub(crate) async fn hold(
    target: &Target,
    signal: &SignalArgs,
    lease: Duration,
) -> Result<(), Failure> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
    let refresh = signal.outgoing()?.header(HOLD_HEADER, lease_ms);
    let release = Outgoing::new(&signal.name)?.header(RELEASE_HEADER, CLI_SEQ);
    let bus = target.open().await?;
    let reached = bus.publish_with(refresh.clone()).await?;
    flush(&bus).await;
    eprintln!(
        "holding {} on bus `{}` (reached {}); Ctrl-C to release",
        signal.name,
        bus.name(),
        reached_text(reached)
    );
    let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(1)));
    tick.tick().await;
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                bus.publish_with(refresh.clone()).await?;
            }
        }
    }
    bus.publish_with(release).await?;
    flush(&bus).await;
    eprintln!("released {}", signal.name);
    Ok(())
}

/// Reads a payload argument: `-` means standard input.
pub(crate) fn payload_bytes(arg: &str) -> Result<Vec<u8>, Failure> {
    if arg == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::new(USAGE, format!("cannot read the payload from stdin: {e}")))?;
        Ok(bytes)
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// `ephemeral publish`.
pub(crate) async fn publish(
    target: &Target,
    topic: &str,
    payload: &[u8],
    headers: &[(String, String)],
) -> Result<(), Failure> {
    let mut out = Outgoing::new(topic)?.payload(payload);
    for (k, v) in headers {
        out = out.header(k, v.as_str());
    }
    let bus = target.open().await?;
    let reached = bus.publish_with(out).await?;
    flush(&bus).await;
    println!(
        "published {topic} on bus `{}` (reached {})",
        bus.name(),
        reached_text(reached)
    );
    Ok(())
}

/// `ephemeral request`: prints the reply payload (each reply's, with `--stream`).
pub(crate) async fn request(
    target: &Target,
    topic: &str,
    payload: &[u8],
    timeout: Duration,
    stream: bool,
) -> Result<(), Failure> {
    let bus = target.open().await?;
    if !stream {
        let reply = bus.request(topic, payload, timeout).await?;
        return print_reply(reply.payload());
    }
    let mut replies = bus.request_stream(topic, payload, timeout).await?;
    while let Some(reply) = replies.next().await {
        print_reply(reply?.payload())?;
    }
    Ok(())
}

/// Writes a reply's payload as one line.
fn print_reply(payload: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(payload)?;
    if !payload.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Per-topic traffic seen by the `stats` monitor.
#[derive(Debug, Default, Clone, Copy)]
struct TopicTraffic {
    messages: u64,
    bytes: u64,
    window: u64,
}

/// `ephemeral stats`.
pub(crate) async fn stats(
    target: &Target,
    interval: Duration,
    watch: bool,
    json: bool,
) -> Result<(), Failure> {
    let bus = target.open().await?;
    // A monitor of its own: every publisher on the bus sends it every message while it runs
    // (requests and replies are not messages on topics, so they are not counted).
    let mut monitor = bus
        .subscribe_with(
            "*",
            Buffer::Bounded(
                std::num::NonZeroUsize::new(65_536).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            Overflow::DropOldest,
        )
        .await?;
    let mut topics: BTreeMap<String, TopicTraffic> = BTreeMap::new();
    let mut lagged = 0u64;
    let in_place = watch && std::io::stdout().is_terminal();
    let stop = interrupted();
    tokio::pin!(stop);
    let mut frame = 0u64;
    loop {
        let window_end = Instant::now() + interval;
        let started = Instant::now();
        for t in topics.values_mut() {
            t.window = 0;
        }
        let mut lagged_window = 0u64;
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = tokio::time::sleep_until(window_end) => break,
                item = monitor.next() => match item {
                    None => return Err(Failure::new(IO, "the bus closed under the monitor")),
                    Some(Err(l)) => {
                        lagged += l.count();
                        lagged_window += l.count();
                    }
                    Some(Ok(message)) => {
                        let t = topics.entry(message.topic().to_string()).or_default();
                        t.messages += 1;
                        t.window += 1;
                        t.bytes += message.payload().len() as u64;
                    }
                },
            }
        }
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let text = if json {
            stats_json(&bus, &topics, secs, lagged, lagged_window)
        } else {
            stats_text(&bus, &topics, secs, lagged, lagged_window)
        };
        let mut out = std::io::stdout().lock();
        let written = if in_place {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else if watch && frame > 0 && !json {
            write!(out, "\n{text}")
        } else {
            write!(out, "{text}")
        };
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        frame += 1;
        if !watch {
            return Ok(());
        }
    }
}

fn stats_text(
    bus: &Bus,
    topics: &BTreeMap<String, TopicTraffic>,
    secs: f64,
    lagged: u64,
    lagged_window: u64,
) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "bus `{}` ({})  peers: {}  window: {}\n",
        bus.name(),
        bus.dir().display(),
        bus.peers(),
        humantime::format_duration(Duration::from_millis((secs * 1000.0) as u64)),
    );
    let width = topics.keys().map(String::len).max().unwrap_or(5).max(5);
    let _ = writeln!(
        s,
        "{:<width$}  {:>10}  {:>10}  {:>12}",
        "TOPIC", "MESSAGES", "RATE/s", "BYTES"
    );
    for (topic, t) in topics {
        let _ = writeln!(
            s,
            "{topic:<width$}  {:>10}  {:>10.1}  {:>12}",
            t.messages,
            t.window as f64 / secs,
            t.bytes
        );
    }
    if topics.is_empty() {
        let _ = writeln!(s, "(no traffic seen yet)");
    }
    let _ = writeln!(
        s,
        "lagged: {lagged} message(s) missed by this monitor ({lagged_window} in this window)"
    );
    s
}

fn stats_json(
    bus: &Bus,
    topics: &BTreeMap<String, TopicTraffic>,
    secs: f64,
    lagged: u64,
    lagged_window: u64,
) -> String {
    let topics: Vec<serde_json::Value> = topics
        .iter()
        .map(|(topic, t)| {
            serde_json::json!({
                "topic": topic,
                "messages": t.messages,
                "rate": t.window as f64 / secs,
                "bytes": t.bytes,
            })
        })
        .collect();
    let mut s = serde_json::json!({
        "bus": bus.name().as_str(),
        "dir": bus.dir().display().to_string(),
        "peers": bus.peers(),
        "window_ms": (secs * 1000.0) as u64,
        "topics": topics,
        "lagged": lagged,
        "lagged_window": lagged_window,
    })
    .to_string();
    s.push('\n');
    s
}
