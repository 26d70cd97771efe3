//! `ephemeral stats`: traffic per topic over a window, or the peers and what they announced.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use ephemeral_bus::{Bus, PeerInfo};
use futures::StreamExt;
use tokio::time::Instant;

use super::{Conn, Outages, Target, bus_only, interrupted};
use crate::exit::{Failure, IO};

/// A window end far enough to mean "never" (30 years), for an interval the clock cannot
/// add.
const FOR_EVER: Duration = Duration::from_secs(86_400 * 365 * 30);

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
    if view.peers && matches!(target, Target::Nats { .. }) {
        return Err(bus_only(
            "stats --peers",
            "the NATS server lists its connections and their subscriptions itself (its \
             monitoring port: /connz?subs=1)",
        ));
    }
    let conn = target.connect().await?;
    if let (true, Conn::Bus(bus)) = (view.peers, &conn) {
        return peers(bus, view).await;
    }
    // A monitor of its own: every publisher sends it every message while it runs (requests
    // and replies are not messages on topics, so they are not counted).
    let mut monitor = conn.subscribe("*", 65_536).await?;
    let mut topics: BTreeMap<String, TopicTraffic> = BTreeMap::new();
    let mut lagged = 0u64;
    let mut screen = Screen::new(view);
    let mut outages = Outages::of(&conn);
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        // An interval past what the clock can count (`--interval 500000000000years`) is a
        // window that never ends, not an overflow panic.
        let window_end = Instant::now()
            .checked_add(view.interval)
            .unwrap_or_else(|| Instant::now() + FOR_EVER);
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
                change = outages.next() => say!("{}", change.receiver_note()),
                item = monitor.next() => match item {
                    None => return Err(Failure::new(IO, "the connection closed under the monitor")),
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
            stats_json(&conn, &topics, &window)
        } else {
            stats_text(&conn, &topics, &window)
        };
        if !screen.show(&text) || !view.watch {
            return Ok(());
        }
    }
}

/// Where `stats` frames go: in place in a terminal with `--watch` (the table only: JSON is
/// one object per line wherever it goes, as `top --json`), else one after another.
struct Screen {
    in_place: bool,
    separate: bool,
    frames: u64,
}

impl Screen {
    fn new(view: &StatsView) -> Self {
        Self {
            in_place: view.watch && !view.json && std::io::stdout().is_terminal(),
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
                // Another process's text: control characters are shown as spaces, so no
                // peer can send escape sequences to the terminal or break the table.
                let name = crate::top::fmt::one_line(name);
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

/// `stats --peers --json`: the bus, its directory and each peer.
#[derive(serde::Serialize)]
struct PeersJson<'a> {
    bus: &'a str,
    dir: String,
    peers: Vec<PeerJson<'a>>,
}

/// One peer of `stats --peers --json`: its id as 16 hex digits and what it announced.
#[derive(serde::Serialize)]
struct PeerJson<'a> {
    peer: String,
    subscriptions: &'a [String],
    serves: &'a [String],
    observes: &'a [String],
}

fn peers_json(bus: &Bus, list: &[PeerInfo]) -> String {
    let json = PeersJson {
        bus: bus.name().as_str(),
        dir: bus.dir().display().to_string(),
        peers: list
            .iter()
            .map(|p| PeerJson {
                peer: format!("{:016x}", p.id),
                subscriptions: &p.subscriptions,
                serves: &p.serves,
                observes: &p.observes,
            })
            .collect(),
    };
    let mut s = serde_json::to_string(&json).unwrap_or_default();
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

fn stats_text(conn: &Conn, topics: &BTreeMap<String, TopicTraffic>, window: &Window) -> String {
    use std::fmt::Write as _;
    let secs = window.secs();
    let peers = match conn {
        Conn::Bus(bus) => format!("  peers: {}", bus.peers()),
        Conn::Nats(_) => String::new(),
    };
    let mut s = format!(
        "{}{peers}  window: {}\n",
        conn.location(),
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

/// `stats --json`: one measuring window, and where it was measured (a bus with its
/// directory and peers, or a NATS server with its prefix).
#[derive(serde::Serialize)]
struct StatsJson<'a> {
    window_ms: u64,
    topics: Vec<TopicJson<'a>>,
    lagged: u64,
    lagged_window: u64,
    #[serde(flatten)]
    location: LocationJson<'a>,
}

/// Where `stats` measured.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum LocationJson<'a> {
    Bus {
        bus: &'a str,
        dir: String,
        peers: usize,
    },
    Nats {
        nats: &'a str,
        prefix: &'a str,
    },
}

/// One topic of `stats --json`: totals, and rates over the window.
#[derive(serde::Serialize)]
struct TopicJson<'a> {
    topic: &'a str,
    messages: u64,
    rate: f64,
    bytes: u64,
    bytes_rate: f64,
}

fn stats_json(conn: &Conn, topics: &BTreeMap<String, TopicTraffic>, window: &Window) -> String {
    let secs = window.secs();
    let json = StatsJson {
        window_ms: window.took.as_millis() as u64,
        topics: topics
            .iter()
            .map(|(topic, t)| TopicJson {
                topic,
                messages: t.messages,
                rate: t.window as f64 / secs,
                bytes: t.bytes,
                bytes_rate: t.window_bytes as f64 / secs,
            })
            .collect(),
        lagged: window.lagged,
        lagged_window: window.lagged_window,
        location: match conn {
            Conn::Bus(bus) => LocationJson::Bus {
                bus: bus.name().as_str(),
                dir: bus.dir().display().to_string(),
                peers: bus.peers(),
            },
            Conn::Nats(nats) => LocationJson::Nats {
                nats: nats.url(),
                prefix: nats.prefix(),
            },
        },
    };
    let mut s = serde_json::to_string(&json).unwrap_or_default();
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
}
