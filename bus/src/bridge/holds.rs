//! The holder's side of hold mirroring: leases refreshed over the link, and releases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{Name, Signal, SignalSink};

use super::mirrors::{self, next_refresh};
use super::{
    BRIDGE_HEADERS, BRIDGE_ID_HEADER, Bridged, Counters, HOPS_HEADER, KEY_HEADER, ORIGIN_HEADER,
    SEQ_HEADER, VIA_HEADER, header_u64,
};
use crate::Outgoing;
use crate::link::Link;

pub(super) struct HoldMirror<L> {
    pub(super) link: L,
    pub(super) sink: SignalSink,
    pub(super) pattern: String,
    pub(super) via: u64,
    pub(super) origin: u64,
    pub(super) bridge: u64,
    pub(super) lease: Duration,
    pub(super) max_hops: u8,
    pub(super) counters: Arc<Counters>,
}

/// A hold this bridge refreshes: its name, origin and origin sequence.
type Published = HashMap<u64, (Name, u64, u64)>;

/// Refreshes every live hold of the sink (its own, and those mirrored from another medium)
/// each third of the lease and at every change, and announces releases.
///
/// It watches the holds alone ([`SignalSink::watch_holds`]) and reads them alone
/// ([`SignalSink::holds`]): a watch of every change would wake this task at each raise of
/// the bridged pattern, and each time it copied every live signal of the pattern (a full
/// window at 1,000 a second) to find the few holds.
pub(super) async fn mirror_holds<L: Link>(m: HoldMirror<L>) {
    let mut watch = m.sink.watch_holds(&m.pattern);
    let mut tick = tokio::time::interval((m.lease / 3).max(Duration::from_millis(1)));
    // Holds refreshed last round, by local sequence.
    let mut published: Published = HashMap::new();
    loop {
        let live: Vec<Signal> = m
            .sink
            .holds(&m.pattern)
            .into_iter()
            .filter(|s| header_u64(s, VIA_HEADER) != Some(m.via))
            .filter(|s| !m.link.is_local_signal(s.name()))
            .collect();
        let mut now_published = HashMap::new();
        for signal in &live {
            let hops = header_u64(signal, HOPS_HEADER).unwrap_or(0);
            if hops >= u64::from(m.max_hops) {
                continue;
            }
            let Some((origin, seq, refresh, lease)) = m.identify(signal) else {
                continue;
            };
            let out = m
                .outgoing(
                    signal,
                    Bridged::Hold {
                        seq,
                        lease,
                        refresh: Some(refresh),
                    },
                )
                .origin(origin)
                .hops(u8::try_from(hops).unwrap_or(u8::MAX));
            // A refresh lost during an outage is sent again next round.
            let _ = m.link.publish(out).await;
            now_published.insert(signal.sequence(), (signal.name().clone(), origin, seq));
        }
        for (local_seq, (name, origin, seq)) in &published {
            if !now_published.contains_key(local_seq) {
                let out = Bridged::Release { seq: *seq }
                    .stamp(Outgoing::from_name(name.clone()))
                    .header(BRIDGE_ID_HEADER, m.bridge as i64)
                    .origin(*origin);
                if m.link.publish(out).await.is_err() {
                    // Its mirrors lapse within a lease instead.
                    m.counters.failed();
                }
            }
        }
        published = now_published;
        tokio::select! {
            () = watch.changed() => {}
            _ = tick.tick() => {}
        }
    }
}

impl<L: Link> HoldMirror<L> {
    /// The hold's origin, origin sequence, refresh number and lease to send: a fresh number
    /// and this link's lease for the sink's own hold; for a mirrored one, the number its
    /// holder sent (so copies around a loop keep nothing alive) and the longer of the two
    /// leases (so a mirror never lapses between two refreshes of a slower holder).
    fn identify(&self, signal: &Signal) -> Option<(u64, u64, u64, Duration)> {
        match header_u64(signal, ORIGIN_HEADER) {
            None => Some((self.origin, signal.sequence(), next_refresh(), self.lease)),
            Some(origin) => {
                let seq = header_u64(signal, SEQ_HEADER)?;
                let (refresh, lease) = mirrors::current(self.sink.id(), origin, seq)?;
                Some((origin, seq, refresh, lease.max(self.lease)))
            }
        }
    }

    /// The message standing for `signal` as `bridged`: its key, payload and user headers.
    fn outgoing(&self, signal: &Signal, bridged: Bridged) -> Outgoing {
        let mut out = bridged
            .stamp(Outgoing::from_name(signal.name().clone()))
            .header(BRIDGE_ID_HEADER, self.bridge as i64);
        if let Some(key) = signal.key() {
            out = out.header(KEY_HEADER, key);
        }
        if let Some(payload) = signal.payload() {
            out = out.payload(payload);
        }
        for (key, value) in signal.headers() {
            if !BRIDGE_HEADERS.contains(&&**key) {
                out.headers.push((Arc::clone(key), value.clone()));
            }
        }
        out
    }
}
