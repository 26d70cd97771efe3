//! `Store::watch` on the bus: the store's log, read from a revision on, woken by notices.
//!
//! The watcher subscribes to the store's notice topic *before* it reads the current
//! revision, so every change after that revision rings it. It then reads the log from the
//! next revision in bounded batches; a notice only says "read again", so notices lost to
//! its one-slot buffer cost nothing, and one lost on the way (its writer died right after
//! its commit) costs at most `retained::retry::RECHECK` (see there; read failures are
//! retried the same way as a room joiner's). A revision missing from the log (trimmed while the
//! watcher lagged more than `LOG_KEEP` revisions or `LOG_KEEP_BYTES` of entries behind) is
//! reported as `Lagged`.

use std::collections::VecDeque;
use std::sync::Arc;

use ephemeral::{Lagged, Name, Pattern};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::BusStore;
use super::ops::REV;
use crate::db::codec::{self, Cause, EventKind, decode_event, seq_key, seq_of};
use crate::db::{self, Db, owners};
use crate::retained::retry::Follow;
use crate::retained::{Entry, Removal, StoreError, StoreEvent, clock};

/// The most log entries read at once.
const BATCH: usize = 256;

struct Watcher {
    db: Arc<Db>,
    id: u32,
    /// The watching handle's peer: owned values of other owners are watched for their
    /// owner's death.
    me: u64,
    pattern: Pattern,
    next: u64,
    pending: VecDeque<Result<StoreEvent, Lagged>>,
    /// Notices, read failures (see `retained::retry`).
    follow: Follow,
}

pub(super) async fn watch(
    store: &BusStore,
    pattern: Pattern,
) -> Result<BoxStream<'static, Result<StoreEvent, Lagged>>, StoreError> {
    let notices = db::notices(&store.bus, &store.topic).await;
    let id = store.id;
    let revision = store.db.read(|txn, t| {
        Ok(codec::decode_counters(
            t.counters
                .get(txn, &codec::id_key(id))
                .map_err(store.db.err("read counters"))?,
        )[REV])
    })?;
    // Owners of values already there: their death removes their values, and watchers
    // should hear of it without anyone asking.
    let me = store.me;
    let owners = {
        let db = Arc::clone(&store.db);
        store
            .db
            .scan(move |txn, t| super::ops::owners(txn, t, &db, me))
            .await?
    };
    for owner in owners {
        owners::wait_for_death(&store.db, owner);
    }
    let watcher = Watcher {
        db: Arc::clone(&store.db),
        id,
        me,
        pattern,
        next: revision + 1,
        pending: VecDeque::new(),
        follow: Follow::new("store watch", store.name.as_str(), notices),
    };
    Ok(futures::stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    })
    .boxed())
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<StoreEvent, Lagged>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                // Checked again at hand-out: a value that expired while it waited in
                // `pending` is never handed out dead (its `Expired` follows).
                if let Ok(StoreEvent::Set(entry)) = &item
                    && entry
                        .expires_at()
                        .is_some_and(|at| clock::expired(clock::to_ms(at), clock::now_ms()))
                {
                    continue;
                }
                return Some(item);
            }
            let read = self.follow.check().and_then(|()| self.read_batch());
            self.follow.after(read).await?;
        }
    }

    /// Reads the next batch of the log; how many entries it went through.
    fn read_batch(&mut self) -> Result<usize, StoreError> {
        let now = clock::now_ms();
        let (id, db) = (self.id, Arc::clone(&self.db));
        let from = seq_key(id, self.next);
        let to = seq_key(id, u64::MAX);
        let mut read = 0;
        let mut soonest = 0u64;
        let mut owned_by = Vec::new();
        db.read(|txn, t| {
            let range = (
                std::ops::Bound::Included(&from[..]),
                std::ops::Bound::Included(&to[..]),
            );
            for item in t
                .log
                .range(txn, &range)
                .map_err(db.err("read log"))?
                .take(BATCH)
            {
                let (k, r) = item.map_err(db.err("read log"))?;
                let Some(revision) = seq_of(k) else { continue };
                if revision > self.next {
                    // Trimmed: whether they matched the pattern cannot be told any more, so
                    // every skipped change of the store counts (as documented).
                    self.pending.push_back(Err(Lagged(revision - self.next)));
                }
                self.next = revision + 1;
                read += 1;
                let Some(event) = decode_event(r) else {
                    continue;
                };
                if event.kind == EventKind::Set {
                    if event.expires_ms != 0 {
                        soonest = if soonest == 0 {
                            event.expires_ms
                        } else {
                            soonest.min(event.expires_ms)
                        };
                    }
                    if event.owner != 0 && event.owner != self.me {
                        owned_by.push(event.owner);
                    }
                }
                if !self.pattern.matches(event.key) {
                    continue;
                }
                let Ok(key) = Name::new(event.key) else {
                    continue;
                };
                let item = match event.kind {
                    EventKind::Set => {
                        // Expired by now: it would be handed out dead; the `Expired` follows.
                        // (Checked again when it is handed out.)
                        if clock::expired(event.expires_ms, now) {
                            continue;
                        }
                        StoreEvent::Set(
                            Entry::new(
                                key,
                                event.value.to_vec(),
                                revision,
                                clock::from_ms(event.at_ms),
                            )
                            .with_expiry(
                                (event.expires_ms != 0).then(|| clock::from_ms(event.expires_ms)),
                            )
                            .with_owner((event.owner != 0).then_some(event.owner)),
                        )
                    }
                    EventKind::Expired => StoreEvent::Expired { key, revision },
                    EventKind::Deleted => StoreEvent::Deleted {
                        key,
                        revision,
                        cause: match event.cause {
                            Cause::Cleared => Removal::Cleared,
                            Cause::OwnerGone => Removal::OwnerGone,
                            Cause::Deleted | Cause::None => Removal::Deleted,
                        },
                    },
                };
                self.pending.push_back(Ok(item));
            }
            Ok(())
        })?;
        // Another process's value may expire before this process's sweeper would look.
        db.sweeper.poke(soonest);
        for owner in owned_by {
            owners::wait_for_death(&db, owner);
        }
        Ok(read)
    }
}
