//! Keeping messages for durable subscriptions: the publishers' side.
//!
//! Every bus handle knows the durable subscriptions of its bus (the *registry*, read from
//! the database) and, when it publishes on a topic one of them matches, stores the message
//! for it before `publish` returns: kept at the source, so a subscriber that is away, dead
//! or slow loses nothing, and each publisher's order is the order kept.
//!
//! The registry is read when the handle opens the bus and again whenever a subscription is
//! created, re-pointed or removed: whoever does that publishes on the sync topic and waits
//! (at most [`BusOptions::handshake_timeout`](crate::BusOptions::handshake_timeout)) until
//! every handle reached has re-read it and answered. Every handle listens on the sync topic
//! from before it joins the bus (the subscription is in its hello), and reads the registry
//! only after the others have its hello, so a handle opening while a subscription is
//! created either hears the sync or reads the registry after it was written.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ephemeral::{Buffer, HeaderValue, Name, Overflow, Pattern};
use futures::StreamExt;

use super::ops::{self, Registration};
use crate::db::codec::{self, DURABLE, MsgRecord};
use crate::db::{self, Db, TOPIC_PREFIX};
use crate::retained::{DurableOptions, StoreError, clock};
use ephemeral::lag::Cursor;

use crate::frame::Interest;
use crate::subscription::{Buffered, LocalSub};
use crate::{Bus, BusError};

/// The topic registry changes are announced on.
fn sync_topic() -> String {
    format!("{TOPIC_PREFIX}.durables")
}

/// One durable subscription, as publishers see it.
#[derive(Debug)]
pub(crate) struct Registered {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) pattern: Pattern,
    pub(crate) options: DurableOptions,
}

/// The durable subscriptions of a bus, and its database.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) db: Arc<Db>,
    pub(crate) durables: Vec<Registered>,
}

/// A bus handle's view of the registry: empty (`None`) until the bus has a database with
/// a durable subscription in it.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    registry: ArcSwapOption<Registry>,
}

impl Capture {
    /// Whether a message on `topic` is to be kept for some durable subscription. One
    /// atomic load when there is none: the cost every publish pays.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        let registry = self.registry.load();
        registry.as_ref().is_some_and(|r| {
            !r.durables.is_empty()
                && !db::is_internal(topic)
                && r.durables.iter().any(|d| d.pattern.matches(topic))
        })
    }
}

/// Keeps a message for every durable subscription whose pattern matches its topic;
/// returns for how many. Call only when [`Capture::matches`] said so.
pub(crate) async fn capture(
    bus: &Bus,
    topic: &Name,
    payload: &[u8],
    headers: &[(Arc<str>, HeaderValue)],
    origin: u64,
    ttl: Option<Duration>,
) -> Result<usize, BusError> {
    let Some(registry) = bus.handle.shared.capture.registry.load_full() else {
        return Ok(0);
    };
    let targets: Vec<(u32, String, DurableOptions)> = registry
        .durables
        .iter()
        .filter(|d| d.pattern.matches(topic))
        .map(|d| (d.id, d.name.clone(), d.options.clone()))
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let now = clock::now_ms();
    let record = MsgRecord {
        sender: origin,
        at_ms: now,
        expires_ms: clock::expiry_ms(now, ttl),
        topic,
        headers,
        payload,
    }
    .encode();
    let kept = registry
        .db
        .write(move |w| ops::capture(w, &targets, &record, now))
        .await
        .map_err(|e| BusError::Retained(Box::new(e)))?;
    for (id, seq) in &kept {
        db::ring(bus, &db::durable_topic(*id), *seq).await;
    }
    Ok(kept.len())
}

/// The listening subscription of a handle, added to its subscriptions before it joins.
pub(crate) fn listener() -> (Arc<LocalSub>, Cursor<Buffered>) {
    let (local, cursor) = LocalSub::new(
        Pattern::new(&sync_topic()),
        Interest::Internal,
        Buffer::Unbounded,
        Overflow::DropOldest,
    );
    (Arc::new(local), cursor)
}

/// Reads the registry of `bus` (if it has a database) into its capture.
async fn reload(bus: &Bus) -> Result<(), StoreError> {
    let Some(db) = Db::open_for(bus, false).await? else {
        return Ok(());
    };
    let durables = read_registry(&db)?;
    bus.handle
        .shared
        .capture
        .registry
        .store(Some(Arc::new(Registry { db, durables })));
    Ok(())
}

/// Every durable subscription in the database (few: a bounded read).
pub(crate) fn read_registry(db: &Db) -> Result<Vec<Registered>, StoreError> {
    db.read(|txn, t| {
        let mut durables = Vec::new();
        for item in t
            .names
            .prefix_iter(txn, &[DURABLE, 0])
            .map_err(db.err("read names"))?
        {
            let (k, r) = item.map_err(db.err("read names"))?;
            let Some(name) = k.get(2..).and_then(|n| std::str::from_utf8(n).ok()) else {
                continue;
            };
            let Some((id, json)) = codec::decode_named(r) else {
                continue;
            };
            let Ok(registration) = serde_json::from_slice::<Registration>(json) else {
                continue;
            };
            durables.push(Registered {
                id,
                name: name.to_owned(),
                pattern: Pattern::new(&registration.pattern),
                options: registration.options,
            });
        }
        Ok(durables)
    })
}

/// Reads the registry for a handle that just joined, and starts its listener: on every
/// sync, read it again, then answer.
pub(crate) async fn start(bus: &Bus, listener: Arc<LocalSub>, mut cursor: Cursor<Buffered>) {
    // A database that cannot be read now is read again at the next sync.
    let _ = reload(bus).await;
    let weak = Arc::downgrade(&bus.handle);
    tokio::spawn(async move {
        let mut syncs = futures::stream::poll_fn(|cx| listener.poll_next(&mut cursor, Some(cx)));
        while let Some(item) = syncs.next().await {
            let Some(handle) = weak.upgrade() else { break };
            let bus = Bus { handle };
            let _ = reload(&bus).await;
            // The sync's payload names the topic its answers go to.
            if let Ok(sync) = item
                && let Some(reply) = sync.payload_str()
            {
                let _ = bus.broadcast(reply, b"").await;
            }
        }
    });
}

/// Tells every handle of the bus to read the registry again, and waits (bounded) until
/// they have.
pub(crate) async fn sync(bus: &Bus) -> Result<(), StoreError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reply = format!("{TOPIC_PREFIX}.durables.ack.{:016x}.{n}", bus.peer_id());
    let mut acks = bus
        .listen_internal(
            &reply,
            Buffer::Bounded(NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN)),
            Overflow::DropOldest,
        )
        .await;
    let reached = bus.broadcast(&sync_topic(), reply.as_str()).await?;
    let deadline = crate::after(bus.handle.shared.options.handshake_timeout);
    let mut answered = 0;
    while answered < reached {
        match tokio::time::timeout_at(deadline, acks.next()).await {
            Ok(Some(Ok(_))) => answered += 1,
            // A lag report counts the answers it stands for.
            Ok(Some(Err(lagged))) => answered += usize::try_from(lagged.0).unwrap_or(usize::MAX),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(())
}
