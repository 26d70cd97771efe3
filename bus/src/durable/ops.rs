//! The durable subscriptions' writes (run on the database thread).

use std::ops::Bound;

use crate::db::Write;
use crate::db::codec::{self, DURABLE, msg_times, name_key, seq_key};
use crate::db::names;
use crate::retained::{DurableOptions, StoreError};

/// Counters of a durable subscription.
pub(crate) const LAST: usize = 0;
pub(crate) const ACKED: usize = 1;
pub(crate) const COUNT: usize = 2;
pub(crate) const BYTES: usize = 3;
pub(crate) const DROPPED: usize = 4;
/// The highest sequence whose loss (dropped by a bound, too old when read) a subscriber
/// has been handed as a `Lagged`: below it, a loss is never reported again.
pub(crate) const REPORTED: usize = 5;

/// The most old messages one capture drops by age (the rest go with the next ones).
const AGE_TRIM: usize = 64;

/// What is stored under a durable subscription's name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Registration {
    pub(crate) pattern: String,
    pub(crate) options: DurableOptions,
}

fn counters(w: &Write<'_, '_>, id: u32) -> Result<codec::Counters, StoreError> {
    Ok(codec::decode_counters(
        w.t.counters
            .get(w.txn, &codec::id_key(id))
            .map_err(w.err("read counters"))?,
    ))
}

fn save(w: &mut Write<'_, '_>, id: u32, c: &codec::Counters) -> Result<(), StoreError> {
    w.t.counters
        .put(w.txn, &codec::id_key(id), &codec::encode_counters(c))
        .map_err(w.err("write counters"))
}

/// The first step of an attach: the id of `name`, created with `registration` if it does
/// not exist (an existing one is left as it is: the attach may yet be refused as in use).
/// Returns the id and whether it was created.
pub(crate) fn ensure(
    w: &mut Write<'_, '_>,
    name: &str,
    registration: &Registration,
) -> Result<(u32, bool), StoreError> {
    let existing =
        w.t.names
            .get(w.txn, &name_key(DURABLE, name))
            .map_err(w.err("read names"))?
            .and_then(codec::decode_named)
            .map(|(id, _)| id);
    match existing {
        Some(id) => Ok((id, false)),
        None => {
            let id = names::new_id(w)?;
            names::put(w, DURABLE, name, id, registration)?;
            Ok((id, true))
        }
    }
}

/// What the second step of an attach found and did.
pub(crate) struct Attached {
    /// Whether the pattern or the bounds changed (others must learn of it).
    pub(crate) changed: bool,
    /// The last acknowledged sequence.
    pub(crate) acked: u64,
    /// The highest sequence whose loss was reported (see [`REPORTED`]).
    pub(crate) reported: u64,
    /// The bounds in effect.
    pub(crate) options: DurableOptions,
}

/// The second step of an attach, once the subscriber holds the lock of `id`: sets the
/// pattern of `name` to `pattern` and, if given, its bounds to `options` (`None` keeps
/// those it has). `None` if `name` is no longer `id` (removed since the first step).
pub(crate) fn attach(
    w: &mut Write<'_, '_>,
    name: &str,
    id: u32,
    pattern: &str,
    options: Option<&DurableOptions>,
) -> Result<Option<Attached>, StoreError> {
    let found =
        w.t.names
            .get(w.txn, &name_key(DURABLE, name))
            .map_err(w.err("read names"))?
            .and_then(codec::decode_named)
            .map(|(id, json)| (id, serde_json::from_slice::<Registration>(json).ok()));
    let found = match found {
        Some((current, found)) if current == id => found,
        _ => return Ok(None),
    };
    let registration = Registration {
        pattern: pattern.to_owned(),
        options: match (options, &found) {
            (Some(options), _) => options.clone(),
            (None, Some(found)) => found.options.clone(),
            // Unreadable: written again, with the defaults.
            (None, None) => DurableOptions::default(),
        },
    };
    let changed = found.as_ref() != Some(&registration);
    if changed {
        names::put(w, DURABLE, name, id, &registration)?;
    }
    let c = counters(w, id)?;
    Ok(Some(Attached {
        changed,
        acked: c[ACKED],
        reported: c[REPORTED],
        options: registration.options,
    }))
}

/// Records that the losses up to sequence `through` were reported to a subscriber. A
/// subscription removed meanwhile (its counters gone) is left alone.
pub(crate) fn report(w: &mut Write<'_, '_>, id: u32, through: u64) -> Result<(), StoreError> {
    let found =
        w.t.counters
            .get(w.txn, &codec::id_key(id))
            .map_err(w.err("read counters"))?
            .is_some();
    let mut c = counters(w, id)?;
    if found && through > c[REPORTED] {
        c[REPORTED] = through;
        save(w, id, &c)?;
    }
    Ok(())
}

/// Keeps one message (encoded `record`) for each target `(id, name, bounds)` that still
/// exists; returns `(id, sequence)` for each.
pub(crate) fn capture(
    w: &mut Write<'_, '_>,
    targets: &[(u32, String, DurableOptions)],
    record: &[u8],
    now: u64,
) -> Result<Vec<(u32, u64)>, StoreError> {
    let mut kept = Vec::with_capacity(targets.len());
    for (id, name, options) in targets {
        // Removed (or removed and created again) since this process learnt of it.
        let current =
            w.t.names
                .get(w.txn, &name_key(DURABLE, name))
                .map_err(w.err("read names"))?
                .and_then(codec::decode_named)
                .map(|(current, _)| current);
        if current != Some(*id) {
            continue;
        }
        let mut c = counters(w, *id)?;
        let seq = c[LAST] + 1;
        c[LAST] = seq;
        w.t.msg
            .put(w.txn, &seq_key(*id, seq), record)
            .map_err(w.err("write message"))?;
        c[COUNT] += 1;
        c[BYTES] += record.len() as u64;
        trim(w, *id, options, &mut c, now)?;
        save(w, *id, &c)?;
        kept.push((*id, seq));
    }
    Ok(kept)
}

/// Drops the oldest messages beyond the bounds (drop oldest: the policy).
fn trim(
    w: &mut Write<'_, '_>,
    id: u32,
    options: &DurableOptions,
    c: &mut codec::Counters,
    now: u64,
) -> Result<(), StoreError> {
    let cutoff = now.saturating_sub(options.max_age_ms);
    let mut aged = 0;
    // The newest message is always kept, even when it alone is over `max_bytes`.
    while c[COUNT] > 1 {
        let Some((key, len, at)) =
            w.t.msg
                .prefix_iter(w.txn, &codec::id_key(id))
                .map_err(w.err("read messages"))?
                .next()
                .transpose()
                .map_err(w.err("read messages"))?
                .map(|(k, r)| {
                    (
                        k.to_vec(),
                        r.len() as u64,
                        msg_times(r).map_or(0, |(at, _)| at),
                    )
                })
        else {
            break;
        };
        let too_old = at < cutoff && aged < AGE_TRIM;
        if c[COUNT] <= options.max_messages && c[BYTES] <= options.max_bytes && !too_old {
            break;
        }
        aged += usize::from(too_old);
        w.t.msg
            .delete(w.txn, &key)
            .map_err(w.err("trim messages"))?;
        c[COUNT] -= 1;
        c[BYTES] = c[BYTES].saturating_sub(len);
        c[DROPPED] += 1;
    }
    Ok(())
}

/// Acknowledges everything up to `seq` (at most the last message stored): removed.
/// Returns the acknowledged position.
pub(crate) fn ack(w: &mut Write<'_, '_>, id: u32, seq: u64) -> Result<u64, StoreError> {
    let mut c = counters(w, id)?;
    let seq = seq.min(c[LAST]);
    if seq <= c[ACKED] {
        return Ok(c[ACKED]);
    }
    let from = seq_key(id, 0);
    let to = seq_key(id, seq);
    let range = (Bound::Included(&from[..]), Bound::Included(&to[..]));
    let (mut count, mut bytes) = (0u64, 0u64);
    for item in
        w.t.msg
            .range(w.txn, &range)
            .map_err(w.err("read messages"))?
    {
        let (_, r) = item.map_err(w.err("read messages"))?;
        count += 1;
        bytes += r.len() as u64;
    }
    w.t.msg
        .delete_range(w.txn, &range)
        .map_err(w.err("delete messages"))?;
    c[ACKED] = seq;
    c[COUNT] = c[COUNT].saturating_sub(count);
    c[BYTES] = c[BYTES].saturating_sub(bytes);
    save(w, id, &c)?;
    Ok(seq)
}

/// Acknowledges up to `seq` like [`ack`], removing at most `limit` messages: for a full
/// database, where one transaction has no room to remove many. Returns the acknowledged
/// position and whether it reached `seq` (at most the last message stored).
pub(crate) fn ack_some(
    w: &mut Write<'_, '_>,
    id: u32,
    seq: u64,
    limit: usize,
) -> Result<(u64, bool), StoreError> {
    let mut c = counters(w, id)?;
    let seq = seq.min(c[LAST]);
    if seq <= c[ACKED] {
        return Ok((c[ACKED], true));
    }
    let from = seq_key(id, 0);
    let to = seq_key(id, seq);
    let found: Vec<(Vec<u8>, u64)> =
        w.t.msg
            .range(
                w.txn,
                &(Bound::Included(&from[..]), Bound::Included(&to[..])),
            )
            .map_err(w.err("read messages"))?
            .take(limit)
            .map(|item| item.map(|(k, r)| (k.to_vec(), r.len() as u64)))
            .collect::<Result<_, _>>()
            .map_err(w.err("read messages"))?;
    let done = found.len() < limit;
    let mut position = seq;
    for (k, len) in &found {
        w.t.msg.delete(w.txn, k).map_err(w.err("delete messages"))?;
        c[COUNT] = c[COUNT].saturating_sub(1);
        c[BYTES] = c[BYTES].saturating_sub(*len);
        if !done {
            position = codec::seq_of(k).unwrap_or(position);
        }
    }
    c[ACKED] = position;
    save(w, id, &c)?;
    Ok((position, done))
}

/// Removes the subscription `name` (id `id`) and everything kept for it.
pub(crate) fn remove(w: &mut Write<'_, '_>, name: &str, id: u32) -> Result<(), StoreError> {
    let current =
        w.t.names
            .get(w.txn, &name_key(DURABLE, name))
            .map_err(w.err("read names"))?
            .and_then(codec::decode_named)
            .map(|(current, _)| current);
    if current == Some(id) {
        w.t.names
            .delete(w.txn, &name_key(DURABLE, name))
            .map_err(w.err("delete names"))?;
    }
    w.t.counters
        .delete(w.txn, &codec::id_key(id))
        .map_err(w.err("delete counters"))?;
    let from = seq_key(id, 0);
    let to = seq_key(id, u64::MAX);
    w.t.msg
        .delete_range(
            w.txn,
            &(Bound::Included(&from[..]), Bound::Included(&to[..])),
        )
        .map_err(w.err("delete messages"))?;
    Ok(())
}
