//! `Bridge`: a signal sink joined to a [`Link`] (the bus, or NATS through `ephemeral-nats`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::{HeaderValue, Pattern, Signal, SignalBuilder, SignalSink};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::link::{Link, via_of};
use crate::{Bus, BusError, Message, Outgoing, process_origin};

mod frames;
mod holds;
mod mirrors;
mod sightings;
pub use frames::{BRIDGE_HEADERS, Bridged};
use holds::{HoldMirror, mirror_holds};
use mirrors::{Refresh, Refreshed};

/// Header carrying the process that first raised a bridged signal.
pub const ORIGIN_HEADER: &str = "bus.origin";
/// Header carrying how many bridges a signal has crossed.
pub const HOPS_HEADER: &str = "bus.hops";
/// Header naming the medium a bridged signal arrived by (see [`Link::via`]).
pub const VIA_HEADER: &str = "bus.via";
/// Header carrying the signal's sequence number in its origin sink (with the origin, it
/// identifies a signal across every path it takes).
pub const SEQ_HEADER: &str = "bus.seq";
/// Header of a hold refresh: the lease in milliseconds.
pub const HOLD_HEADER: &str = "bus.hold";
/// Header of a hold refresh: the holder's refresh number (see [`Bridged::Hold`]).
pub const REFRESH_HEADER: &str = "bus.refresh";
/// Header of a hold release: the origin sequence of the released hold.
pub const RELEASE_HEADER: &str = "bus.release";
/// Header carrying a signal's key across the bus.
pub const KEY_HEADER: &str = "signal.key";
/// Header naming the bridge that published a message, so that it skips its own messages
/// when its link hands them back.
pub const BRIDGE_ID_HEADER: &str = "bus.bridge";

/// Options of [`Bus::bridge_with`] (and `Nats::bridge_with`).
#[derive(Debug, Clone)]
#[must_use]
pub struct BridgeOptions {
    max_hops: u8,
    hold_lease: Option<Duration>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            max_hops: 8,
            hold_lease: None,
        }
    }
}

impl BridgeOptions {
    /// How many bridges a signal may cross before it is no longer forwarded (default 8): the
    /// last guard against loops in topologies of several buses. `1` bridges the sink's own
    /// signals and holds and forwards none that came from elsewhere; `0` is taken as `1`
    /// (a bridge that publishes nothing of its own sink is not a bridge: it used to count
    /// the sink's own signals as loops and publish nothing).
    pub fn max_hops(mut self, hops: u8) -> Self {
        self.max_hops = hops.max(1);
        self
    }

    /// How long a mirrored hold survives without a refresh from its holder (default: the
    /// link's, [`Link::default_hold_lease`]: 1 s on the bus, 3 s over NATS; holders refresh
    /// every third of it, and mirrors check every third of it). A holder that dies loses
    /// its mirrored holds between 2/3 and 4/3 of a lease later; a holder that releases
    /// loses them at once.
    pub fn hold_lease(mut self, lease: Duration) -> Self {
        self.hold_lease = Some(lease.max(Duration::from_millis(3)));
        self
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    raised: AtomicU64,
    looped: AtomicU64,
    failed: AtomicU64,
    lagged: AtomicU64,
}

// Statistics only: Relaxed, nothing is ordered by these counters.
impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        Self::add(&self.failed, 1);
    }
}

/// A [`SignalSink`] joined to a [`Link`] — a [`Bus`], or NATS through `ephemeral-nats` —:
/// local signals matching the pattern are published, and remote ones are raised locally.
/// Dropping the bridge stops both directions. Both links go through this one type, so the
/// rules below hold on one machine and across many alike.
///
/// What travels: the signal's name, key, payload and headers (typed), and its *remaining*
/// time to live (wall-clock agnostic), so it expires on time everywhere.
///
/// Limits: the raised copy carries four bookkeeping headers besides the signal's own
/// (`bus.origin`, `bus.hops`, `bus.via`, `bus.seq`), so a signal crosses when it has at most
/// the receiving sink's `max_headers` − 4 of its own (28 by default); one with more is
/// refused by that sink and counted in the receiving bridge's [`failed`](Self::failed). On
/// the bus a header key is at most 255 bytes and a string value at most 65,535
/// ([`BusError::HeadersTooLarge`]): such a signal is not published, and counts in the
/// sending bridge's `failed`. Never silent, but lost: keep bridged signals' headers few and
/// short, and put data in the payload.
///
/// What does not travel: removing a raised signal early
/// ([`retract`](SignalSink::retract), `retract_key`, `clear`, eviction by capacity) is
/// local; the copies in other sinks live out their time to live. (The sink reports no
/// removal a bridge could forward, nor removes one signal by its number.) For a condition
/// that can end early everywhere, [`hold`](SignalSink::hold) it: a release crosses at once.
///
/// Loops cannot happen: a bridged signal carries its origin process, its hop count and the
/// medium it came by. A bridge never publishes a signal back onto the medium it came from,
/// skips its own messages when its link hands them back, drops any signal whose origin is
/// its own sink, raises a signal that reaches a sink along two paths only once (by origin
/// and origin sequence), and stops forwarding after [`BridgeOptions::max_hops`]. (To know
/// what it raised, a sink remembers each bridged signal until it would have expired, and
/// at most as many as its capacity, the newest: a copy arriving after more than `capacity`
/// newer bridged signals is raised again, its first copy pushed out of the sink by then.
/// That memory is bounded by the sinks' capacities, not by rate × time to live.) So a ring
/// of buses (and NATS) delivers one raise once per sink. A plain message on a bridged
/// topic (`Bus::publish`, not from a bridge) is raised as a signal and identified by its
/// publisher's number the same way: once per sink, however many bridges reach it.
///
/// Holds are mirrored as leases: the holder's bridge refreshes each live hold every third
/// of the lease ([`BridgeOptions::hold_lease`]: 1 s on the bus, 3 s over NATS) and
/// announces its release at once; the other side keeps a [`Hold`](ephemeral::Hold) of its
/// own while refreshes come, so a mirrored hold ends when the holder releases it, or when
/// no refresh came for a whole lease: between 2/3 and 4/3 of a lease after the holder dies
/// or the network between them breaks (mirrors check every third of a lease), and it comes
/// back with the next refresh once the network does (a documented flap). A hold reaching a
/// sink along two paths is held there once. Each refresh carries the holder's increasing
/// refresh number, and only a newer one extends a mirror, so in a ring, copies of old
/// refreshes never keep a dead holder's hold alive.
///
/// Loss is never silent: what the link reports lost (the bus's lag reports, gaps in a NATS
/// publisher's numbers after a reconnect or a slow consumer) is counted in
/// [`lagged`](Self::lagged); what could not be published (say, while disconnected) in
/// [`failed`](Self::failed).
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
    sink: u64,
    id: u64,
}

impl Bridge {
    /// Joins `sink` to `link` for the signals matching `pattern`, both ways: what
    /// [`Bus::bridge_with`] and `Nats::bridge_with` do.
    ///
    /// # Errors
    ///
    /// The link's, when it cannot subscribe.
    pub async fn start<L: Link>(
        link: &L,
        sink: &SignalSink,
        pattern: &str,
        options: BridgeOptions,
    ) -> Result<Bridge, L::Error> {
        let via = link.via();
        let id = crate::bus::random_u64(via ^ sink.id());
        // The origin of signals first raised in this sink: the process and the sink within it.
        let origin = via_of((process_origin(), sink.id()));
        let lease = options
            .hold_lease
            .unwrap_or_else(|| link.default_hold_lease());
        let counters = Arc::new(Counters::default());
        let remote = link.subscribe(&Pattern::new(pattern)).await?;
        let local = sink.subscribe(pattern);

        let outward = tokio::spawn(
            Outward {
                link: link.clone(),
                sink: sink.clone(),
                counters: Arc::clone(&counters),
                via,
                origin,
                bridge: id,
                max_hops: options.max_hops,
            }
            .run(local),
        );
        let holds = tokio::spawn(mirror_holds(HoldMirror {
            link: link.clone(),
            sink: sink.clone(),
            pattern: pattern.to_owned(),
            via,
            origin,
            bridge: id,
            lease,
            max_hops: options.max_hops,
            counters: Arc::clone(&counters),
        }));
        let inward = tokio::spawn(
            Inward {
                sink: sink.clone(),
                counters: Arc::clone(&counters),
                via,
                origin,
                bridge: id,
            }
            .run(remote, lease),
        );
        Ok(Bridge {
            tasks: [outward, inward, holds],
            counters,
            sink: sink.id(),
            id,
        })
    }

    /// Local signals published to the link so far (holds and their refreshes not counted).
    #[must_use]
    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    /// Remote signals raised (and holds mirrored) in the local sink so far.
    #[must_use]
    pub fn raised(&self) -> u64 {
        self.counters.raised.load(Ordering::Relaxed)
    }

    /// Signals not forwarded because they would loop (own origin, hop limit, or already
    /// raised in this sink along another path).
    #[must_use]
    pub fn looped(&self) -> u64 {
        self.counters.looped.load(Ordering::Relaxed)
    }

    /// Signals that could not be forwarded: a publish refused (disconnected, say), a
    /// raise refused by the sink, or signals the local sink subscription lost (each one
    /// counted: when signals are raised faster than the link takes them, the bridge's
    /// subscription of the sink drops the oldest, and every one dropped counts here).
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Remote messages lost on the way, as the link reported them ([`Lagged`](crate::Lagged)):
    /// gaps noticed in a publisher's numbers, or a full subscriber.
    #[must_use]
    pub fn lagged(&self) -> u64 {
        self.counters.lagged.load(Ordering::Relaxed)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        mirrors::forget_bridge(self.sink, self.id);
    }
}

pub(crate) fn header_u64(signal: &Signal, key: &str) -> Option<u64> {
    match signal.header(key) {
        // The u64 ids travel as the bits of an i64 header.
        Some(HeaderValue::Int(i)) => Some(*i as u64),
        _ => None,
    }
}

fn message_u64(message: &Message, key: &str) -> Option<u64> {
    match message.header(key) {
        Some(HeaderValue::Int(i)) => Some(*i as u64),
        _ => None,
    }
}

impl Bus {
    /// Joins `sink` to this bus for the signals matching `pattern`, both ways (see
    /// [`Bridge`]).
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no name (`""`, `","`,
    /// `"a b"`: it would bridge nothing), as `Nats::bridge` refuses it.
    pub async fn bridge(&self, sink: &SignalSink, pattern: &str) -> Result<Bridge, BusError> {
        self.bridge_with(sink, pattern, BridgeOptions::default())
            .await
    }

    /// [`bridge`](Self::bridge) with options.
    ///
    /// # Errors
    ///
    /// As [`bridge`](Self::bridge).
    pub async fn bridge_with(
        &self,
        sink: &SignalSink,
        pattern: &str,
        options: BridgeOptions,
    ) -> Result<Bridge, BusError> {
        Bridge::start(self, sink, pattern, options).await
    }
}

/// The outbound side of a bridge: publishes the sink's signals.
struct Outward<L> {
    link: L,
    sink: SignalSink,
    counters: Arc<Counters>,
    via: u64,
    origin: u64,
    bridge: u64,
    max_hops: u8,
}

impl<L: Link> Outward<L> {
    async fn run(self, mut local: ephemeral::Subscription) {
        while let Some(item) = local.next().await {
            let signal = match item {
                Ok(signal) => signal,
                Err(lagged) => {
                    // The sink subscription lost `n` signals: each is one not forwarded.
                    Counters::add(&self.counters.failed, lagged.count());
                    continue;
                }
            };
            let Some(out) = self.outgoing(&signal) else {
                continue;
            };
            match self.link.publish(out).await {
                Ok(()) => Counters::add(&self.counters.published, 1),
                Err(_) => self.counters.failed(),
            }
        }
    }

    /// The message for `signal`, or `None` when it is not to be forwarded.
    fn outgoing(&self, signal: &Signal) -> Option<Outgoing> {
        if header_u64(signal, VIA_HEADER) == Some(self.via) {
            // It came by this medium: everyone on it has it already.
            return None;
        }
        if signal.is_held() || self.link.is_local_signal(signal.name()) {
            // Holds travel as leases (see `mirror_holds`), not as events.
            return None;
        }
        let hops = header_u64(signal, HOPS_HEADER).unwrap_or(0);
        if hops >= u64::from(self.max_hops) {
            Counters::add(&self.counters.looped, 1);
            return None;
        }
        let ttl = signal.remaining(Instant::now(), self.sink.max_age());
        if ttl.is_zero() {
            return None;
        }
        let seq = header_u64(signal, SEQ_HEADER).unwrap_or(signal.sequence());
        let mut out = Bridged::Signal { seq }
            .stamp(Outgoing::from_name(signal.name().clone()))
            .header(BRIDGE_ID_HEADER, self.bridge as i64)
            .ttl(ttl)
            .origin(header_u64(signal, ORIGIN_HEADER).unwrap_or(self.origin))
            .hops(u8::try_from(hops).unwrap_or(u8::MAX));
        if let Some(payload) = signal.payload() {
            out = out.payload(payload);
        }
        for (key, value) in signal.headers() {
            if !BRIDGE_HEADERS.contains(&&**key) {
                out.headers.push((Arc::clone(key), value.clone()));
            }
        }
        if let Some(key) = signal.key() {
            out = out.header(KEY_HEADER, key);
        }
        Some(out)
    }
}

/// The identity of a plain message (published on the link, not by a bridge), within its
/// origin: its publisher's number, mixed with its topic (over NATS a publisher numbers
/// each topic from 1). With it, a plain message reaching a sink along two paths (two
/// bridges of the sink, or a ring) is raised there once, as a bridged signal is. `None`
/// for an unnumbered message (id 0): nothing tells two of those apart.
fn plain_seq(message: &Message) -> Option<u64> {
    (message.id() != 0).then(|| via_of(("plain", message.topic().as_str(), message.id())))
}

/// The inbound side of a bridge: raises remote signals and mirrors remote holds.
struct Inward {
    sink: SignalSink,
    counters: Arc<Counters>,
    via: u64,
    origin: u64,
    bridge: u64,
}

impl Inward {
    async fn run<S>(self, mut remote: S, lease: Duration)
    where
        S: futures::Stream<Item = Result<Message, ephemeral::Lagged>> + Unpin,
    {
        let mut sweep = tokio::time::interval((lease / 3).max(Duration::from_millis(1)));
        loop {
            tokio::select! {
                item = remote.next() => match item {
                    Some(Ok(message)) => self.handle(&message),
                    Some(Err(lagged)) => Counters::add(&self.counters.lagged, lagged.count()),
                    None => break,
                },
                // A holder that stopped refreshing (it died, or the network broke) loses its
                // mirrored holds here.
                _ = sweep.tick() => mirrors::sweep(self.sink.id()),
            }
        }
    }

    fn handle(&self, message: &Message) {
        if message_u64(message, BRIDGE_ID_HEADER) == Some(self.bridge) {
            // Our own, handed back by the link.
            return;
        }
        if message.origin() == self.origin {
            Counters::add(&self.counters.looped, 1);
            return;
        }
        let seq = match Bridged::of(message) {
            Some(Bridged::Release { seq }) => {
                mirrors::release(self.sink.id(), message.origin(), seq);
                return;
            }
            Some(Bridged::Hold {
                seq,
                lease,
                refresh,
            }) => {
                let r = Refresh {
                    origin: message.origin(),
                    seq,
                    number: refresh,
                    lease,
                };
                match mirrors::refresh(&self.sink, self.bridge, &r, || self.builder(message)) {
                    Refreshed::Created => Counters::add(&self.counters.raised, 1),
                    Refreshed::Failed => self.counters.failed(),
                    Refreshed::Extended | Refreshed::Stale => {}
                }
                return;
            }
            Some(Bridged::Signal { seq }) => Some(seq),
            None => plain_seq(message),
        };
        let ttl = message.ttl().unwrap_or_else(|| self.sink.max_age());
        if ttl.is_zero() {
            // Its life ran out on the way: there is nothing live to mirror.
            return;
        }
        if let Some(seq) = seq {
            let until = Instant::now()
                .checked_add(ttl.min(self.sink.max_age()))
                .unwrap_or_else(Instant::now);
            let (sink, capacity) = (self.sink.id(), self.sink.capacity());
            if !mirrors::first_sighting(sink, capacity, message.origin(), seq, until) {
                Counters::add(&self.counters.looped, 1);
                return;
            }
        }
        let mut signal = self.builder(message).expires_in(ttl);
        if let (Some(seq), None) = (seq, message.header(SEQ_HEADER)) {
            // A plain message: the raised signal carries the identity given to it, so that
            // a bridge forwarding it onwards passes that on, not the signal's local number.
            signal = signal.header(SEQ_HEADER, seq as i64);
        }
        match self.sink.raise_with(signal) {
            Ok(_) => Counters::add(&self.counters.raised, 1),
            Err(_) => self.counters.failed(),
        }
    }

    /// The signal standing for `message` in this sink: its key, payload and user headers,
    /// with its origin, hop count, origin sequence and the medium it came by.
    fn builder(&self, message: &Message) -> SignalBuilder {
        let mut signal = SignalBuilder::new(message.topic().clone())
            .header(ORIGIN_HEADER, message.origin() as i64)
            .header(HOPS_HEADER, i64::from(message.hops()) + 1)
            .header(VIA_HEADER, self.via as i64);
        for (key, value) in message.headers() {
            match &**key {
                KEY_HEADER => signal = signal.key(Arc::from(value.to_string())),
                SEQ_HEADER => signal = signal.header(key, value.clone()),
                k if BRIDGE_HEADERS.contains(&k) => {}
                _ => signal = signal.header(key, value.clone()),
            }
        }
        if !message.payload().is_empty() {
            signal = signal.payload(message.payload());
        }
        signal
    }
}
