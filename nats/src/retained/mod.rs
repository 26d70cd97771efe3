//! Retained state on JetStream: the NATS backend of [`ephemeral_bus::retained`].
//!
//! [`Nats`] implements [`Retained`], so [`Store`],
//! [`Room`] and
//! [`DurableSubscription`] — the same types,
//! the same checks, the same errors as on the bus — work across machines:
//!
//! (`<PREFIX>` below is the subject prefix upper-cased with `_` for `.`, `EPHEMERAL` by
//! default; a prefix with capitals or `_` also gets `_h` and a hash, so no two prefixes
//! share a bucket or a stream.)
//!
//! | kind | on JetStream |
//! |---|---|
//! | store | a KV bucket `<PREFIX>_KV_<name>_<hash>` (`limit_markers` 1 s, `history` and `max_value_size` from the options) |
//! | owned values | a header naming the owner; the owner is alive while its key in `<PREFIX>_OWNERS` (refreshed every second, `Nats-TTL` 3 s) exists |
//! | room | a limits stream `<PREFIX>_ROOM_<name>_<hash>` (`max_msgs`, `max_age`), read by an ordered consumer |
//! | durable subscription | a limits stream `<PREFIX>_DUR_<name>_<hash>` on the subjects of its pattern (count, bytes, age, discard old); its acknowledged position and its one-subscriber lock in the KV bucket `<PREFIX>_DURABLES` |
//!
//! (`<PREFIX>` is the connection's subject prefix in capitals with `.` as `_`, `<name>`
//! the store's, room's or subscription's name reduced to letters, digits, `-` and `_`, and
//! `<hash>` a 64-bit hash of the full name, so names that reduce alike never share state.)
//!
//! # Times to live: whole seconds on the server, exact for reads
//!
//! JetStream removes a message with a per-message time to live (`Nats-TTL`) no sooner than
//! one second after it was stored (the server refuses anything shorter), and keeps only
//! the whole seconds of it (`1500ms` would be removed after one second). So the time to
//! live is sent **rounded up to whole seconds, one at the least**, and the value carries
//! its exact expiry (from the writer's clock): every read
//! ([`get`](ephemeral_bus::retained::Store::get), `entries`, `history`) returns it until
//! that instant and never after, and the server removes it at the rounded-up second
//! (at most a second after the expiry, and at one second for a time to live below it),
//! which is when watchers see [`Expired`](ephemeral_bus::retained::StoreEvent::Expired):
//! never before the expiry. A time to live below one second is **accepted, not refused**.
//! The same check covers the server's own lag in removing expired messages: a value is
//! never returned after its expiry. Expiries are compared with the reader's clock, so
//! machines should keep their clocks in step (NTP).
//!
//! # Keys
//!
//! KV keys allow only `[-/_=.a-zA-Z0-9]`; a key follows the naming rule of
//! [`Name`](ephemeral::Name), which allows more. Each segment is escaped: every other byte,
//! and `=` itself, is written `=XX` (hex), an empty segment `=`. Ordinary keys
//! (`user.42`, `sku-7/a`) are stored as they are.
//!
//! # What differs from the bus
//!
//! * [`StoreOptions::max_values`](ephemeral_bus::retained::StoreOptions::max_values) is
//!   not enforced (bound a bucket with the server's account limits instead).
//! * [`StoreStats::expired`](ephemeral_bus::retained::StoreStats) stays 0: the server
//!   expires values, not a client that could count them. For the same reason, a key set
//!   again after its value's exact expiry but before the server removed it (up to a second
//!   later) has its dead value replaced without an
//!   [`Expired`](ephemeral_bus::retained::StoreEvent::Expired): watchers see only the new
//!   set (the bus reports the expiry first). `sets`, `deletes` and
//!   `reclaimed` are store-wide counters (a JetStream counter stream, server 2.12 or later).
//! * Two durable subscriptions whose patterns overlap cannot both exist (JetStream streams
//!   cannot share subjects): the second is refused with a backend error.
//! * The server's `max_payload` (1 MiB by default) counts headers too: a store's maximum in
//!   effect ([`Store::options`]) is the lower of its `max_value_size` and `max_payload` less
//!   134 bytes (the most a value's headers take), a room's the lower of its
//!   `max_message_size` and `max_payload` less 48 bytes. Beyond it, `ValueTooLarge`.
//! * A stream's `max_age` is at least 100 ms (the server's floor): a room's or durable
//!   subscription's shorter max age is kept all the same, the stream keeping messages for
//!   100 ms and readers skipping those older than asked (by the reader's clock). One past
//!   what JetStream carries (about 292 years; `Duration::MAX`) is no limit, as on the bus,
//!   where no message gets that old either.
//! * A durable subscription's byte bound counts what JetStream stores per message
//!   (payload, headers and subject), not the payload alone.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = ephemeral_nats::testing::NatsServer::start().await;
//! # let url = server.url();
//! use std::time::Duration;
//! use ephemeral_bus::retained::{Retained, StoreOptions};
//! use ephemeral_nats::Nats;
//!
//! let nats = Nats::connect(&url).await?;
//! let cache = nats.store("prices", StoreOptions::default()).await?;
//! cache.set("sku.42", b"9.99", Duration::from_secs(60)).await?;
//! assert_eq!(cache.get("sku.42").await?.as_deref(), Some(&b"9.99"[..]));
//!
//! // Below the server's one-second floor: accepted, and never read after it ran out.
//! cache.set("flash", b"1", Duration::from_millis(200)).await?;
//! tokio::time::sleep(Duration::from_millis(250)).await;
//! assert_eq!(cache.get("flash").await?, None);
//! # Ok(())
//! # }
//! ```

mod durable;
mod keys;
mod lock;
mod report;
mod resume;
mod room;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ephemeral_bus::retained::{
    DurableOptions, DurableSubscription, Retained, Room, RoomOptions, Store, StoreError,
    StoreOptions,
};
use tokio::sync::OnceCell;

use crate::Nats;
use crate::durations::{STREAM_DURATION_FLOOR, jetstream_age};

pub(crate) use keys::{decode_key, encode_key};

/// How often an owner refreshes its liveness key.
const OWNER_HEARTBEAT: Duration = Duration::from_secs(1);
/// How long an owner's liveness key outlives its last refresh (`Nats-TTL`).
const OWNER_TTL: Duration = Duration::from_secs(3);

/// The `max_age` a stream gets for `asked`, and the age readers filter by themselves (when
/// `asked` is below [`STREAM_DURATION_FLOOR`]: the server keeps messages for 100 ms,
/// readers skip those older than `asked`, so what they see is what the bus shows). An age
/// past what JetStream carries (about 292 years; `Duration::MAX`) is no limit, as on the
/// bus, where no message gets that old either.
pub(crate) fn stream_age(asked: Duration) -> (Duration, Option<Duration>) {
    if asked < STREAM_DURATION_FLOOR {
        (STREAM_DURATION_FLOOR, Some(asked))
    } else {
        (jetstream_age(asked), None)
    }
}

/// Whether a message published at `published` is older than `max_age` now (on this
/// machine's clock); `false` when there is no such age to check.
pub(crate) fn too_old(published: std::time::SystemTime, max_age: Option<Duration>) -> bool {
    max_age.is_some_and(|age| {
        published
            .checked_add(age)
            .is_some_and(|until| until < std::time::SystemTime::now())
    })
}

/// How long each pull request of the ordered consumers reading retained state (store
/// watches, room joins, durable subscriptions, owner liveness) waits on the server, which
/// also sets their idle heartbeat (half of it). Readers are made again as soon as the
/// connection comes back (`resume.rs`); this is the backstop for a server that forgot a
/// consumer without the connection dropping: async-nats's ordered consumer notices it only
/// when a pull request ends or two heartbeats were missed, 15 s and more with its defaults
/// (30 s requests, 15 s heartbeats), about 4 s with these. An idle reader asks the server
/// once every 2 s: nothing next to what it saves.
pub(crate) const ORDERED_MAX_EXPIRES: std::time::Duration = std::time::Duration::from_secs(2);

/// Checks that a value of `len` bytes with `headers` fits the server's `max_payload` now (it
/// counts the headers too, and may be another server's than the one the store or room was
/// opened on, after a reconnect): `ValueTooLarge` with the most that fits otherwise.
pub(crate) fn check_payload(
    nats: &Nats,
    len: usize,
    headers: &async_nats::HeaderMap,
) -> Result<(), StoreError> {
    let headers_len = crate::headers::wire_len(headers);
    let max_payload = nats.max_payload();
    if len + headers_len > max_payload {
        return Err(StoreError::ValueTooLarge {
            len,
            max: max_payload.saturating_sub(headers_len),
        });
    }
    Ok(())
}

/// Refuses at once, saying what to do, when JetStream, which every retained resource on
/// NATS lives in, cannot be used now (`Nats::jetstream_unusable`: the connection is down, or
/// the server or the account has none). At most one request per open.
pub(crate) async fn require_jetstream(nats: &Nats, op: &'static str) -> Result<(), StoreError> {
    match nats.jetstream_unusable().await {
        None => Ok(()),
        Some(message) => Err(StoreError::Backend {
            backend: "nats",
            op,
            message,
        }),
    }
}

/// `result`, its backend failure saying so when the connection is down (a bare "timed
/// out" otherwise).
pub(crate) fn offline<T>(nats: &Nats, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Err(StoreError::Backend {
            backend,
            op,
            message,
            ..
        }) if !nats.is_connected() => Err(StoreError::Backend {
            backend,
            op,
            message: format!("{message}: {}", nats.offline_message()),
        }),
        other => other,
    }
}

/// A backend error from NATS while doing `op`.
pub(crate) fn fail(op: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::Backend {
        backend: "nats",
        op,
        message: e.to_string(),
    }
}

/// Maps a NATS error to [`StoreError::StorageFull`] when JetStream refused the write for want
/// of storage, else to [`StoreError::Backend`].
pub(crate) trait OrFail<T> {
    fn or_fail(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T, E: std::error::Error + 'static> OrFail<T> for Result<T, E> {
    fn or_fail(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| {
            if out_of_storage(&e) {
                StoreError::StorageFull {
                    backend: "nats",
                    op,
                    message: e.to_string(),
                }
            } else {
                fail(op)(&e)
            }
        })
    }
}

/// Whether `error`, or an error it was caused by, is JetStream saying it has no storage
/// left: the server's (`insufficient resources`, 10023) or the account's (10047).
fn out_of_storage(error: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::ErrorCode;
    crate::queue::error::jetstream_code(error).is_some_and(|code| {
        code == ErrorCode::INSUFFICIENT_RESOURCES.0
            || code == ErrorCode::STORAGE_RESOURCES_EXCEEDED.0
    })
}

/// Checks the name of a store, room or durable subscription against the naming rule.
pub(crate) fn check_name(name: &str) -> Result<ephemeral::Name, StoreError> {
    ephemeral::Name::new(name).map_err(|source| StoreError::InvalidName {
        name: name.to_owned(),
        source,
    })
}

/// Drains `source` at once, in a task, into a buffer of `capacity`; what does not fit
/// is counted and reported as `Lagged` before the next item that does. The task ends with
/// `source` or when the returned stream is dropped.
pub(crate) fn pump<T: Send + 'static>(
    source: impl futures::Stream<Item = T> + Send + 'static,
    capacity: usize,
) -> futures::stream::BoxStream<'static, Result<T, ephemeral::Lagged>> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    tokio::spawn(async move {
        let mut source = std::pin::pin!(source);
        let mut missed = 0u64;
        loop {
            let item = tokio::select! {
                item = source.next() => item,
                () = tx.closed() => return,
            };
            let Some(item) = item else { return };
            if missed > 0 {
                match tx.try_send(Err(ephemeral::Lagged(missed))) {
                    Ok(()) => missed = 0,
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        missed += 1;
                        continue;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            match tx.try_send(Ok(item)) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => missed += 1,
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    tokio_stream_from(rx).boxed()
}

fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Waits (at most two seconds) until the server holds a pull request of the consumer
/// `name`: from then on, whatever the stream stores is delivered to it at once.
pub(crate) async fn pulling(stream: &jetstream::stream::Stream, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match stream.consumer_info(name).await {
            Ok(info) if info.num_waiting > 0 => return,
            Ok(_) => {}
            // Recreated under another name (a reconnect): it pulls again by itself.
            Err(_) => return,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What one connection keeps for retained state: its id (the sender of its room messages,
/// the owner of its owned values) and, once it owns a value, the heartbeat that keeps it
/// alive.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    owner: OnceCell<Heartbeat>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            id: crate::sequence::random_id(),
            owner: OnceCell::new(),
        }
    }
}

/// Aborts the heartbeat task when the connection's last handle goes.
#[derive(Debug)]
pub(crate) struct Heartbeat(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stable 64-bit FNV-1a hash (the same in every process and on every machine).
pub(crate) fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A JetStream name for the `kind` resource named `name`: readable, unique per name.
pub(crate) fn resource_name(prefix: &str, kind: &str, name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!(
        "{}_{kind}_{readable}_{:016x}",
        crate::subject::resource_token(prefix),
        fnv(name)
    )
}

/// Opens the KV bucket `config.bucket`, creating it if it does not exist.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> Result<jetstream::kv::Store, StoreError> {
    if let Ok(kv) = js.get_key_value(config.bucket.clone()).await {
        return Ok(kv);
    }
    let name = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Created by another process in between.
        Err(create) => js
            .get_key_value(name)
            .await
            .map_err(|_| fail("create a key-value bucket")(&create)),
    }
}

impl Nats {
    /// This connection's id as a retained-state owner and room sender.
    pub(crate) fn retained_id(&self) -> u64 {
        self.inner.retained.id
    }

    /// Starts (once) the heartbeat that keeps this connection's owned values alive, and
    /// returns the owner id once its liveness key is written.
    pub(crate) async fn owner(&self) -> Result<u64, StoreError> {
        let shared = &self.inner.retained;
        shared
            .owner
            .get_or_try_init(|| async {
                let js = self.jetstream().clone();
                let owners = owners_bucket(&js, self.prefix()).await?;
                let subject = format!("$KV.{}.{:016x}", owners, shared.id);
                beat(&js, &subject).await?;
                let task = tokio::spawn(async move {
                    let mut tick = tokio::time::interval(OWNER_HEARTBEAT);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        // A failed refresh (a reconnect) is retried at the next tick; the
                        // key outlives three of them.
                        let _ = beat(&js, &subject).await;
                    }
                });
                Ok::<_, StoreError>(Heartbeat(task))
            })
            .await?;
        Ok(shared.id)
    }

    /// Whether the owner `id` is alive (its liveness key exists).
    pub(crate) async fn owner_alive(&self, id: u64) -> Result<bool, StoreError> {
        if id == self.inner.retained.id {
            return Ok(true);
        }
        let js = self.jetstream();
        let owners = owners_bucket(js, self.prefix()).await?;
        let stream = js
            .get_stream(format!("KV_{owners}"))
            .await
            .or_fail("open the owners bucket")?;
        match stream
            .direct_get_last_for_subject(format!("$KV.{owners}.{id:016x}"))
            .await
        {
            Ok(message) => Ok(store::operation(&message.headers) == store::Op::Put),
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(false),
            Err(e) => Err(fail("read an owner's liveness key")(&e)),
        }
    }
}

/// Writes an owner's liveness key with a time to live of [`OWNER_TTL`].
async fn beat(js: &jetstream::Context, subject: &str) -> Result<(), StoreError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-TTL", format!("{}ms", OWNER_TTL.as_millis()).as_str());
    js.publish_with_headers(subject.to_owned(), headers, bytes::Bytes::new())
        .await
        .or_fail("refresh an owner")?
        .await
        .or_fail("refresh an owner")?;
    Ok(())
}

/// The bucket of owners' liveness keys (one per prefix), created if needed.
async fn owners_bucket(js: &jetstream::Context, prefix: &str) -> Result<String, StoreError> {
    let name = format!("{}_OWNERS", crate::subject::resource_token(prefix));
    bucket(
        js,
        jetstream::kv::Config {
            bucket: name.clone(),
            history: 1,
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    )
    .await?;
    Ok(name)
}

impl Retained for Nats {
    async fn store(&self, name: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let backend = store::NatsStore::open(self.clone(), name, options).await?;
        Ok(Store::from_backend(Arc::new(backend)))
    }

    async fn room(&self, name: &str, options: RoomOptions) -> Result<Room, StoreError> {
        let backend = room::NatsRoom::open(self.clone(), name, options).await?;
        Ok(Room::from_backend(Arc::new(backend)))
    }

    async fn subscribe_durable(
        &self,
        pattern: &str,
        name: &str,
    ) -> Result<DurableSubscription, StoreError> {
        let backend = durable::NatsDurable::attach(self.clone(), pattern, name, None).await?;
        Ok(DurableSubscription::from_backend(Box::new(backend)))
    }

    async fn subscribe_durable_with(
        &self,
        pattern: &str,
        name: &str,
        options: DurableOptions,
    ) -> Result<DurableSubscription, StoreError> {
        let backend =
            durable::NatsDurable::attach(self.clone(), pattern, name, Some(options)).await?;
        Ok(DurableSubscription::from_backend(Box::new(backend)))
    }
}

#[cfg(feature = "conformance")]
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_valid_and_distinct() {
        let a = resource_name("ephemeral", "KV", "a.b");
        let b = resource_name("ephemeral", "KV", "a_b");
        assert_ne!(a, b, "names that reduce alike differ by their hash");
        assert!(a.starts_with("EPHEMERAL_KV_a_b_"));
        let long = resource_name("x.y", "ROOM", &"é".repeat(100));
        assert!(long.starts_with("X_Y_ROOM_"));
        assert!(
            long.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
    }
}
