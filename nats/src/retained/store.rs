//! The store on a JetStream KV bucket.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use ephemeral::{Lagged, Name, Pattern};
use ephemeral_bus::retained::backend::StoreBackend;
use ephemeral_bus::retained::{Entry, Removal, StoreError, StoreEvent, StoreOptions, StoreStats};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{OrFail, bucket, decode_key, encode_key, fail, resource_name};
use crate::Nats;

/// The server's floor for a per-message time to live.
pub(crate) const TTL_FLOOR: Duration = Duration::from_secs(1);

/// How many changes a watcher may fall behind before it is told `Lagged`.
const WATCH_BUFFER: usize = 4096;

/// The exact expiry of a value (unix milliseconds, the writer's clock).
const EXPIRES: &str = "Ephemeral-Expires";
/// The owner of an owned value (hex).
const OWNER: &str = "Ephemeral-Owner";
/// Why a value was removed (`deleted`, `cleared`, `owner-gone`).
const CAUSE: &str = "Ephemeral-Cause";

/// The most bytes the headers of a set take on the wire, counted as the server counts them
/// against its `max_payload`: `Nats-TTL` (at most `never` or 16 characters; whole seconds
/// take 11 at most),
/// `Ephemeral-Expires` (at most 20 digits), `Nats-Rollup: sub`, `Ephemeral-Owner` (16 hex
/// digits), framed as `NATS/1.0\r\n`, `Key: Value\r\n` each and `\r\n`. A value of the
/// server's `max_payload` less this always fits.
pub(crate) const SET_HEADERS_MAX: usize =
    12 + (8 + 4 + 16) + (EXPIRES.len() + 4 + 20) + (11 + 4 + 3) + (OWNER.len() + 4 + 16);

/// What a message of the bucket's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A value.
    Put,
    /// A removal, and why.
    Removed(Removal),
    /// The server expired the value (a delete marker for `MaxAge`).
    Expired,
}

/// Reads the operation headers of a message of a KV stream.
pub(crate) fn operation(headers: &HeaderMap) -> Op {
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    if let Some(reason) = get("Nats-Marker-Reason") {
        return if reason == "MaxAge" {
            Op::Expired
        } else {
            Op::Removed(Removal::Deleted)
        };
    }
    match get("KV-Operation").as_deref() {
        Some("DEL" | "PURGE") => Op::Removed(match get(CAUSE).as_deref() {
            Some("cleared") => Removal::Cleared,
            Some("owner-gone") => Removal::OwnerGone,
            _ => Removal::Deleted,
        }),
        _ => Op::Put,
    }
}

fn to_system(message: &async_nats::jetstream::message::StreamMessage) -> SystemTime {
    system_time(&message.time)
}

pub(crate) fn system_time(time: &async_nats::datetime::DateTime) -> SystemTime {
    let nanos = time.unix_timestamp_nanos();
    u64::try_from(nanos)
        .ok()
        .and_then(|n| UNIX_EPOCH.checked_add(Duration::from_nanos(n)))
        .unwrap_or(UNIX_EPOCH)
}

/// The headers of a set: its time to live and exact expiry, the rollup that starts the key's
/// history over, its owner.
fn set_headers(
    ttl: Option<Duration>,
    now: SystemTime,
    history: u8,
    owner: Option<u64>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // An expiry past what the clock can hold (`Duration::MAX`, say) is no expiry, as on
    // the bus: the value stays until deleted.
    let expiry = ttl.and_then(|ttl| Some((ttl, now.checked_add(ttl)?)));
    if let Some((ttl, expires)) = expiry {
        headers.insert("Nats-TTL", server_ttl(ttl).as_str());
        headers.insert(EXPIRES, unix_ms(expires).to_string().as_str());
        if history > 1 {
            // The server removes only this message when its time runs out; the revisions
            // before it would then come back as the key's value. So a value with a time to
            // live starts the key's history over.
            headers.insert("Nats-Rollup", "sub");
        }
    }
    if let Some(owner) = owner {
        headers.insert(OWNER, format!("{owner:016x}").as_str());
    }
    headers
}

/// The `Nats-TTL` header for `ttl`: whole seconds, **rounded up**, at least [`TTL_FLOOR`],
/// and `never` beyond what the server can parse (a Go duration, at most 2^63 - 1 ns, about
/// 292 years). The server keeps only the whole seconds of a message's time to live and
/// drops the rest (`1500ms` is removed after one second), which would take a value away
/// before its expiry; rounded up, the server removes it at most a second after it, and
/// reads stop returning it at its exact expiry (the `Ephemeral-Expires` header).
fn server_ttl(ttl: Duration) -> String {
    const MAX_GO_DURATION_SECS: u64 = (i64::MAX as u64) / 1_000_000_000;
    let ttl = ttl.max(TTL_FLOOR);
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    if secs > MAX_GO_DURATION_SECS {
        "never".to_owned()
    } else {
        format!("{secs}s")
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One raw message of the bucket, as far as a store cares.
#[derive(Debug, Clone)]
struct Raw {
    key: Name,
    op: Op,
    value: Bytes,
    revision: u64,
    set_at: SystemTime,
    expires_at: Option<SystemTime>,
    owner: Option<u64>,
}

impl Raw {
    fn parse(
        key: Name,
        headers: &HeaderMap,
        value: Bytes,
        revision: u64,
        set_at: SystemTime,
    ) -> Raw {
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        Raw {
            key,
            op: operation(headers),
            value,
            revision,
            set_at,
            expires_at: get(EXPIRES)
                .and_then(|ms| ms.parse().ok())
                .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms))),
            owner: get(OWNER).and_then(|id| u64::from_str_radix(&id, 16).ok()),
        }
    }

    /// A value whose expiry has not come (whatever its owner).
    fn fresh(&self, now: SystemTime) -> bool {
        self.op == Op::Put && self.expires_at.is_none_or(|at| at > now)
    }

    fn entry(self) -> Entry {
        Entry::new(self.key, self.value.to_vec(), self.revision, self.set_at)
            .with_expiry(self.expires_at)
            .with_owner(self.owner)
    }
}

/// A store on the KV bucket `bucket`.
#[derive(Clone)]
pub(crate) struct NatsStore {
    nats: Nats,
    name: Name,
    options: StoreOptions,
    bucket: String,
    stream: stream::Stream,
    counters: stream::Stream,
    counter_subject: String,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("name", &self.name.as_str())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl NatsStore {
    pub(crate) async fn open(
        nats: Nats,
        name: &str,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let name = super::check_name(name)?;
        // Checked first: on an older server the counter stream below fails with a message
        // that does not say why.
        nats.require_server("2.12.0", "retained stores (their counters)")
            .or_fail("open a store")?;
        super::require_jetstream(&nats, "open a store").await?;
        let js = nats.jetstream().clone();
        let bucket_name = resource_name(nats.prefix(), "KV", &name);
        let kv = bucket(
            &js,
            jetstream::kv::Config {
                bucket: bucket_name.clone(),
                description: format!("ephemeral store {name}"),
                history: i64::from(options.get_history()),
                // The stream's limit counts a message's headers too: room for them over
                // the largest value, so every value the options allow fits however it is set.
                max_value_size: i32::try_from(
                    options.get_max_value_size().saturating_add(SET_HEADERS_MAX),
                )
                .unwrap_or(i32::MAX),
                limit_markers: Some(TTL_FLOOR),
                ..Default::default()
            },
        )
        .await?;
        drop(kv);
        let mut stream = js
            .get_stream(format!("KV_{bucket_name}"))
            .await
            .or_fail("open a store")?;
        let config = stream.info().await.or_fail("open a store")?.config.clone();
        // An existing store keeps the options it was created with.
        // The largest value that fits the server's max_payload with any headers a set
        // carries: the store's maximum in effect when it is lower than the options'.
        let fits = nats.max_payload().saturating_sub(SET_HEADERS_MAX);
        let options = options
            .history(u8::try_from(config.max_messages_per_subject.clamp(1, 64)).unwrap_or(1))
            .max_value_size(
                usize::try_from(config.max_message_size)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(SET_HEADERS_MAX)
                    .min(fits),
            );
        let counter_subject = format!("{}.kvstats.{bucket_name}", nats.prefix());
        let counters = js
            .get_or_create_stream(stream::Config {
                name: format!("KVSTATS_{bucket_name}"),
                subjects: vec![format!("{counter_subject}.*")],
                allow_message_counter: true,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .or_fail("create a store's counters (nats-server 2.12 or later)")?;
        Ok(Self {
            nats,
            name,
            options,
            bucket: bucket_name,
            stream,
            counters,
            counter_subject,
        })
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{}", self.bucket, encode_key(key))
    }

    fn key_of(&self, subject: &str) -> Option<Name> {
        subject
            .strip_prefix("$KV.")?
            .strip_prefix(self.bucket.as_str())?
            .strip_prefix('.')
            .and_then(decode_key)
    }

    /// The last message of `key`, if any.
    async fn last(&self, key: &str) -> Result<Option<Raw>, StoreError> {
        match self
            .stream
            .direct_get_last_for_subject(self.subject(key))
            .await
        {
            Ok(m) => {
                let Some(name) = self.key_of(&m.subject) else {
                    return Ok(None);
                };
                let (headers, payload, seq) = (m.headers.clone(), m.payload.clone(), m.sequence);
                Ok(Some(Raw::parse(
                    name,
                    &headers,
                    payload,
                    seq,
                    to_system(&m),
                )))
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail("read a value")(&e)),
        }
    }

    /// Whether `raw` is live: fresh and, if owned, its owner alive (else it is removed).
    async fn live(
        &self,
        raw: &Raw,
        now: SystemTime,
        alive: &mut HashMap<u64, bool>,
    ) -> Result<bool, StoreError> {
        if !raw.fresh(now) {
            return Ok(false);
        }
        let Some(owner) = raw.owner else {
            return Ok(true);
        };
        let is_alive = match alive.get(&owner) {
            Some(&known) => known,
            None => {
                let known = self.nats.owner_alive(owner).await?;
                alive.insert(owner, known);
                known
            }
        };
        if !is_alive {
            self.remove(raw, "owner-gone").await?;
        }
        Ok(is_alive)
    }

    /// Follows the owners' liveness keys and removes the values of each owner whose key
    /// goes (its time to live ran out: the owner died or lost touch). Runs until aborted;
    /// a failure is retried at the next owner that goes (a read reclaims too).
    async fn reclaim_as_owners_die(self) {
        let js = self.nats.jetstream().clone();
        let Ok(owners) = super::owners_bucket(&js, self.nats.prefix()).await else {
            return;
        };
        let Ok(stream) = js.get_stream(format!("KV_{owners}")).await else {
            return;
        };
        let Ok(consumer) = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::New,
                filter_subject: format!("$KV.{owners}.>"),
                max_expires: super::ORDERED_MAX_EXPIRES,
                ..Default::default()
            })
            .await
        else {
            return;
        };
        let Ok(mut messages) = consumer.messages().await else {
            return;
        };
        let prefix = format!("$KV.{owners}.");
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let gone = operation(&message.headers.clone().unwrap_or_default()) != Op::Put;
            let owner = message
                .subject
                .strip_prefix(prefix.as_str())
                .and_then(|id| u64::from_str_radix(id, 16).ok());
            if let (true, Some(owner)) = (gone, owner) {
                let _ = self.reclaim_owner(owner).await;
            }
        }
    }

    /// Removes every value of `owner` (gone), each removal a `Deleted { OwnerGone }`.
    async fn reclaim_owner(&self, owner: u64) -> Result<u64, StoreError> {
        if owner == self.nats.retained_id() {
            return Ok(0);
        }
        let mut removed = 0;
        for raw in self.last_of_every_key().await? {
            if raw.owner == Some(owner)
                && raw.op == Op::Put
                && self.remove(&raw, "owner-gone").await?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `raw`'s key (and its history) if it is still at `raw`'s revision; whether
    /// this call removed it.
    async fn remove(&self, raw: &Raw, cause: &'static str) -> Result<bool, StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "PURGE");
        headers.insert("Nats-Rollup", "sub");
        headers.insert(CAUSE, cause);
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            raw.revision.to_string().as_str(),
        );
        let js = self.nats.jetstream();
        let sent = js
            .publish_with_headers(self.subject(&raw.key), headers, Bytes::new())
            .await
            .or_fail("remove a value")?
            .await;
        match sent {
            Ok(_) => {
                let counter = match cause {
                    "owner-gone" => "reclaimed",
                    _ => "deletes",
                };
                self.count(counter, 1).await?;
                Ok(true)
            }
            // Changed in between (a newer set, or removed by someone else): not ours to remove.
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(false),
            Err(e) => Err(fail("remove a value")(&e)),
        }
    }

    /// Adds `n` to the store-wide counter `which`.
    async fn count(&self, which: &str, n: u64) -> Result<(), StoreError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Incr", format!("+{n}").as_str());
        self.nats
            .jetstream()
            .publish_with_headers(
                format!("{}.{which}", self.counter_subject),
                headers,
                Bytes::new(),
            )
            .await
            .or_fail("count")?
            .await
            .or_fail("count")?;
        Ok(())
    }

    async fn counter(&self, which: &str) -> Result<u64, StoreError> {
        match self
            .counters
            .direct_get_last_for_subject(format!("{}.{which}", self.counter_subject))
            .await
        {
            Ok(m) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&m.payload).or_fail("read a counter")?;
                Ok(value
                    .get("val")
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0))
            }
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(fail("read a counter")(&e)),
        }
    }

    /// The last message of every key (markers included).
    async fn last_of_every_key(&self) -> Result<Vec<Raw>, StoreError> {
        self.read_all(
            consumer::DeliverPolicy::LastPerSubject,
            format!("$KV.{}.>", self.bucket),
        )
        .await
    }

    /// Reads what an ordered consumer with `policy` on `filter` delivers, until none pend.
    async fn read_all(
        &self,
        policy: consumer::DeliverPolicy,
        filter: String,
    ) -> Result<Vec<Raw>, StoreError> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: policy,
                filter_subject: filter,
                max_expires: super::ORDERED_MAX_EXPIRES,
                ..Default::default()
            })
            .await
            .or_fail("read values")?;
        // What the consumer will deliver, counted by the server when it was created:
        // nothing to wait for when it is zero (messages that expire meanwhile are not
        // waited for either: the loop ends on the last one delivered, `pending == 0`).
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer.messages().await.or_fail("read values")?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            let message = match next {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(fail("read values")(&e)),
                Ok(None) => break,
                Err(_) => return Err(fail("read values")(&"no answer within 5 s")),
            };
            let info = message.info().map_err(|e| fail("read values")(&e))?;
            let (seq, pending, at) = (
                info.stream_sequence,
                info.pending,
                system_time(&info.published),
            );
            if let Some(key) = self.key_of(&message.subject) {
                let headers = message.headers.clone().unwrap_or_default();
                out.push(Raw::parse(key, &headers, message.payload.clone(), seq, at));
            }
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// The live entries, sorted by key.
    async fn live_entries(&self) -> Result<Vec<Entry>, StoreError> {
        let now = SystemTime::now();
        let mut alive = HashMap::new();
        let mut out = Vec::new();
        for raw in self.last_of_every_key().await? {
            if self.live(&raw, now, &mut alive).await? {
                out.push(raw.entry());
            }
        }
        out.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(out)
    }
}

impl StoreBackend for NatsStore {
    fn name(&self) -> &Name {
        &self.name
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
        owned: bool,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let owner = if owned {
                Some(self.nats.owner().await?)
            } else {
                None
            };
            let headers = set_headers(ttl, SystemTime::now(), self.options.get_history(), owner);
            super::check_payload(&self.nats, value.len(), &headers)?;
            let js = self.nats.jetstream();
            let publish = async {
                js.publish_with_headers(self.subject(key), headers, Bytes::copy_from_slice(value))
                    .await
                    .or_fail("set a value")?
                    .await
                    .or_fail("set a value")
            };
            let (ack, counted) = tokio::join!(publish, self.count("sets", 1));
            let ack = ack?;
            counted?;
            Ok(ack.sequence)
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        // `entry` says already when the connection is down (once: not again here).
        self.entry(key)
            .map(|r| r.map(|entry| entry.map(Entry::into_value)))
            .boxed()
    }

    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, StoreError>> {
        async move {
            let Some(raw) = self.last(key).await? else {
                return Ok(None);
            };
            let live = self
                .live(&raw, SystemTime::now(), &mut HashMap::new())
                .await?;
            Ok(live.then(|| raw.entry()))
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let Some(raw) = self.last(key).await? else {
                return Ok(false);
            };
            if raw.op != Op::Put {
                return Ok(false);
            }
            let now = SystemTime::now();
            if !raw.fresh(now) {
                // Expired: not live. The server removes it at its time to live (watchers see
                // `Expired`, as on the bus, where a delete logs the expiry); a purge here
                // would tell them `Deleted` instead.
                return Ok(false);
            }
            // A value whose owner is gone is not live (`get` returns nothing for it):
            // `live` removes it as reclaimed (`OwnerGone`), and the answer is `false`.
            if raw.owner.is_some() && !self.live(&raw, now, &mut HashMap::new()).await? {
                return Ok(false);
            }
            self.remove(&raw, "deleted").await
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let now = SystemTime::now();
            let mut removed = 0;
            let mut alive = HashMap::new();
            for raw in self.last_of_every_key().await? {
                // Expired values are left to the server, which removes them at their time
                // to live (watchers see `Expired`, as on the bus); not counted.
                if !raw.fresh(now) {
                    continue;
                }
                // Values whose owner is gone: reclaimed as such by `live`, not counted.
                if raw.owner.is_some() && !self.live(&raw, now, &mut alive).await? {
                    continue;
                }
                if self.remove(&raw, "cleared").await? {
                    removed += 1;
                }
            }
            Ok(removed)
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>> {
        self.live_entries()
            .map(|r| super::offline(&self.nats, r))
            .boxed()
    }

    fn history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Entry>, StoreError>> {
        async move {
            let subject = self.subject(key);
            let mut revisions = Vec::new();
            let mut from = None;
            loop {
                match self
                    .stream
                    .direct_get_next_for_subject(subject.clone(), from)
                    .await
                {
                    Ok(m) => {
                        from = Some(m.sequence + 1);
                        let Some(name) = self.key_of(&m.subject) else {
                            continue;
                        };
                        let (headers, payload, seq) =
                            (m.headers.clone(), m.payload.clone(), m.sequence);
                        revisions.push(Raw::parse(name, &headers, payload, seq, to_system(&m)));
                    }
                    Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                    Err(e) => return Err(fail("read a history")(&e)),
                }
            }
            // Only what follows the last removal, and only while the newest is live.
            if let Some(cut) = revisions.iter().rposition(|r| r.op != Op::Put) {
                revisions.drain(..=cut);
            }
            let now = SystemTime::now();
            let mut alive = HashMap::new();
            match revisions.last() {
                Some(newest) if self.live(newest, now, &mut alive).await? => {}
                _ => return Ok(Vec::new()),
            }
            let mut out = Vec::new();
            for raw in revisions {
                if self.live(&raw, now, &mut alive).await? {
                    out.push(raw.entry());
                }
            }
            Ok(out)
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>> {
        async move {
            let entries = self.live_entries().await?;
            let mut stream = self.stream.clone();
            let revision = stream
                .info()
                .await
                .or_fail("read stats")?
                .state
                .last_sequence;
            let mut stats = StoreStats::default();
            stats.values = entries.len() as u64;
            stats.bytes = entries.iter().map(|e| e.value().len() as u64).sum();
            stats.revision = revision;
            stats.sets = self.counter("sets").await?;
            stats.deletes = self.counter("deletes").await?;
            stats.reclaimed = self.counter("reclaimed").await?;
            Ok(stats)
        }
        .map(|r| super::offline(&self.nats, r))
        .boxed()
    }

    fn watch(
        &self,
        pattern: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<StoreEvent, Lagged>>, StoreError>> {
        async move {
            let config = consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::New,
                filter_subject: format!("$KV.{}.>", self.bucket),
                ..Default::default()
            };
            let super::resume::Opened {
                messages,
                consumer: consumer_name,
            } = super::resume::open(&self.stream, config, &self.nats, "watch a store").await?;
            let bucket = self.bucket.clone();
            let events = messages.filter_map(move |message| {
                std::future::ready(watch_event(&message, &bucket, &pattern))
            });
            // A KV stream keeps only the newest revisions of a key: a change not pulled
            // before the next one replaces it would be gone. So the changes are pulled at
            // once, by a task, into a buffer of WATCH_BUFFER (overflow: `Lagged`), and
            // the watch is handed out only once the server holds its first pull request.
            let events = super::pump(events, WATCH_BUFFER);
            super::pulling(&self.stream, &consumer_name).await;
            // An owner that dies removes nothing itself: while this watch lives, the values
            // of an owner whose liveness key runs out are removed at once, so the watcher
            // hears `Deleted { cause: OwnerGone }` within seconds of the death (as on the
            // bus), not at the next read of the key.
            let reclaimer = super::Heartbeat(tokio::spawn(self.clone().reclaim_as_owners_die()));
            let events = events.map(move |event| {
                let _alive_while_watched = &reclaimer;
                event
            });
            // Checked again when handed out: a set may wait in the buffer past its expiry
            // (a watcher that reads late), and is then skipped, as the bus skips it.
            let events = events.filter(|event| {
                let dead = matches!(event, Ok(StoreEvent::Set(entry))
                    if entry.expires_at().is_some_and(|at| at <= SystemTime::now()));
                std::future::ready(!dead)
            });
            Ok(events.boxed())
        }
        .boxed()
    }

    fn reclaim(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let now = SystemTime::now();
            let mut alive = HashMap::new();
            let mut removed = 0;
            for raw in self.last_of_every_key().await? {
                let Some(owner) = raw.owner else { continue };
                if raw.op != Op::Put {
                    continue;
                }
                let is_alive = match alive.get(&owner) {
                    Some(&known) => known,
                    None => {
                        let known = self.nats.owner_alive(owner).await?;
                        alive.insert(owner, known);
                        known
                    }
                };
                if !is_alive && self.remove(&raw, "owner-gone").await? && raw.fresh(now) {
                    removed += 1;
                }
            }
            Ok(removed)
        }
        .boxed()
    }
}

/// The event a watch of `bucket` on `pattern` hands out for a message of the bucket's
/// stream: none for a key off the pattern, a message that cannot be read, or a set whose
/// value is dead already (not even buffered; checked again when handed out).
fn watch_event(
    message: &async_nats::jetstream::Message,
    bucket: &str,
    pattern: &Pattern,
) -> Option<StoreEvent> {
    let key = message
        .subject
        .strip_prefix("$KV.")?
        .strip_prefix(bucket)?
        .strip_prefix('.')
        .and_then(decode_key)?;
    if !pattern.matches(&key) {
        return None;
    }
    let info = message.info().ok()?;
    let (revision, at) = (info.stream_sequence, system_time(&info.published));
    let headers = message.headers.clone().unwrap_or_default();
    let raw = Raw::parse(key, &headers, message.payload.clone(), revision, at);
    match raw.op {
        Op::Put => raw
            .fresh(SystemTime::now())
            .then(|| StoreEvent::Set(raw.entry())),
        Op::Removed(cause) => Some(StoreEvent::Deleted {
            key: raw.key,
            revision,
            cause,
        }),
        Op::Expired => Some(StoreEvent::Expired {
            key: raw.key,
            revision,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_headers_of_a_set_fit_their_bound() {
        let now = SystemTime::now();
        for ttl in [
            Duration::from_millis(1),
            Duration::from_secs(60),
            Duration::from_secs(200 * 365 * 24 * 3600),
            Duration::from_secs(10_000 * 365 * 24 * 3600),
        ] {
            let headers = set_headers(Some(ttl), now, 64, Some(u64::MAX));
            let len = crate::headers::wire_len(&headers);
            assert!(len <= SET_HEADERS_MAX, "{ttl:?}: {len} > {SET_HEADERS_MAX}");
        }
        let far = UNIX_EPOCH + Duration::from_millis(u64::MAX / 2);
        let headers = set_headers(Some(Duration::from_secs(1)), far, 64, Some(u64::MAX));
        assert!(crate::headers::wire_len(&headers) <= SET_HEADERS_MAX);
    }

    #[test]
    fn the_server_ttl_is_whole_seconds_rounded_up() {
        for (ttl, sent) in [
            (Duration::from_millis(1), "1s"),
            (Duration::from_millis(300), "1s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1001), "2s"),
            (Duration::from_millis(1200), "2s"),
            (Duration::from_millis(2500), "3s"),
            (Duration::from_nanos(3_000_000_001), "4s"),
            (Duration::from_secs(60), "60s"),
            (Duration::from_secs(9_223_372_036), "9223372036s"),
            (Duration::from_secs(9_223_372_037), "never"),
            (Duration::MAX, "never"),
        ] {
            assert_eq!(server_ttl(ttl), sent, "{ttl:?}");
        }
    }

    #[test]
    fn an_expiry_past_the_clock_is_no_expiry() {
        let headers = set_headers(Some(Duration::MAX), SystemTime::now(), 2, None);
        assert!(headers.is_empty());
    }
}
