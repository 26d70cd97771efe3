//! `ephemeral watch`: matching signals and messages as they happen, one line each.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use ephemeral_bus::{Bridged, Buffer, Message};
use futures::StreamExt;
use tokio::time::Instant;

use super::{Conn, Outages, Target, bus_only, emit, interrupted};
use crate::exit::{Failure, IO};
use crate::render::{self, Kind, Line, Style};

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
    if view.requests && matches!(target, Target::Nats { .. }) {
        return Err(bus_only(
            "watch --requests",
            "NATS sends a reply straight to its requester's inbox, where no one else can \
             observe it; watch the requests' bus, or drop --requests",
        ));
    }
    let conn = target.connect().await?;
    let messages = conn.subscribe(pattern, 4096).await?;
    // Copies of requests and replies, when asked for: observing never takes a request away
    // from its server.
    let copies = match (&conn, view.requests) {
        (Conn::Bus(bus), true) => {
            let buffer = Buffer::Bounded(
                std::num::NonZeroUsize::new(4096).unwrap_or(std::num::NonZeroUsize::MIN),
            );
            Some(bus.observe_with(pattern, buffer).await?)
        }
        _ => None,
    };
    // Watched from before the ready line: an outage from then on is said.
    let mut outages = Outages::of(&conn);
    let mut subscription =
        futures::stream::select(messages, futures::stream::iter(copies).flatten());
    say!(
        "watching `{pattern}` on {}; Ctrl-C to stop",
        conn.location()
    );
    if view.count == Some(0) {
        return Ok(());
    }
    let style = Style {
        full: view.full,
        terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
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
                None => return Err(Failure::new(IO, "the connection closed under the watcher")),
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
            change = outages.next() => say!("{}", change.receiver_note()),
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

/// The holds a watcher has seen begin, by (origin, sequence): the line that announced each
/// and when its lease runs out.
///
/// The rule is the bridges' own: a hold lapses when no refresh came for a whole lease.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    live: HashMap<(u64, u64), (Line, Instant)>,
}

impl Holds {
    /// The lines a message produces at `now`: a hold shows once when it begins (refreshes
    /// only extend its lease) and once when it is released.
    pub(crate) fn classify(&mut self, message: &Message, now: Instant) -> Vec<Line> {
        let kind = Kind::of(message);
        match Bridged::of(message) {
            Some(Bridged::Hold { seq, lease, .. }) => {
                let until = now + lease;
                let key = (message.origin(), seq);
                if let Some((_, lease_end)) = self.live.get_mut(&key) {
                    *lease_end = until;
                    return Vec::new();
                }
                let line = Line::from_message(message, kind);
                self.live.insert(key, (line.clone(), until));
                vec![line]
            }
            Some(Bridged::Release { seq }) => match self.live.remove(&(message.origin(), seq)) {
                Some((mut line, _)) => {
                    line.kind = Kind::Released;
                    line.time = message.timestamp();
                    vec![line]
                }
                None => vec![Line::from_message(message, kind)],
            },
            _ => vec![Line::from_message(message, kind)],
        }
    }

    /// The holds whose lease ran out by `now`, as `lapsed` lines; they are forgotten.
    pub(crate) fn lapsed(&mut self, now: Instant) -> Vec<Line> {
        let gone: Vec<(u64, u64)> = self
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

#[cfg(test)]
mod tests {
    use ephemeral_bus::{Bus, BusOptions, Outgoing};

    use super::*;

    fn refresh(lease_ms: u64) -> Message {
        // A hold refresh as bridges and `hold` publish it.
        let out = Bridged::hold(7, Duration::from_millis(lease_ms))
            .outgoing("circuit.open")
            .unwrap();
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
