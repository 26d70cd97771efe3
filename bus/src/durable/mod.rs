//! The bus backend of [`DurableSubscription`]: messages kept by their publishers in the
//! bus's database (see [`capture`]), read by the one attached subscriber.

pub(crate) mod capture;
mod ops;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::ops::Bound;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use ephemeral::{Lagged, Name, Pattern};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures_core::Stream;

use crate::Bus;
use crate::db::codec::{decode_counters, decode_msg, id_key, seq_key, seq_of};
use crate::db::{self, Db};
use crate::retained::backend::{DurableBackend, check_durable};
use crate::retained::retry::Follow;
use crate::retained::{DurableMessage, DurableOptions, DurableSubscription, StoreError, clock};

use ops::Registration;

/// The most messages (and about the most bytes) one read takes.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1024 * 1024;

impl Bus {
    /// Attaches to the durable subscription `name`, creating it on `pattern` with the
    /// default bounds ([`DurableOptions`]) if it does not exist. See
    /// [`DurableSubscription`].
    ///
    /// An existing subscription keeps the bounds it has (as a store or a room keeps the
    /// options it was created with; [`options`](DurableSubscription::options) tells them):
    /// only [`subscribe_durable_with`](Self::subscribe_durable_with) changes them. Its
    /// pattern becomes `pattern`.
    ///
    /// # Errors
    ///
    /// As [`subscribe_durable_with`](Self::subscribe_durable_with).
    pub async fn subscribe_durable(
        &self,
        pattern: &str,
        name: &str,
    ) -> Result<DurableSubscription, StoreError> {
        self.attach_durable(pattern, name, None).await
    }

    /// Attaches to the durable subscription `name`, creating it (or changing its pattern
    /// and bounds to these).
    ///
    /// From the moment the subscription is created, every message published on this bus
    /// on a topic matching `pattern` is kept for it by its publisher (topics starting with
    /// `_`, the bus's own, never are). When the pattern or the bounds change, this waits
    /// (at most [`BusOptions::handshake_timeout`](crate::BusOptions::handshake_timeout))
    /// until every other handle of the bus has learnt of it.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidName`], [`StoreError::InUse`] while another subscriber is
    /// attached (the subscription's pattern and bounds are then left as they are), or the
    /// database could not be opened.
    pub async fn subscribe_durable_with(
        &self,
        pattern: &str,
        name: &str,
        options: DurableOptions,
    ) -> Result<DurableSubscription, StoreError> {
        self.attach_durable(pattern, name, Some(options)).await
    }

    /// Attaches to `name` on `pattern`: with `options`, setting its bounds to them; with
    /// `None`, keeping those it has (the defaults for a new one).
    async fn attach_durable(
        &self,
        pattern: &str,
        name: &str,
        options: Option<DurableOptions>,
    ) -> Result<DurableSubscription, StoreError> {
        let (name, _) = check_durable(
            pattern,
            name,
            options.as_ref().unwrap_or(&DurableOptions::default()),
        )?;
        let db = Db::open_for(self, true).await?.ok_or(StoreError::Closed)?;
        // The lock first: an attach refused as in use must change nothing (the attached
        // subscriber's pattern and bounds are its own).
        let (id, changed, acked, reported, options, lock) = loop {
            let (id, created) = {
                let registration = Registration {
                    pattern: pattern.to_owned(),
                    options: options.clone().unwrap_or_default(),
                };
                let name = name.to_string();
                db.write(move |w| ops::ensure(w, &name, &registration))
                    .await?
            };
            let lock = lock_file(&db, id, &name)?;
            let (name, pattern, options) = (name.to_string(), pattern.to_owned(), options.clone());
            if let Some(attached) = db
                .write(move |w| ops::attach(w, &name, id, &pattern, options.as_ref()))
                .await?
            {
                break (
                    id,
                    created || attached.changed,
                    attached.acked,
                    attached.reported,
                    attached.options,
                    lock,
                );
            }
            // Removed by its subscriber between the two steps: start over.
        };
        if changed {
            capture::sync(self).await?;
        }
        let notices = db::notices(self, &db::durable_topic(id)).await;
        let expired = Arc::new(AtomicU64::new(0));
        let next = acked + 1;
        let acked = Arc::new(AtomicU64::new(acked));
        let reader = Reader {
            db: Arc::clone(&db),
            id,
            max_age_ms: options.max_age_ms,
            next,
            reported,
            pending: VecDeque::new(),
            expired: Arc::clone(&expired),
            acked: Arc::clone(&acked),
            follow: Follow::new("durable subscription", name.as_str(), notices),
        };
        let messages = futures::stream::unfold(reader, |mut r| async move {
            let item = r.next().await?;
            Some((item, r))
        })
        .boxed();
        Ok(DurableSubscription::from_backend(Box::new(BusDurable {
            db,
            bus: self.clone(),
            id,
            name,
            pattern: Pattern::new(pattern),
            options,
            messages,
            expired,
            acked,
            lock: Some(lock),
        })))
    }
}

/// The lock that makes the attached subscriber the only one: held while it lives, released
/// by the kernel when its process dies.
fn lock_file(db: &Db, id: u32, name: &Name) -> Result<(File, PathBuf), StoreError> {
    let path = db.path.join(format!("durable-{id}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(StoreError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok((file, path)),
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse {
            name: name.to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::io(&path)(e)),
    }
}

struct BusDurable {
    db: Arc<Db>,
    bus: Bus,
    id: u32,
    name: Name,
    pattern: Pattern,
    options: DurableOptions,
    messages: BoxStream<'static, Result<DurableMessage, Lagged>>,
    expired: Arc<AtomicU64>,
    /// The acknowledged position, shared with the reader (see `Reader::acked`).
    acked: Arc<AtomicU64>,
    lock: Option<(File, PathBuf)>,
}

impl fmt::Debug for BusDurable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusDurable")
            .field("name", &self.name.as_str())
            .field("pattern", &self.pattern.as_str())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Stream for BusDurable {
    type Item = Result<DurableMessage, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.messages.as_mut().poll_next(cx)
    }
}

impl DurableBackend for BusDurable {
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
        // Relaxed: a counter read on its own.
        self.expired.load(Ordering::Relaxed)
    }

    fn ack(&self, sequence: u64) -> BoxFuture<'static, Result<(), StoreError>> {
        let (id, db, acked) = (self.id, Arc::clone(&self.db), Arc::clone(&self.acked));
        Box::pin(async move {
            let position = match db.write(move |w| ops::ack(w, id, sequence)).await {
                Ok(position) => position,
                Err(StoreError::DatabaseFull { .. }) => ack_in_steps(&db, id, sequence).await?,
                Err(e) => return Err(e),
            };
            // Release: pairs with the Acquire in `Reader::next`.
            acked.fetch_max(position, Ordering::Release);
            Ok(())
        })
    }

    fn remove(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let (id, name) = (self.id, self.name.to_string());
            let remove = |name: String| self.db.write(move |w| ops::remove(w, &name, id));
            match remove(name.clone()).await {
                Ok(()) => {}
                // A full database: the messages first, a few at a time, then the rest.
                Err(StoreError::DatabaseFull { .. }) => {
                    ack_in_steps(&self.db, id, u64::MAX).await?;
                    remove(name).await?;
                }
                Err(e) => return Err(e),
            }
            if let Some((file, path)) = self.lock.take() {
                let _ = std::fs::remove_file(path);
                drop(file);
            }
            capture::sync(&self.bus).await
        })
    }
}

/// The most messages one write of an acknowledgement removes when the database is full.
const ACK_STEP: usize = 64;

/// Acknowledges up to `sequence` in a full database, where one transaction has no room to
/// remove many messages (LMDB reuses freed pages only after the commit): at most
/// [`ACK_STEP`] per write, fewer (down to one) while even that finds no room. Returns the
/// acknowledged position.
async fn ack_in_steps(db: &Db, id: u32, sequence: u64) -> Result<u64, StoreError> {
    let mut step = ACK_STEP;
    loop {
        match db
            .write(move |w| ops::ack_some(w, id, sequence, step))
            .await
        {
            Ok((position, true)) => return Ok(position),
            Ok((_, false)) => {}
            Err(StoreError::DatabaseFull { .. }) if step > 1 => step /= 2,
            Err(e) => return Err(e),
        }
    }
}

/// A loss found by a read: `Lagged(n)` and the highest sequence it covers.
type Loss = (Lagged, u64);

/// The subscriber's reading side.
struct Reader {
    db: Arc<Db>,
    id: u32,
    max_age_ms: u64,
    next: u64,
    /// The highest sequence whose loss was handed out, to this subscriber or an earlier
    /// one of the subscription (kept in its counters): never reported again.
    reported: u64,
    pending: VecDeque<Result<DurableMessage, Loss>>,
    expired: Arc<AtomicU64>,
    /// The acknowledged position as this subscriber's acks left it: a message fetched into
    /// `pending` and acknowledged (ahead) before it was handed out is passed over.
    acked: Arc<AtomicU64>,
    /// Notices, read failures (see `retained::retry`).
    follow: Follow,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<DurableMessage, Lagged>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                // Acquire: pairs with the Release in `ack`.
                let acked = self.acked.load(Ordering::Acquire);
                match item {
                    Ok(message) if message.sequence() <= acked => continue,
                    Ok(message) => return Some(Ok(message)),
                    Err((lagged, through)) => {
                        // Recorded as it is handed out, in line before any later write
                        // of this process (an attach again included), so a loss is
                        // reported once per subscription, not once per attach; one
                        // never handed out (the subscriber went away first) is not
                        // recorded, and is reported to the next subscriber.
                        self.reported = self.reported.max(through);
                        let id = self.id;
                        self.db
                            .write_detached("recording a reported loss", move |w| {
                                ops::report(w, id, through)
                            });
                        return Some(Err(lagged));
                    }
                }
            }
            let read = self.follow.check().and_then(|()| self.read_batch());
            self.follow.after(read).await?;
        }
    }

    /// Reads the next bounded batch; how many messages it went through.
    fn read_batch(&mut self) -> Result<usize, StoreError> {
        let (id, db) = (self.id, Arc::clone(&self.db));
        let now = clock::now_ms();
        let cutoff = now.saturating_sub(self.max_age_ms);
        let to = seq_key(id, u64::MAX);
        db.read(|txn, t| {
            // Acknowledged while this reader had not reached them yet (`ack_sequence` past
            // what it read, say to skip a backlog): removed by the subscriber's own choice,
            // so passed over without a `Lagged`, which would report them dropped.
            let acked = decode_counters(
                t.counters
                    .get(txn, &id_key(id))
                    .map_err(db.err("read counters"))?,
            )[ops::ACKED];
            if self.next <= acked {
                self.next = acked + 1;
            }
            let from = seq_key(id, self.next);
            // Losses at or below `reported` were handed out already (to an earlier
            // subscriber, say): not reported again.
            let unreported = self.reported.saturating_add(1);
            let (mut read, mut bytes, mut lag, mut through) = (0, 0, 0u64, 0u64);
            for item in t
                .msg
                .range(txn, &(Bound::Included(&from[..]), Bound::Included(&to[..])))
                .map_err(db.err("read messages"))?
            {
                if read >= BATCH || bytes >= BATCH_BYTES {
                    break;
                }
                let (k, r) = item.map_err(db.err("read messages"))?;
                let Some(seq) = seq_of(k) else { continue };
                read += 1;
                bytes += r.len();
                // Dropped by the bounds while this subscriber was away or behind.
                let gap_from = self.next.max(unreported);
                if seq > gap_from {
                    lag += seq - gap_from;
                    through = seq - 1;
                }
                self.next = seq + 1;
                // A record that cannot be read is a message lost: reported, not skipped
                // silently; so is one too old when read.
                let Some(msg) = decode_msg(r).filter(|msg| msg.at_ms >= cutoff) else {
                    if seq >= unreported {
                        lag += 1;
                        through = seq;
                    }
                    continue;
                };
                if clock::expired(msg.expires_ms, now) {
                    // Relaxed: a counter.
                    self.expired.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Some(topic) = msg.topic else { continue };
                if lag > 0 {
                    self.pending
                        .push_back(Err((Lagged(std::mem::take(&mut lag)), through)));
                }
                self.pending.push_back(Ok(DurableMessage::new(
                    seq,
                    topic,
                    msg.payload,
                    clock::from_ms(msg.at_ms),
                )
                .with_source(Arc::from(msg.headers), msg.sender)));
            }
            if lag > 0 {
                self.pending.push_back(Err((Lagged(lag), through)));
            }
            Ok(read)
        })
    }
}

#[cfg(test)]
mod read_failures {
    use futures::StreamExt;

    use crate::retained::retry::{MAX_FAILURES, inject};
    use crate::{Bus, BusOptions};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_reader_retries_failed_reads_and_ends_only_when_they_keep_failing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = Bus::open_with("durable-failures", BusOptions::default().dir(dir.path()))
            .await
            .expect("open a bus");
        let sub = bus
            .subscribe_durable("retry.topic.*", "retry.sub")
            .await
            .expect("subscribe");
        drop(sub);
        bus.publish("retry.topic.a", b"kept")
            .await
            .expect("publish");
        inject::fail_reads("retry.sub", MAX_FAILURES - 1);
        let mut sub = bus
            .subscribe_durable("retry.topic.*", "retry.sub")
            .await
            .expect("attach");
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("delivered after the retries")
            .expect("the subscription goes on")
            .expect("no lag");
        assert_eq!(first.payload(), b"kept");
        drop(sub);
        inject::fail_reads("retry.sub", u32::MAX);
        let mut sub = bus
            .subscribe_durable("retry.topic.*", "retry.sub")
            .await
            .expect("attach");
        let end = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("ends in time");
        assert!(end.is_none(), "{end:?}");
        inject::fail_reads("retry.sub", 0);
    }
}
