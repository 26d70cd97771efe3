//! A room's messages removed a few per write, for a full database: the trim a send needs
//! before it fits, and [`Room::clear`](crate::retained::Room::clear).

use crate::db::codec::{self, msg_times, seq_of};
use crate::db::{Db, Write};
use crate::retained::{RoomOptions, StoreError};

use super::LAST;

/// The most messages one write removes when the database is full (a trim before a send,
/// a clear): one transaction has no room for the pages a big removal writes before it
/// commits, since LMDB reuses freed pages only after the commit.
const FULL_STEP: usize = 64;

/// Removes the room's oldest messages while `gone(sequence, sent_at_ms)` says so (asked
/// oldest first; it stops at the first kept), at most `limit`. Returns how many it removed
/// and whether it stopped at the limit (there may be more).
fn remove_oldest(
    w: &mut Write<'_, '_>,
    id: u32,
    limit: usize,
    mut gone: impl FnMut(u64, u64) -> bool,
) -> Result<(u64, bool), StoreError> {
    let found: Vec<Vec<u8>> =
        w.t.msg
            .prefix_iter(w.txn, &codec::id_key(id))
            .map_err(w.err("read room"))?
            .take(limit)
            .map_while(|item| {
                let (k, r) = item.ok()?;
                let seq = seq_of(k)?;
                // A record that cannot be read has no time: it goes with the ones before it.
                let at = msg_times(r).map_or(0, |(at, _)| at);
                gone(seq, at).then(|| k.to_vec())
            })
            .collect();
    let more = found.len() == limit;
    for k in &found {
        w.t.msg.delete(w.txn, k).map_err(w.err("trim room"))?;
    }
    Ok((found.len() as u64, more))
}

/// Makes room for the next message in a full database: drops, a few per write (each write
/// freeing room for the next), what the room's own bounds drop anyway when it is sent
/// (the oldest beyond `max_messages - 1`, and those older than the max age). Never more:
/// a room is not emptied below its bounds because the database is full.
pub(super) async fn trim_in_steps(
    db: &Db,
    id: u32,
    options: &RoomOptions,
    now: u64,
) -> Result<(), StoreError> {
    let (max, cutoff) = (options.max_messages, now.saturating_sub(options.max_age_ms));
    let removed = in_steps(db, move |w, step| {
        let last = codec::decode_counters(
            w.t.counters
                .get(w.txn, &codec::id_key(id))
                .map_err(w.err("read counters"))?,
        )[LAST];
        // The next message is `last + 1`; with it, the room keeps `max` messages.
        let beyond = (last + 1).saturating_sub(max);
        remove_oldest(w, id, step, |seq, at| seq <= beyond || at < cutoff)
    })
    .await?;
    if removed > 0 {
        // LMDB reuses the pages a transaction freed from the second transaction after it
        // on, not the one right after (its oldest snapshot is taken as still read): one
        // small write in between, so the send that follows finds the room just freed.
        // Still full after all: the send says so.
        let settle = move |w: &mut Write<'_, '_>| {
            let key = codec::id_key(id);
            let counters =
                w.t.counters
                    .get(w.txn, &key)
                    .map_err(w.err("read counters"))?;
            let counters = codec::encode_counters(&codec::decode_counters(counters));
            w.t.counters
                .put(w.txn, &key, &counters)
                .map_err(w.err("write counters"))
        };
        match db.write(settle).await {
            Ok(()) | Err(StoreError::DatabaseFull { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes every message of the room, in one write or, in a full database, a few per
/// write; how many.
pub(super) async fn clear(db: &Db, id: u32) -> Result<u64, StoreError> {
    let all = move |w: &mut Write<'_, '_>| remove_oldest(w, id, usize::MAX, |_, _| true);
    match db.write(all).await {
        Ok((removed, _)) => return Ok(removed),
        Err(StoreError::DatabaseFull { .. }) => {}
        Err(e) => return Err(e),
    }
    in_steps(db, move |w, step| remove_oldest(w, id, step, |_, _| true)).await
}

/// Runs `remove(write, step)` as one write after another until it says there is no more,
/// at most [`FULL_STEP`] messages a write, fewer (down to one) while even that finds no
/// room; how many it removed in all.
async fn in_steps<F>(db: &Db, remove: F) -> Result<u64, StoreError>
where
    F: Fn(&mut Write<'_, '_>, usize) -> Result<(u64, bool), StoreError> + Clone + Send + 'static,
{
    let (mut step, mut total) = (FULL_STEP, 0);
    loop {
        let remove = remove.clone();
        match db.write(move |w| remove(w, step)).await {
            Ok((removed, more)) => {
                total += removed;
                if !more {
                    return Ok(total);
                }
            }
            Err(StoreError::DatabaseFull { .. }) if step > 1 => step /= 2,
            Err(e) => return Err(e),
        }
    }
}
