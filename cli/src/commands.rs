//! The bus subcommands.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ephemeral_bus::{
    BUS_DIR_ENV, Buffer, Bus, BusName, BusOptions, HOLD_HEADER, KEY_HEADER, Message, Outgoing,
    Overflow, PeerInfo, RELEASE_HEADER, SEQ_HEADER,
};
use futures::StreamExt;
use tokio::time::Instant;

use crate::exit::{Failure, IO, NO_BUS, REFUSED, USAGE};
use crate::render::{self, Kind, Line, Style};

/// The bus every subcommand talks to.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) bus: BusName,
    pub(crate) create: bool,
}

/// The default max age of a signal sink ([`ephemeral::SinkOptions`]): a longer `raise --ttl`
/// is cut to it by every sink that keeps the default.
const SINK_MAX_AGE: Duration = Duration::from_secs(60);

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

/// A status line of a one-shot or long-running command, on stdout like `raise`'s (a closed
/// stdout is no reason to stop holding).
fn status(text: &str) {
    let _ = emit(text);
}

/// Writes one line to stdout and flushes it; `false` when stdout is gone (a closed pipe).
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

/// How `watch` shows what it sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchView {
    pub(crate) json: bool,
    pub(crate) count: Option<u64>,
    pub(crate) requests: bool,
    pub(crate) full: bool,
    pub(crate) ids: bool,
}

/// `ephemeral watch`.
pub(crate) async fn watch(target: &Target, pattern: &str, view: &WatchView) -> Result<(), Failure> {
    let bus = target.open().await?;
    let buffer =
        Buffer::Bounded(std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN));
    let messages = bus
        .subscribe_with(pattern, buffer, Overflow::DropOldest)
        .await?;
    // Copies of requests and replies, when asked for: observing never takes a request away
    // from its server.
    let copies = if view.requests {
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
    if view.count == Some(0) {
        return Ok(());
    }
    let style = Style {
        full: view.full,
        ids: view.ids,
    };
    let mut holds = Holds::default();
    let mut shown = 0u64;
    let mut sweep = tokio::time::interval(Duration::from_millis(100));
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        let mut lines = Vec::new();
        tokio::select! {
            () = &mut stop => return Ok(()),
            item = subscription.next() => match item {
                None => return Err(Failure::new(IO, "the bus closed under the watcher")),
                Some(Err(lagged)) => {
                    let text = if view.json {
                        render::lagged_json(lagged.count())
                    } else {
                        render::lagged_text(lagged.count())
                    };
                    if !emit(&text) {
                        return Ok(());
                    }
                }
                Some(Ok(message)) => lines.extend(holds.classify(&message, Instant::now())),
            },
            _ = sweep.tick() => lines.extend(holds.lapsed(Instant::now())),
        }
        for line in lines {
            let text = if view.json {
                line.json()
            } else {
                line.text(style)
            };
            if !emit(&text) {
                return Ok(());
            }
            shown += 1;
            if view.count.is_some_and(|n| shown >= n) {
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

/// The holds a watcher has seen begin, by (origin, sequence): the line that announced each
/// and when its lease runs out.
///
/// The rule is the bridges' own: a hold lapses when no refresh came for a whole lease.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    live: HashMap<(u64, i64), (Line, Instant)>,
}

impl Holds {
    /// The lines a message produces at `now`: a hold shows once when it begins (refreshes
    /// only extend its lease) and once when it is released.
    pub(crate) fn classify(&mut self, message: &Message, now: Instant) -> Vec<Line> {
        let kind = Kind::of(message);
        match kind {
            Kind::Held => {
                let seq = int_header(message, SEQ_HEADER).unwrap_or(0);
                let lease = int_header(message, HOLD_HEADER).unwrap_or(1000).max(1);
                let until = now + Duration::from_millis(lease.unsigned_abs());
                let key = (message.origin(), seq);
                if let Some((_, lease_end)) = self.live.get_mut(&key) {
                    *lease_end = until;
                    return Vec::new();
                }
                let line = Line::from_message(message, kind);
                self.live.insert(key, (line.clone(), until));
                vec![line]
            }
            Kind::Released => {
                let seq = int_header(message, RELEASE_HEADER).unwrap_or(0);
                match self.live.remove(&(message.origin(), seq)) {
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

    /// The holds whose lease ran out by `now`, as `lapsed` lines; they are forgotten.
    pub(crate) fn lapsed(&mut self, now: Instant) -> Vec<Line> {
        let gone: Vec<(u64, i64)> = self
            .live
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter()
            .filter_map(|k| self.live.remove(&k))
            .map(|(mut line, _)| {
                line.kind = Kind::Lapsed;
                line.time = SystemTime::now();
                line
            })
            .collect()
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
        if ttl > SINK_MAX_AGE {
            eprintln!(
                "note: a bridged sink keeps a signal at most its max age (60s by default), so \
                 --ttl {} is cut to that in each sink",
                humantime::format_duration(ttl)
            );
        }
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
    status(&format!(
        "holding {} on bus `{}` (reached {}); Ctrl-C to release",
        signal.name,
        bus.name(),
        reached_text(reached)
    ));
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
    status(&format!("released {}", signal.name));
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
    window_bytes: u64,
}

/// What `stats` shows and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatsView {
    pub(crate) interval: Duration,
    pub(crate) watch: bool,
    pub(crate) json: bool,
    pub(crate) peers: bool,
}

/// `ephemeral stats`.
pub(crate) async fn stats(target: &Target, view: &StatsView) -> Result<(), Failure> {
    let bus = target.open().await?;
    if view.peers {
        return peers(&bus, view).await;
    }
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
    let mut screen = Screen::new(view);
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        let window_end = Instant::now() + view.interval;
        let started = Instant::now();
        for t in topics.values_mut() {
            t.window = 0;
            t.window_bytes = 0;
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
                        let len = message.payload().len() as u64;
                        t.messages += 1;
                        t.window += 1;
                        t.bytes += len;
                        t.window_bytes += len;
                    }
                },
            }
        }
        let window = Window {
            took: started.elapsed(),
            lagged,
            lagged_window,
        };
        let text = if view.json {
            stats_json(&bus, &topics, &window)
        } else {
            stats_text(&bus, &topics, &window)
        };
        if !screen.show(&text) || !view.watch {
            return Ok(());
        }
    }
}

/// Where `stats` frames go: in place in a terminal with `--watch`, else one after another.
struct Screen {
    in_place: bool,
    separate: bool,
    frames: u64,
}

impl Screen {
    fn new(view: &StatsView) -> Self {
        Self {
            in_place: view.watch && std::io::stdout().is_terminal(),
            separate: view.watch && !view.json,
            frames: 0,
        }
    }

    /// Shows one frame; `false` when stdout is gone.
    fn show(&mut self, text: &str) -> bool {
        let mut out = std::io::stdout().lock();
        let written = if self.in_place {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else if self.separate && self.frames > 0 {
            write!(out, "\n{text}")
        } else {
            write!(out, "{text}")
        };
        self.frames += 1;
        written.and_then(|()| out.flush()).is_ok()
    }
}

/// `ephemeral stats --peers`: each other peer with what it announced.
async fn peers(bus: &Bus, view: &StatsView) -> Result<(), Failure> {
    let mut screen = Screen::new(view);
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        let list = bus.peer_list();
        let text = if view.json {
            peers_json(bus, &list)
        } else {
            peers_text(bus, &list)
        };
        if !screen.show(&text) || !view.watch {
            return Ok(());
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(view.interval) => {}
        }
    }
}

fn peers_text(bus: &Bus, list: &[PeerInfo]) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "bus `{}` ({})  other peers: {}\n",
        bus.name(),
        bus.dir().display(),
        list.len()
    );
    let _ = writeln!(s, "{:<16}  {:<9}  PATTERN OR TOPIC", "PEER", "ROLE");
    for peer in list {
        let roles = [
            ("subscribe", &peer.subscriptions),
            ("serve", &peer.serves),
            ("observe", &peer.observes),
        ];
        let mut any = false;
        for (role, names) in roles {
            for name in names {
                let _ = writeln!(s, "{:016x}  {role:<9}  {name}", peer.id);
                any = true;
            }
        }
        if !any {
            let _ = writeln!(s, "{:016x}  {:<9}  -", peer.id, "(none)");
        }
    }
    s
}

fn peers_json(bus: &Bus, list: &[PeerInfo]) -> String {
    let peers: Vec<serde_json::Value> = list
        .iter()
        .map(|p| {
            serde_json::json!({
                "peer": format!("{:016x}", p.id),
                "subscriptions": p.subscriptions,
                "serves": p.serves,
                "observes": p.observes,
            })
        })
        .collect();
    let mut s = serde_json::json!({
        "bus": bus.name().as_str(),
        "dir": bus.dir().display().to_string(),
        "peers": peers,
    })
    .to_string();
    s.push('\n');
    s
}

/// One measuring window of `stats`.
struct Window {
    took: Duration,
    lagged: u64,
    lagged_window: u64,
}

impl Window {
    fn secs(&self) -> f64 {
        self.took.as_secs_f64().max(1e-9)
    }
}

/// A duration as a person reads it: `250ms`, `1s`, `1.5s`, `2m 30s`; sub-unit jitter of a
/// measured window (`1s 1ms`) is rounded away.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    humantime::format_duration(Duration::from_secs(((ms + 500) / 1000) as u64)).to_string()
}

fn stats_text(bus: &Bus, topics: &BTreeMap<String, TopicTraffic>, window: &Window) -> String {
    use std::fmt::Write as _;
    let secs = window.secs();
    let mut s = format!(
        "bus `{}` ({})  peers: {}  window: {}\n",
        bus.name(),
        bus.dir().display(),
        bus.peers(),
        human(window.took),
    );
    let width = topics.keys().map(String::len).max().unwrap_or(5).max(5);
    let _ = writeln!(
        s,
        "{:<width$}  {:>10}  {:>10}  {:>12}  {:>12}",
        "TOPIC", "MESSAGES", "RATE/s", "BYTES", "BYTES/s"
    );
    for (topic, t) in topics {
        let _ = writeln!(
            s,
            "{topic:<width$}  {:>10}  {:>10.1}  {:>12}  {:>12.0}",
            t.messages,
            t.window as f64 / secs,
            t.bytes,
            t.window_bytes as f64 / secs,
        );
    }
    if topics.is_empty() {
        let _ = writeln!(s, "(no traffic seen yet)");
    }
    let _ = writeln!(
        s,
        "lagged: {} message(s) missed by this monitor ({} in this window)",
        window.lagged, window.lagged_window
    );
    s
}

fn stats_json(bus: &Bus, topics: &BTreeMap<String, TopicTraffic>, window: &Window) -> String {
    let secs = window.secs();
    let topics: Vec<serde_json::Value> = topics
        .iter()
        .map(|(topic, t)| {
            serde_json::json!({
                "topic": topic,
                "messages": t.messages,
                "rate": t.window as f64 / secs,
                "bytes": t.bytes,
                "bytes_rate": t.window_bytes as f64 / secs,
            })
        })
        .collect();
    let mut s = serde_json::json!({
        "bus": bus.name().as_str(),
        "dir": bus.dir().display().to_string(),
        "peers": bus.peers(),
        "window_ms": window.took.as_millis() as u64,
        "topics": topics,
        "lagged": window.lagged,
        "lagged_window": window.lagged_window,
    })
    .to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        for (ms, text) in [
            (250, "250ms"),
            (1_000, "1s"),
            (1_001, "1s"),
            (1_049, "1s"),
            (1_500, "1.5s"),
            (59_400, "59.4s"),
            (150_000, "2m 30s"),
        ] {
            assert_eq!(human(Duration::from_millis(ms)), text);
        }
    }

    fn refresh(lease_ms: i64) -> Message {
        // A hold refresh as bridges and `hold` publish it.
        let out = Outgoing::new("circuit.open")
            .unwrap()
            .header(SEQ_HEADER, 7_i64)
            .header(HOLD_HEADER, lease_ms);
        message_of(out)
    }

    /// The message a subscriber would receive for `out`, built through a real bus.
    fn message_of(out: Outgoing) -> Message {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let bus = Bus::open_with("t", BusOptions::default().dir(dir.path()))
                .await
                .unwrap();
            let mut sub = bus.subscribe("*").await.unwrap();
            bus.publish_with(out).await.unwrap();
            sub.next().await.unwrap().unwrap()
        })
    }

    /// Times are given, not read from a clock: the rule alone is under test.
    #[test]
    fn a_hold_lapses_one_lease_after_its_last_refresh() {
        let message = refresh(1000);
        let mut holds = Holds::default();
        let start = Instant::now();
        assert_eq!(holds.classify(&message, start).len(), 1, "shown once");
        let refreshed = start + Duration::from_millis(300);
        assert!(
            holds.classify(&message, refreshed).is_empty(),
            "refreshes are silent"
        );
        assert!(
            holds
                .lapsed(refreshed + Duration::from_millis(990))
                .is_empty()
        );
        let lapsed = holds.lapsed(refreshed + Duration::from_millis(1010));
        assert_eq!(lapsed.len(), 1, "a whole lease without a refresh: lapsed");
        assert_eq!(lapsed[0].kind, Kind::Lapsed);
        assert!(holds.lapsed(refreshed + Duration::from_secs(10)).is_empty());
    }
}
