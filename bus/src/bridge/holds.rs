//! The holder's side of hold mirroring: leases refreshed over the bus.

use std::collections::HashMap;
use std::time::Duration;

use ephemeral::{Name, Signal, SignalSink};

use super::{
    HOLD_HEADER, HOPS_HEADER, KEY_HEADER, ORIGIN_HEADER, RELEASE_HEADER, SEQ_HEADER, VIA_HEADER,
    header_u64,
};
use crate::{Bus, Outgoing};

pub(super) struct HoldMirror {
    pub(super) bus: Bus,
    pub(super) sink: SignalSink,
    pub(super) pattern: String,
    pub(super) via: u64,
    pub(super) origin: u64,
    pub(super) own_inbound: u64,
    pub(super) lease: Duration,
}

/// The holder's side of hold mirroring: refresh every live local hold each third of the
/// lease and at every change, and announce releases.
pub(super) async fn mirror_holds(m: HoldMirror) {
    let mut watch = m.sink.watch(&m.pattern);
    let mut tick = tokio::time::interval((m.lease / 3).max(Duration::from_millis(1)));
    // Published holds: local sequence -> (name, origin, origin sequence).
    let mut published: HashMap<u64, (Name, u64, u64)> = HashMap::new();
    let lease_ms = i64::try_from(m.lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        let live: Vec<Signal> = m
            .sink
            .sense(&m.pattern)
            .into_iter()
            .filter(|s| s.is_held() && header_u64(s, VIA_HEADER) != Some(m.via))
            .collect();
        let mut now_published = HashMap::new();
        for signal in &live {
            let origin = header_u64(signal, ORIGIN_HEADER).unwrap_or(m.origin);
            let seq = header_u64(signal, SEQ_HEADER).unwrap_or(signal.sequence());
            let mut out = Outgoing::from_name(signal.name().clone())
                .header(HOLD_HEADER, lease_ms)
                .header(SEQ_HEADER, seq as i64);
            out.origin = Some(origin);
            out.hops =
                u8::try_from(header_u64(signal, HOPS_HEADER).unwrap_or(0)).unwrap_or(u8::MAX);
            out.skip_local = Some(m.own_inbound);
            if let Some(key) = signal.key() {
                out = out.header(KEY_HEADER, key);
            }
            if let Some(payload) = signal.payload() {
                out = out.payload(payload);
            }
            let _ = m.bus.publish_with(out).await;
            now_published.insert(signal.sequence(), (signal.name().clone(), origin, seq));
        }
        for (local_seq, (name, origin, seq)) in &published {
            if !now_published.contains_key(local_seq) {
                let mut out = Outgoing::from_name(name.clone()).header(RELEASE_HEADER, *seq as i64);
                out.origin = Some(*origin);
                out.skip_local = Some(m.own_inbound);
                let _ = m.bus.publish_with(out).await;
            }
        }
        published = now_published;
        tokio::select! {
            () = watch.changed() => {}
            _ = tick.tick() => {}
        }
    }
}
