//! `Bridge`: a signal sink joined to a bus.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::{HeaderValue, Hold, Signal, SignalBuilder, SignalSink};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Bus, BusError, Outgoing, process_origin};

mod frames;
mod holds;
use crate::sync::Mutex;
pub use frames::{BRIDGE_HEADERS, Bridged};
use holds::{HoldMirror, mirror_holds};

/// Header carrying the process that first raised a bridged signal.
pub const ORIGIN_HEADER: &str = "bus.origin";
/// Header carrying how many bridges a signal has crossed.
pub const HOPS_HEADER: &str = "bus.hops";
/// Header naming the bus a bridged signal arrived from.
pub const VIA_HEADER: &str = "bus.via";
/// Header carrying the signal's sequence number in its origin sink (with the origin, it
/// identifies a signal across every path it takes).
pub const SEQ_HEADER: &str = "bus.seq";
/// Header of a hold refresh: the lease in milliseconds.
pub const HOLD_HEADER: &str = "bus.hold";
/// Header of a hold release: the origin sequence of the released hold.
pub const RELEASE_HEADER: &str = "bus.release";
/// Header carrying a signal's key across the bus.
pub const KEY_HEADER: &str = "signal.key";

/// Options of [`Bus::bridge_with`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BridgeOptions {
    max_hops: u8,
    hold_lease: Duration,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            max_hops: 8,
            hold_lease: Duration::from_secs(1),
        }
    }
}

impl BridgeOptions {
    /// How many bridges a signal may cross before it is no longer forwarded (default 8): the
    /// last guard against loops in topologies of several buses.
    pub fn max_hops(mut self, hops: u8) -> Self {
        self.max_hops = hops;
        self
    }

    /// How long a mirrored hold survives without a refresh from its holder (default 1 s;
    /// holders refresh every third of it, and mirrors check every third of it). A holder
    /// that dies loses its mirrored holds between 2/3 and 4/3 of a lease later; a holder
    /// that releases loses them at once.
    pub fn hold_lease(mut self, lease: Duration) -> Self {
        self.hold_lease = lease.max(Duration::from_millis(3));
        self
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    raised: AtomicU64,
    looped: AtomicU64,
    failed: AtomicU64,
}

/// A [`SignalSink`] joined to a [`Bus`]: local signals matching the pattern are published,
/// and remote ones are raised locally. Dropping the bridge stops both directions.
///
/// Loops cannot happen: a bridged signal carries its origin process, its hop count and the
/// bus it came from. A bridge never publishes a signal back onto the bus it came from, drops
/// any signal whose origin is its own sink, raises a signal that reaches a sink along two
/// paths only once (by origin and origin sequence), and stops forwarding after
/// [`BridgeOptions::max_hops`]. So a ring of buses delivers one raise once per sink. The signal's remaining
/// time to live travels with it (wall-clock agnostic), so it expires on time everywhere.
///
/// Holds are mirrored as leases: the holder's bridge refreshes each live hold every third of
/// [`BridgeOptions::hold_lease`] (1 s) and announces its release at once; the other side
/// keeps a [`Hold`](ephemeral::Hold) of its own while refreshes come, so a mirrored hold ends
/// when the holder releases it, or when no refresh came for a whole lease: between 2/3 and
/// 4/3 of a lease after the holder dies (mirrors check every third of a lease).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
/// use ephemeral_bus::Bus;
///
/// let bus = Bus::open("doc-signals-bridge").await?;
/// let sink = SignalSink::default();
/// let bridge = bus.bridge(&sink, "error.*").await?;
/// sink.raise("error.db")?; // now published to every process bridged on this bus
/// # drop(bridge);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the Bridge stops it in both directions"]
pub struct Bridge {
    tasks: [JoinHandle<()>; 3],
    counters: Arc<Counters>,
}

impl Bridge {
    /// Local signals published to the bus so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Remote signals raised in the local sink so far.
    #[must_use]
    pub fn raised(&self) -> u64 {
        self.counters.raised.load(Ordering::Relaxed)
    }

    /// Signals not forwarded because they would loop (own origin or hop limit).
    #[must_use]
    pub fn looped(&self) -> u64 {
        self.counters.looped.load(Ordering::Relaxed)
    }

    /// Signals that could not be forwarded (a publish or raise error, or sink lag).
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Signals already raised in a sink through some bridge, by (sink id, origin, sequence), so a
/// signal reaching a sink along two paths (two buses) is raised once. Entries leave when the
/// signal would have expired; the table is pruned whenever it passes 1024 entries, so it holds
/// at most the bridged signals still alive (plus 1024).
static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

/// (sink id, origin, origin sequence) → until when to remember it.
type Seen = HashMap<(u64, u64, u64), Instant>;

/// Records the signal; false if it was already seen for this sink.
fn first_sighting(sink: u64, origin: u64, seq: u64, until: Instant) -> bool {
    let mut seen = SEEN.lock();
    let seen = seen.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    if seen.len() > 1024 {
        seen.retain(|_, until| *until > now);
    }
    match seen.get(&(sink, origin, seq)) {
        Some(expiry) if *expiry > now => false,
        _ => {
            seen.insert((sink, origin, seq), until);
            true
        }
    }
}

fn header_u64(signal: &Signal, key: &str) -> Option<u64> {
    match signal.header(key) {
        // The u64 ids travel as the bits of an i64 header.
        Some(HeaderValue::Int(i)) => Some(*i as u64),
        _ => None,
    }
}

impl Bus {
    /// Joins `sink` to this bus for the signals matching `pattern`, both ways.
    ///
    /// # Errors
    ///
    /// [`BusError::Closed`] if the bus was closed.
    pub async fn bridge(&self, sink: &SignalSink, pattern: &str) -> Result<Bridge, BusError> {
        self.bridge_with(sink, pattern, BridgeOptions::default())
            .await
    }

    /// [`bridge`](Self::bridge) with options.
    ///
    /// # Errors
    ///
    /// [`BusError::Closed`] if the bus was closed.
    pub async fn bridge_with(
        &self,
        sink: &SignalSink,
        pattern: &str,
        options: BridgeOptions,
    ) -> Result<Bridge, BusError> {
        let via = {
            let mut h = DefaultHasher::new();
            self.dir().hash(&mut h);
            h.finish()
        };
        // The origin of signals first raised in this sink: the process and the sink within it.
        let origin = {
            let mut h = DefaultHasher::new();
            (process_origin(), sink.id()).hash(&mut h);
            h.finish()
        };
        let counters = Arc::new(Counters::default());
        let mut remote = self.subscribe(pattern).await?;
        let mut local = sink.subscribe(pattern);
        let own_inbound = remote.local_id();

        let out_bus = self.clone();
        let out_sink = sink.clone();
        let out_counters = Arc::clone(&counters);
        let max_hops = options.max_hops;
        let outward = tokio::spawn(async move {
            while let Some(item) = local.next().await {
                let Ok(signal) = item else {
                    out_counters.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if header_u64(&signal, VIA_HEADER) == Some(via) {
                    // It came from this bus: every peer has it already.
                    continue;
                }
                if signal.is_held() {
                    // Holds travel as leases (see `mirror_holds`), not as events.
                    continue;
                }
                let hops = header_u64(&signal, HOPS_HEADER).unwrap_or(0);
                if hops >= u64::from(max_hops) {
                    out_counters.looped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let ttl = signal.remaining(Instant::now(), out_sink.max_age());
                if ttl.is_zero() {
                    continue;
                }
                let Ok(mut out) = Outgoing::new(signal.name()) else {
                    continue;
                };
                out.ttl = Some(ttl);
                out.origin = Some(header_u64(&signal, ORIGIN_HEADER).unwrap_or(origin));
                out.hops = u8::try_from(hops).unwrap_or(u8::MAX);
                // Our own inbound side must not raise what we just published.
                out.skip_local = Some(own_inbound);
                if let Some(payload) = signal.payload() {
                    out = out.payload(payload);
                }
                let seq = header_u64(&signal, SEQ_HEADER).unwrap_or(signal.sequence());
                out = out.header(SEQ_HEADER, seq as i64);
                for (key, value) in signal.headers() {
                    if !matches!(
                        &**key,
                        ORIGIN_HEADER | HOPS_HEADER | VIA_HEADER | SEQ_HEADER
                    ) {
                        out.headers.push((Arc::clone(key), value.clone()));
                    }
                }
                if let Some(key) = signal.key() {
                    out = out.header(KEY_HEADER, key);
                }
                match out_bus.publish_with(out).await {
                    Ok(_) => out_counters.published.fetch_add(1, Ordering::Relaxed),
                    Err(_) => out_counters.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });

        let holds = tokio::spawn(mirror_holds(HoldMirror {
            bus: self.clone(),
            sink: sink.clone(),
            pattern: pattern.to_owned(),
            via,
            origin,
            own_inbound,
            lease: options.hold_lease,
        }));

        let mut inward = Inward {
            sink: sink.clone(),
            counters: Arc::clone(&counters),
            via,
            origin,
            mirrored: HashMap::new(),
        };
        let sweep_every = options.hold_lease / 3;
        let inward = tokio::spawn(async move {
            let mut sweep = tokio::time::interval(sweep_every.max(Duration::from_millis(1)));
            loop {
                tokio::select! {
                    item = remote.next() => match item {
                        Some(Ok(message)) => inward.handle(&message),
                        Some(Err(_)) => {
                            inward.counters.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        None => break,
                    },
                    _ = sweep.tick() => {
                        // A holder that stopped refreshing (it died) loses its holds here.
                        let now = Instant::now();
                        inward.mirrored.retain(|_, (_, until)| *until > now);
                    }
                }
            }
        });
        Ok(Bridge {
            tasks: [outward, inward, holds],
            counters,
        })
    }
}

/// The inbound side of a bridge: raises remote signals and keeps mirrored holds.
struct Inward {
    sink: SignalSink,
    counters: Arc<Counters>,
    via: u64,
    origin: u64,
    /// Mirrored holds by (origin, origin sequence), with the end of their lease.
    mirrored: HashMap<(u64, u64), (Hold, Instant)>,
}

impl Inward {
    fn handle(&mut self, message: &crate::Message) {
        if message.origin() == self.origin {
            self.counters.looped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = match Bridged::of(message) {
            Some(Bridged::Release { seq: released }) => {
                // Dropping the guard releases the mirrored hold.
                self.mirrored.remove(&(message.origin(), released));
                return;
            }
            Some(Bridged::Hold { seq, lease }) => {
                let until = crate::after(lease);
                let key = (message.origin(), seq);
                if let Some((_, lease_end)) = self.mirrored.get_mut(&key) {
                    *lease_end = until;
                    return;
                }
                match self.sink.hold_with(self.builder(message)) {
                    Ok(hold) => {
                        self.mirrored.insert(key, (hold, until));
                        self.counters.raised.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return;
            }
            Some(Bridged::Signal { seq }) => Some(seq),
            None => None,
        };
        let ttl = message.ttl().unwrap_or_else(|| self.sink.max_age());
        if let Some(seq) = seq {
            let until = Instant::now()
                .checked_add(ttl.min(self.sink.max_age()))
                .unwrap_or_else(Instant::now);
            if !first_sighting(self.sink.id(), message.origin(), seq, until) {
                self.counters.looped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match self.sink.raise_with(self.builder(message).expires_in(ttl)) {
            Ok(_) => self.counters.raised.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn builder(&self, message: &crate::Message) -> SignalBuilder {
        let mut signal = SignalBuilder::new(message.topic().clone())
            .header(ORIGIN_HEADER, message.origin() as i64)
            .header(HOPS_HEADER, i64::from(message.hops()) + 1)
            .header(VIA_HEADER, self.via as i64);
        for (key, value) in message.headers() {
            match &**key {
                KEY_HEADER => signal = signal.key(Arc::from(value.to_string())),
                HOLD_HEADER | RELEASE_HEADER => {}
                _ => signal = signal.header(key, value.clone()),
            }
        }
        if !message.payload().is_empty() {
            signal = signal.payload(Arc::<[u8]>::from(message.payload()));
        }
        signal
    }
}
