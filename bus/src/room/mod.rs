//! The bus backend of [`Room`]: messages in the bus's database, joiners woken by notices.
//!
//! A send takes the room's next sequence number in the same transaction that stores the
//! message and drops what is beyond the room's bounds, then rings the room's notice topic.
//! A joiner subscribes to that topic first, then reads the history and, after it, every
//! message by sequence: the database is the one order, so the seam between history and
//! live messages has no gap and no duplicate however sends race the join.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use ephemeral::{Lagged, Name};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::Bus;
use crate::db::codec::{self, MsgRecord, ROOM, decode_msg, msg_times, seq_key, seq_of};
use crate::db::{self, Db, Write, names};
use crate::retained::backend::{RoomBackend, check_room};
use crate::retained::retry::Follow;
use crate::retained::{Room, RoomMessage, RoomOptions, StoreError, clock};

mod trim;

/// The room's counter: the last sequence number given.
const LAST: usize = 0;

/// The most messages (and about the most bytes) one read takes.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1024 * 1024;

/// The most old messages one send drops by age (the rest go with the next sends).
const AGE_TRIM: usize = 64;

impl Bus {
    /// Opens the room `name` of this bus, creating it with `options` if it does not exist
    /// yet (an existing room keeps the options it was created with). See [`Room`].
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidName`], or the database could not be opened.
    pub async fn room(&self, name: &str, options: RoomOptions) -> Result<Room, StoreError> {
        let name = check_room(name, &options)?;
        let db = Db::open_for(self, true).await?.ok_or(StoreError::Closed)?;
        let (id, options) = names::open(&db, ROOM, &name, &options).await?;
        Ok(Room::from_backend(Arc::new(BusRoom {
            topic: db::room_topic(id),
            db,
            bus: self.clone(),
            id,
            name,
            options,
        })))
    }
}

struct BusRoom {
    db: Arc<Db>,
    bus: Bus,
    id: u32,
    name: Name,
    options: RoomOptions,
    topic: String,
}

impl fmt::Debug for BusRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusRoom")
            .field("name", &self.name.as_str())
            .field("id", &self.id)
            .field("db", &self.db.path)
            .finish_non_exhaustive()
    }
}

/// Stores a message as the room's next; returns its sequence number.
fn send(
    w: &mut Write<'_, '_>,
    id: u32,
    options: &RoomOptions,
    sender: u64,
    payload: &[u8],
    now: u64,
) -> Result<u64, StoreError> {
    let mut c = codec::decode_counters(
        w.t.counters
            .get(w.txn, &codec::id_key(id))
            .map_err(w.err("read counters"))?,
    );
    let seq = c[LAST] + 1;
    c[LAST] = seq;
    let record = MsgRecord {
        sender,
        at_ms: now,
        expires_ms: 0,
        topic: "",
        headers: &[],
        payload,
    };
    w.t.msg
        .put(w.txn, &seq_key(id, seq), &record.encode())
        .map_err(w.err("write message"))?;
    // Count: everything up to `seq - max_messages` goes.
    if seq > options.max_messages {
        let from = seq_key(id, 0);
        let to = seq_key(id, seq - options.max_messages);
        w.t.msg
            .delete_range(
                w.txn,
                &(Bound::Included(&from[..]), Bound::Included(&to[..])),
            )
            .map_err(w.err("trim room"))?;
    }
    // Age: the oldest, while too old.
    let cutoff = now.saturating_sub(options.max_age_ms);
    let old: Vec<Vec<u8>> =
        w.t.msg
            .prefix_iter(w.txn, &codec::id_key(id))
            .map_err(w.err("read room"))?
            .take(AGE_TRIM)
            .map_while(|item| {
                let (k, r) = item.ok()?;
                let (at, _) = msg_times(r)?;
                (at < cutoff).then(|| k.to_vec())
            })
            .collect();
    for k in old {
        w.t.msg.delete(w.txn, &k).map_err(w.err("trim room"))?;
    }
    w.t.counters
        .put(w.txn, &codec::id_key(id), &codec::encode_counters(&c))
        .map_err(w.err("write counters"))?;
    Ok(seq)
}

impl RoomBackend for BusRoom {
    fn name(&self) -> &Name {
        &self.name
    }

    fn options(&self) -> &RoomOptions {
        &self.options
    }

    fn send<'a>(&'a self, payload: &'a [u8]) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let now = clock::now_ms();
            let (id, options, sender) = (self.id, self.options.clone(), self.bus.peer_id());
            let payload: Arc<[u8]> = Arc::from(payload);
            let write = |options: RoomOptions, payload: Arc<[u8]>| {
                move |w: &mut Write<'_, '_>| send(w, id, &options, sender, &payload, now)
            };
            let seq = match self
                .db
                .write(write(options.clone(), Arc::clone(&payload)))
                .await
            {
                Ok(seq) => seq,
                // The room's own trim is part of the send's transaction, which a full
                // database has no room for: trimmed first, a few at a time, then sent
                // again (still full: nothing of this room's to give, `DatabaseFull`).
                Err(StoreError::DatabaseFull { .. }) => {
                    trim::trim_in_steps(&self.db, id, &options, now).await?;
                    self.db.write(write(options, payload)).await?
                }
                Err(e) => return Err(e),
            };
            db::ring(&self.bus, &self.topic, seq).await;
            Ok(seq)
        })
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(trim::clear(&self.db, self.id))
    }

    fn join(
        &self,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RoomMessage, Lagged>>, StoreError>> {
        Box::pin(async move {
            let notices = db::notices(&self.bus, &self.topic).await;
            // Where the joiner starts is fixed now, not at its first read: anything from
            // here on that the room drops before it is read is a lag, never lost silently.
            let start = history_start(&self.db, self.id, self.options.max_age_ms)?;
            let joiner = Joiner {
                db: Arc::clone(&self.db),
                id: self.id,
                max_age_ms: self.options.max_age_ms,
                next: start,
                pending: VecDeque::new(),
                follow: Follow::new("room joiner", self.name.as_str(), notices),
            };
            Ok(futures::stream::unfold(joiner, |mut j| async move {
                let item = j.next().await?;
                Some((item, j))
            })
            .boxed())
        })
    }
}

/// The first sequence a joiner delivers: the oldest message still young enough, or the
/// next one sent. Older ones were gone before it came: not a lag.
fn history_start(db: &Db, id: u32, max_age_ms: u64) -> Result<u64, StoreError> {
    let cutoff = clock::now_ms().saturating_sub(max_age_ms);
    db.read(|txn, t| {
        let last = codec::decode_counters(
            t.counters
                .get(txn, &codec::id_key(id))
                .map_err(db.err("read counters"))?,
        )[LAST];
        let first = t
            .msg
            .prefix_iter(txn, &codec::id_key(id))
            .map_err(db.err("read room"))?
            .filter_map(Result::ok)
            .find(|(_, r)| msg_times(r).is_some_and(|(at, _)| at >= cutoff))
            .and_then(|(k, _)| seq_of(k));
        Ok(first.unwrap_or(last + 1).min(last + 1))
    })
}

struct Joiner {
    db: Arc<Db>,
    id: u32,
    max_age_ms: u64,
    /// The next sequence to deliver.
    next: u64,
    pending: VecDeque<Result<RoomMessage, Lagged>>,
    /// Notices, read failures (see `retained::retry`).
    follow: Follow,
}

impl Joiner {
    async fn next(&mut self) -> Option<Result<RoomMessage, Lagged>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let read = self.follow.check().and_then(|()| self.read_batch());
            self.follow.after(read).await?;
        }
    }

    /// Reads the next bounded batch; how many messages it went through.
    fn read_batch(&mut self) -> Result<usize, StoreError> {
        let (id, db) = (self.id, Arc::clone(&self.db));
        let cutoff = clock::now_ms().saturating_sub(self.max_age_ms);
        db.read(|txn, t| {
            let next = self.next;
            let from = seq_key(id, next);
            let to = seq_key(id, u64::MAX);
            let (mut read, mut bytes, mut expected, mut lag) = (0, 0, next, 0u64);
            for item in t
                .msg
                .range(txn, &(Bound::Included(&from[..]), Bound::Included(&to[..])))
                .map_err(db.err("read room"))?
            {
                if read >= BATCH || bytes >= BATCH_BYTES {
                    break;
                }
                let (k, r) = item.map_err(db.err("read room"))?;
                let Some(seq) = seq_of(k) else { continue };
                read += 1;
                bytes += r.len();
                // Messages the room dropped (count or age) before this joiner read them.
                lag += seq - expected;
                expected = seq + 1;
                // A record that cannot be read is a message lost: reported, not skipped silently.
                let Some(msg) = decode_msg(r) else {
                    lag += 1;
                    continue;
                };
                if msg.at_ms < cutoff {
                    lag += 1;
                    continue;
                }
                if lag > 0 {
                    self.pending
                        .push_back(Err(Lagged(std::mem::take(&mut lag))));
                }
                self.pending.push_back(Ok(RoomMessage::new(
                    seq,
                    msg.sender,
                    clock::from_ms(msg.at_ms),
                    msg.payload,
                )));
            }
            if lag > 0 {
                self.pending.push_back(Err(Lagged(lag)));
            }
            self.next = expected;
            Ok(read)
        })
    }
}

#[cfg(test)]
mod read_failures {
    use futures::StreamExt;

    use crate::retained::RoomOptions;
    use crate::retained::retry::{MAX_FAILURES, inject};
    use crate::{Bus, BusOptions};

    async fn bus(dir: &std::path::Path) -> Bus {
        Bus::open_with("read-failures", BusOptions::default().dir(dir))
            .await
            .expect("open a bus")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_joiner_retries_failed_reads_and_ends_only_when_they_keep_failing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bus = bus(dir.path()).await;
        let room = bus
            .room("retry.room", RoomOptions::default())
            .await
            .expect("room");
        room.send(b"kept").await.expect("send");
        // Failures short of the limit: retried, nothing lost.
        inject::fail_reads("retry.room", MAX_FAILURES - 1);
        let mut joined = room.join().await.expect("join");
        let first = tokio::time::timeout(std::time::Duration::from_secs(20), joined.next())
            .await
            .expect("delivered after the retries")
            .expect("the join goes on")
            .expect("no lag");
        assert_eq!(first.payload(), b"kept");
        // Failing on and on: the join ends (logged as an error), it does not hang.
        inject::fail_reads("retry.room", u32::MAX);
        let mut again = room.join().await.expect("join");
        let end = tokio::time::timeout(std::time::Duration::from_secs(20), again.next())
            .await
            .expect("ends in time");
        assert!(end.is_none(), "{end:?}");
        inject::fail_reads("retry.room", 0);
    }
}
