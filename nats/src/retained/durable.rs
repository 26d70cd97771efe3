//! Durable subscriptions: a limits stream per subscription, read from its acknowledged
//! position.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use ephemeral::{Lagged, Name, Pattern};
use ephemeral_bus::retained::backend::{DurableBackend, check_durable};
use ephemeral_bus::retained::{DurableMessage, DurableOptions, StoreError};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};

use super::lock::Lock;
use super::report::Reporter;
use super::store::system_time;
use super::{OrFail, bucket, fail, fnv, resource_name};
use crate::subject::{self, MESSAGES};
use crate::{Nats, headers};

const META_NAME: &str = "ephemeral.name";
const META_PATTERN: &str = "ephemeral.pattern";
/// The max age asked, in milliseconds (the stream's own is at least 100 ms).
const META_MAX_AGE: &str = "ephemeral.max_age_ms";

/// The bounds an existing subscription's stream was given.
fn kept_options(config: &stream::Config) -> DurableOptions {
    let bound = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
    let age = config
        .metadata
        .get(META_MAX_AGE)
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(if config.max_age.is_zero() {
            Duration::MAX
        } else {
            config.max_age
        });
    DurableOptions::default()
        .max_messages(bound(config.max_messages))
        .max_bytes(bound(config.max_bytes))
        .max_age(age)
}

/// A loss found by the deliveries: `Lagged(n)` and the highest stream sequence it covers.
type Loss = (Lagged, u64);

/// An attached durable subscription.
pub(crate) struct NatsDurable {
    name: Name,
    pattern: Pattern,
    options: DurableOptions,
    js: jetstream::Context,
    stream: stream::Stream,
    state: kv::Store,
    floor_key: String,
    /// Where the highest reported loss is kept (see [`Reporter`]).
    reported_key: String,
    /// The acknowledged position, written under this lock so acks never go backwards.
    floor: Arc<tokio::sync::Mutex<u64>>,
    /// The acknowledged position as the deliveries read it: messages at or below it were
    /// consumed by an acknowledgement (one made ahead of reading, `ack_sequence(u64::MAX)`
    /// to skip a backlog), so they are neither delivered nor counted as lost.
    acked: Arc<AtomicU64>,
    /// The highest stream sequence seen by the deliveries: the stream holds at least that
    /// many, so an ack up to it needs no look at the stream's end.
    seen: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
    messages: BoxStream<'static, Result<DurableMessage, Loss>>,
    reporter: Option<Reporter>,
    lock: Option<Lock>,
    /// The connection, to say so when an ack or a removal fails with it down.
    nats: Nats,
}

impl std::fmt::Debug for NatsDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDurable")
            .field("name", &self.name.as_str())
            .field("pattern", &self.pattern.as_str())
            .finish_non_exhaustive()
    }
}

impl NatsDurable {
    pub(crate) async fn attach(
        nats: Nats,
        pattern: &str,
        name: &str,
        options: Option<DurableOptions>,
    ) -> Result<Self, StoreError> {
        let (name, _) = check_durable(
            pattern,
            name,
            options.as_ref().unwrap_or(&DurableOptions::default()),
        )?;
        let routed = subject::routed(nats.prefix(), pattern).map_err(|e| fail("subscribe")(&e))?;
        super::require_jetstream(&nats, "subscribe").await?;
        let js = nats.jetstream().clone();
        let state = bucket(
            &js,
            jetstream::kv::Config {
                bucket: format!("{}_DURABLES", crate::subject::resource_token(nats.prefix())),
                history: 1,
                ..Default::default()
            },
        )
        .await?;
        let id = format!("{:016x}", fnv(&name));
        let Some(lock) = Lock::take(&state, &format!("lock.{id}")).await? else {
            return Err(StoreError::InUse {
                name: name.to_string(),
            });
        };
        let existing = js
            .get_stream(resource_name(nats.prefix(), "DUR", &name))
            .await;
        // Without bounds, an existing subscription keeps its own (as on the bus).
        let options = match (options, &existing) {
            (Some(options), _) => options,
            (None, Ok(stream)) => kept_options(&stream.cached_info().config),
            (None, Err(_)) => DurableOptions::default(),
        };
        let (max_age, read_age) = super::stream_age(options.get_max_age());
        let config = stream::Config {
            name: resource_name(nats.prefix(), "DUR", &name),
            description: Some(format!("ephemeral durable subscription {name}")),
            subjects: routed.subjects.clone(),
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_messages: i64::try_from(options.get_max_messages()).unwrap_or(i64::MAX),
            max_bytes: i64::try_from(options.get_max_bytes()).unwrap_or(i64::MAX),
            max_age,
            metadata: HashMap::from([
                (META_NAME.to_owned(), name.to_string()),
                (META_PATTERN.to_owned(), pattern.to_owned()),
                (
                    META_MAX_AGE.to_owned(),
                    options.get_max_age().as_millis().to_string(),
                ),
            ]),
            ..Default::default()
        };
        let overlap = |e: &dyn std::fmt::Display| {
            let text = e.to_string();
            StoreError::Backend {
                backend: "nats",
                op: "subscribe",
                message: if text.contains("overlap") {
                    format!(
                        "{text}: the pattern `{pattern}` overlaps another durable subscription's (JetStream streams cannot share subjects); remove that one or pick disjoint patterns"
                    )
                } else {
                    text
                },
            }
        };
        let stream = match existing {
            Ok(mut stream) => {
                let current = stream.info().await.or_fail("subscribe")?.config.clone();
                // Attaching with other bounds (or pattern) changes them from now on.
                if current.subjects != config.subjects
                    || current.max_messages != config.max_messages
                    || current.max_bytes != config.max_bytes
                    || current.max_age != config.max_age
                {
                    js.update_stream(config.clone())
                        .await
                        .map_err(|e| overlap(&e))?;
                }
                stream
            }
            Err(_) => js.create_stream(config).await.map_err(|e| overlap(&e))?,
        };
        let floor_key = format!("floor.{id}");
        let saved: u64 = match state.get(&floor_key).await.or_fail("subscribe")? {
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            None => 0,
        };
        // A position past the stream's end (saved by an older version that did not clamp
        // acks, or kept from a stream deleted by hand) acknowledges what the stream holds,
        // not what is still to come: as an ack past the end does (see `ack`).
        let floor = saved.min(stream.cached_info().state.last_sequence);
        let first = floor.saturating_add(1);
        // Losses up to here were handed out to an earlier subscriber: not reported again.
        // (Past the stream's end, as for the floor: the stream was deleted by hand.)
        let reported_key = format!("reported.{id}");
        let reported: u64 = match state.get(&reported_key).await.or_fail("subscribe")? {
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            None => 0,
        }
        .min(stream.cached_info().state.last_sequence);
        let config = consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        };
        let raw = super::resume::open(&stream, config, &nats, "subscribe")
            .await?
            .messages;
        let reporter = Reporter::start(state.clone(), reported_key.clone(), reported);
        let expired = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(floor));
        let acked = Arc::new(AtomicU64::new(floor));
        let messages = deliveries(
            raw,
            (first, reported),
            nats.prefix().to_owned(),
            Filters {
                pattern: routed.filter,
                max_age: read_age,
            },
            Arc::clone(&expired),
            Arc::clone(&seen),
            Arc::clone(&acked),
        );
        Ok(Self {
            name,
            pattern: Pattern::new(pattern),
            options,
            js,
            stream,
            state,
            reporter: Some(reporter),
            floor_key,
            reported_key,
            floor: Arc::new(tokio::sync::Mutex::new(floor)),
            acked,
            seen,
            expired,
            messages,
            lock: Some(lock),
            nats,
        })
    }
}

/// What a delivery must match besides being next: the local pattern (a route wider than
/// the pattern) and the subscription's age bound when the server cannot hold it.
struct Filters {
    pattern: Option<Pattern>,
    max_age: Option<Duration>,
}

/// Turns the stream's messages into deliveries: gaps (dropped by the bounds) become
/// `Lagged`, messages off the pattern and expired ones are skipped, and so are messages
/// at or below `acked` (consumed by an acknowledgement made before they were read: not
/// lost, so no `Lagged` for them). `(first, reported)`: the first sequence owed, and the
/// highest whose loss was reported already (to an earlier subscriber: not again).
fn deliveries(
    raw: BoxStream<'static, jetstream::Message>,
    (first, reported): (u64, u64),
    prefix: String,
    filters: Filters,
    expired: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
) -> BoxStream<'static, Result<DurableMessage, Loss>> {
    let Filters {
        pattern: filter,
        max_age,
    } = filters;
    let mut expected = first;
    let unreported = reported.saturating_add(1);
    raw.flat_map(move |message| {
        let mut out = Vec::with_capacity(2);
        let Ok(info) = message.info() else {
            return futures::stream::iter(out);
        };
        let (seq, published) = (info.stream_sequence, system_time(&info.published));
        // Relaxed: a bound read by acks, which look at the stream when above it.
        seen.fetch_max(seq, Ordering::Relaxed);
        // Acquire: pairs with the Release in `ack`, made before its purge, so a gap the
        // purge opens is always known here as acknowledged.
        expected = expected.max(acked.load(Ordering::Acquire).saturating_add(1));
        if seq < expected {
            return futures::stream::iter(out);
        }
        // The gap before it (dropped by the bounds), less what was reported already.
        let gap_from = expected.max(unreported);
        expected = seq + 1;
        if super::too_old(published, max_age) {
            // Dropped by the subscription's age (below the server's floor, so checked
            // here): a lag, as if the server had dropped it.
            if seq >= gap_from {
                out.push(Err((Lagged(seq + 1 - gap_from), seq)));
            }
            return futures::stream::iter(out);
        }
        if seq > gap_from {
            out.push(Err((Lagged(seq - gap_from), seq - 1)));
        }
        let Some(topic) = subject::name_of(&prefix, MESSAGES, &message.subject) else {
            return futures::stream::iter(out);
        };
        if filter.as_ref().is_some_and(|p| !p.matches(&topic)) {
            return futures::stream::iter(out);
        }
        let mut decoded = headers::decode(message.headers.as_ref());
        if let Some(ttl) = decoded.ttl
                // No expiry when it is past what the clock can hold.
                && published.checked_add(ttl).is_some_and(|at| at <= SystemTime::now())
        {
            // Relaxed: a statistic.
            expired.fetch_add(1, Ordering::Relaxed);
            return futures::stream::iter(out);
        }
        let origin = decoded.origin.or(decoded.publisher).unwrap_or(0);
        let timestamp = decoded.timestamp.unwrap_or(published);
        let headers = decoded.user_headers();
        out.push(Ok(DurableMessage::new(
            seq,
            topic,
            Arc::from(&message.payload[..]),
            timestamp,
        )
        .with_source(headers, origin)));
        futures::stream::iter(out)
    })
    .boxed()
}

impl Stream for NatsDurable {
    type Item = Result<DurableMessage, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.messages.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err((lagged, through)))) => {
                // Recorded as it is handed out (see `Reporter`): a loss is reported once
                // per subscription, not once per attach.
                if let Some(reporter) = &self.reporter {
                    reporter.handed.send_if_modified(|handed| {
                        let raised = through > *handed;
                        *handed = (*handed).max(through);
                        raised
                    });
                }
                Poll::Ready(Some(Err(lagged)))
            }
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for NatsDurable {
    fn drop(&mut self) {
        // The lock is released once the last reported loss is written, so the next
        // subscriber (who waits for the lock) reads it.
        if let (Some(reporter), Ok(runtime)) =
            (self.reporter.take(), tokio::runtime::Handle::try_current())
        {
            let lock = self.lock.take();
            runtime.spawn(async move {
                reporter.finish().await;
                drop(lock);
            });
        }
    }
}

impl DurableBackend for NatsDurable {
    fn name(&self) -> &Name {
        &self.name
    }

    fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    fn options(&self) -> &DurableOptions {
        &self.options
    }

    fn expired(&self) -> u64 {
        // Relaxed: a statistic.
        self.expired.load(Ordering::Relaxed)
    }

    fn ack(&self, sequence: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (state, key, mut stream, floor, acked) = (
            self.state.clone(),
            self.floor_key.clone(),
            self.stream.clone(),
            Arc::clone(&self.floor),
            Arc::clone(&self.acked),
        );
        let nats = self.nats.clone();
        // Relaxed: only a hint whether the stream's end must be asked.
        let seen = self.seen.load(Ordering::Relaxed);
        async move {
            let mut floor = floor.lock().await;
            if sequence <= *floor {
                return Ok(());
            }
            // As on the bus, an ack past the last message stored (`u64::MAX`: "all of
            // them") acknowledges what is stored, never what is still to come: the position
            // saved is at most the stream's last sequence, so the next one is always
            // `position + 1`.
            let sequence = if sequence <= seen {
                sequence
            } else {
                let last = stream
                    .info()
                    .await
                    .or_fail("acknowledge")?
                    .state
                    .last_sequence;
                sequence.min(last)
            };
            if sequence <= *floor {
                return Ok(());
            }
            // The position first: a purge without it would read as messages dropped.
            state
                .put(&key, Bytes::from(sequence.to_string()))
                .await
                .or_fail("acknowledge")?;
            *floor = sequence;
            // Release: pairs with the Acquire in `deliveries`; before the purge.
            acked.fetch_max(sequence, Ordering::Release);
            stream
                .purge()
                .sequence(sequence.saturating_add(1))
                .await
                .or_fail("acknowledge")?;
            Ok(())
        }
        .map(move |r| super::offline(&nats, r))
        .boxed()
    }

    fn remove(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let nats = self.nats.clone();
        async move {
            let name = self.stream.cached_info().config.name.clone();
            // Stopped first: it must not write the reported position after its purge.
            if let Some(reporter) = self.reporter.take() {
                reporter.finish().await;
            }
            for key in [&self.floor_key, &self.reported_key] {
                self.state
                    .purge(key)
                    .await
                    .or_fail("remove a durable subscription")?;
            }
            match self.js.delete_stream(&name).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(fail("remove a durable subscription")(&e)),
            }
            drop(self.lock.take());
            Ok(())
        }
        .map(move |r| super::offline(&nats, r))
        .boxed()
    }
}
