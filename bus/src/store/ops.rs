//! The store's writes (run on the database thread) and its bounded reads.
//!
//! Invariants, kept by every write here:
//! * `kv` holds one record per key; `exp` has an entry for it exactly when it expires, and
//!   `own` exactly when it is owned, both naming its revision.
//! * Every change takes the next revision of its store and logs one `log` entry under it
//!   (a set's entry carries its value, so a watcher behind gets every value it has not
//!   missed). The log of a store keeps at most the last [`LOG_KEEP`] revisions (trimmed
//!   [`LOG_TRIM`] at a time, so one write in 64 pays for the trim) and at most
//!   [`LOG_KEEP_BYTES`] of entries, the newest always kept: so at most 16 MiB plus one value
//!   per store, however big and frequent the sets, and a delete frees its value's space.
//! * `counters[VALUES]` and `counters[BYTES]` count the records of `kv` (expired ones too,
//!   until swept); `counters[LOG_BYTES]` the bytes of the store's `log` entries.

use std::collections::HashMap;
use std::ops::Bound;

use heed::RoTxn;

use crate::db::codec::{
    self, Cause, Counters, Event, EventKind, KvRecord, decode_kv, exp_key, hist_key, hist_prefix,
    kv_key, own_key, seq_key, seq_of, split_exp_key, split_own_key,
};
use crate::db::{self, Db, Tables, Write};
use crate::retained::{StoreError, StoreOptions, clock};

/// Revisions of the log kept per store: how far behind a watcher may fall before it is
/// told `Lagged`.
pub(crate) const LOG_KEEP: u64 = 4096;

/// Bytes of log entries kept per store (the newest entry is kept even beyond): with big
/// values a watcher may fall this far behind before it is told `Lagged`. It bounds what the
/// log holds of the values, which would otherwise fill the database (4,096 revisions of a
/// 1 MiB value are 4 GiB) where a delete could not free them.
pub(crate) const LOG_KEEP_BYTES: u64 = 16 * 1024 * 1024;

/// How many old log entries go at once.
const LOG_TRIM: u64 = 64;

/// Counters of a store.
pub(crate) const REV: usize = 0;
pub(crate) const VALUES: usize = 1;
pub(crate) const BYTES: usize = 2;
pub(crate) const SETS: usize = 3;
pub(crate) const DELETES: usize = 4;
pub(crate) const EXPIRED: usize = 5;
pub(crate) const RECLAIMED: usize = 6;
pub(crate) const LOG_BYTES: usize = 7;

/// The latest revision a write produced in a store: what to ring.
pub(crate) type Changed = Vec<(u32, u64)>;

fn corrupt(w: &Write<'_, '_>, what: &'static str) -> StoreError {
    StoreError::Database {
        path: w.path.to_path_buf(),
        op: what,
        message: "a record could not be decoded: the database is damaged or of another version; remove the directory".into(),
    }
}

/// The counters of several stores touched by one write, written back at the end.
struct Touched(HashMap<u32, Counters>);

impl Touched {
    fn new() -> Self {
        Self(HashMap::new())
    }

    fn get(&mut self, w: &Write<'_, '_>, id: u32) -> Result<&mut Counters, StoreError> {
        match self.0.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let c = codec::decode_counters(
                    w.t.counters
                        .get(w.txn, &codec::id_key(id))
                        .map_err(w.err("read counters"))?,
                );
                Ok(e.insert(c))
            }
        }
    }

    fn save(self, w: &mut Write<'_, '_>) -> Result<Changed, StoreError> {
        let mut changed = Vec::with_capacity(self.0.len());
        for (id, c) in self.0 {
            w.t.counters
                .put(w.txn, &codec::id_key(id), &codec::encode_counters(&c))
                .map_err(w.err("write counters"))?;
            changed.push((id, c[REV]));
        }
        Ok(changed)
    }
}

/// Appends `event` to the log of store `id` as the next revision; returns it.
fn log(
    w: &mut Write<'_, '_>,
    c: &mut Counters,
    id: u32,
    event: &Event<'_>,
) -> Result<u64, StoreError> {
    let revision = c[REV] + 1;
    c[REV] = revision;
    let entry = event.encode();
    w.t.log
        .put(w.txn, &seq_key(id, revision), &entry)
        .map_err(w.err("write log"))?;
    c[LOG_BYTES] += entry.len() as u64;
    let by_count = if revision > LOG_KEEP && revision.is_multiple_of(LOG_TRIM) {
        revision - LOG_KEEP
    } else {
        0
    };
    if by_count > 0 || c[LOG_BYTES] > LOG_KEEP_BYTES {
        trim_log(w, c, id, revision, by_count)?;
    }
    Ok(revision)
}

/// Drops the oldest log entries of store `id`: every revision up to `by_count`, then more
/// while the log is over [`LOG_KEEP_BYTES`], never the newest (`revision`).
fn trim_log(
    w: &mut Write<'_, '_>,
    c: &mut Counters,
    id: u32,
    revision: u64,
    by_count: u64,
) -> Result<(), StoreError> {
    let from = seq_key(id, 0);
    let newest = seq_key(id, revision);
    let mut bytes = c[LOG_BYTES];
    let mut last = None;
    for item in
        w.t.log
            .range(
                w.txn,
                &(Bound::Included(&from[..]), Bound::Excluded(&newest[..])),
            )
            .map_err(w.err("read log"))?
    {
        let (k, r) = item.map_err(w.err("read log"))?;
        let Some(rev) = seq_of(k) else { break };
        if rev > by_count && bytes <= LOG_KEEP_BYTES {
            break;
        }
        // Saturating: a log written before its bytes were counted is counted short.
        bytes = bytes.saturating_sub(r.len() as u64);
        last = Some(rev);
    }
    if let Some(last) = last {
        let to = seq_key(id, last);
        w.t.log
            .delete_range(
                w.txn,
                &(Bound::Included(&from[..]), Bound::Included(&to[..])),
            )
            .map_err(w.err("trim log"))?;
    }
    c[LOG_BYTES] = bytes;
    Ok(())
}

/// What a set needs to know of the record it replaces.
#[derive(Clone, Copy)]
struct Old {
    expires_ms: u64,
    owner: u64,
    len: usize,
}

fn old_record(w: &Write<'_, '_>, kvk: &[u8]) -> Result<Option<Old>, StoreError> {
    match w.t.kv.get(w.txn, kvk).map_err(w.err("read"))? {
        None => Ok(None),
        Some(r) => {
            let rec = decode_kv(r).ok_or_else(|| corrupt(w, "read"))?;
            Ok(Some(Old {
                expires_ms: rec.expires_ms,
                owner: rec.owner,
                len: rec.value.len(),
            }))
        }
    }
}

/// A set: see `Store::set`. Returns the new revision.
#[allow(clippy::too_many_arguments)]
pub(crate) fn set(
    w: &mut Write<'_, '_>,
    id: u32,
    store: &str,
    options: &StoreOptions,
    key: &str,
    value: &[u8],
    expires_ms: u64,
    owner: u64,
    now: u64,
) -> Result<u64, StoreError> {
    let kvk = kv_key(id, key);
    let mut old = old_record(w, &kvk)?;
    let mut touched = Touched::new();
    if let Some(expired) = old.filter(|o| clock::expired(o.expires_ms, now)) {
        // An expired value not swept yet: its expiry is logged and counted first, as a
        // sweep would have, so watchers hear `Expired` and `stats().expired` counts it
        // however soon the key is set again; the set is then a new key's.
        remove(
            w,
            &mut touched,
            id,
            key,
            expired,
            EventKind::Expired,
            Cause::None,
            now,
        )?;
        old = None;
    }
    if old.is_none() && touched.get(w, id)?[VALUES] >= options.max_values {
        // Full: expired values still count until swept, so sweep this store's first.
        expire_due(w, &mut touched, now, Some(id), usize::MAX)?;
        old = old_record(w, &kvk)?;
        if old.is_none() && touched.get(w, id)?[VALUES] >= options.max_values {
            return Err(StoreError::Full {
                store: store.to_owned(),
                max: options.max_values,
            });
        }
    }
    let c = touched.get(w, id)?;
    let revision = log(
        w,
        c,
        id,
        &Event {
            kind: EventKind::Set,
            cause: Cause::None,
            at_ms: now,
            expires_ms,
            owner,
            key,
            value,
        },
    )?;
    let record = KvRecord {
        revision,
        set_at_ms: now,
        expires_ms,
        owner,
        value,
    }
    .encode();
    w.t.kv.put(w.txn, &kvk, &record).map_err(w.err("write"))?;
    if let Some(old) = old {
        if old.expires_ms != 0 {
            w.t.exp
                .delete(w.txn, &exp_key(old.expires_ms, id, key))
                .map_err(w.err("write expiry"))?;
        }
        if old.owner != 0 {
            w.t.own
                .delete(w.txn, &own_key(old.owner, id, key))
                .map_err(w.err("write owner"))?;
        }
    }
    if expires_ms != 0 {
        w.t.exp
            .put(
                w.txn,
                &exp_key(expires_ms, id, key),
                &revision.to_be_bytes(),
            )
            .map_err(w.err("write expiry"))?;
    }
    if owner != 0 {
        w.t.own
            .put(w.txn, &own_key(owner, id, key), &revision.to_be_bytes())
            .map_err(w.err("write owner"))?;
    }
    if options.history > 1 {
        // Room for the new revision among the kept ones. A value with a time to live starts
        // the key's history over: its expiry ends the key, with no older revision left to
        // outlive it (as on NATS).
        let keep = if expires_ms == 0 {
            usize::from(options.history) - 1
        } else {
            0
        };
        trim_history(w, id, key, keep)?;
        w.t.hist
            .put(w.txn, &hist_key(id, key, revision), &record)
            .map_err(w.err("write history"))?;
    }
    let c = touched.get(w, id)?;
    if old.is_none() {
        c[VALUES] += 1;
    }
    c[BYTES] = (c[BYTES] + value.len() as u64).saturating_sub(old.map_or(0, |o| o.len as u64));
    c[SETS] += 1;
    touched.save(w)?;
    Ok(revision)
}

fn trim_history(w: &mut Write<'_, '_>, id: u32, key: &str, keep: usize) -> Result<(), StoreError> {
    let prefix = hist_prefix(id, key);
    let keys: Vec<Vec<u8>> =
        w.t.hist
            .prefix_iter(w.txn, &prefix)
            .map_err(w.err("read history"))?
            .map(|item| item.map(|(k, _)| k.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(w.err("read history"))?;
    if keys.len() > keep {
        for k in &keys[..keys.len() - keep] {
            w.t.hist.delete(w.txn, k).map_err(w.err("trim history"))?;
        }
    }
    Ok(())
}

/// The bounds of every key starting with `prefix` (which ends in a `0` byte).
fn prefix_range(prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (prefix.to_vec(), end)
}

/// Removes the record of `key` (given, decoded), logging `kind`/`cause`; returns the
/// revision of the removal.
#[allow(clippy::too_many_arguments)]
fn remove(
    w: &mut Write<'_, '_>,
    touched: &mut Touched,
    id: u32,
    key: &str,
    old: Old,
    kind: EventKind,
    cause: Cause,
    now: u64,
) -> Result<u64, StoreError> {
    w.t.kv
        .delete(w.txn, &kv_key(id, key))
        .map_err(w.err("delete"))?;
    if old.expires_ms != 0 {
        w.t.exp
            .delete(w.txn, &exp_key(old.expires_ms, id, key))
            .map_err(w.err("delete expiry"))?;
    }
    if old.owner != 0 {
        w.t.own
            .delete(w.txn, &own_key(old.owner, id, key))
            .map_err(w.err("delete owner"))?;
    }
    let (start, end) = prefix_range(&hist_prefix(id, key));
    w.t.hist
        .delete_range(
            w.txn,
            &(Bound::Included(&start[..]), Bound::Excluded(&end[..])),
        )
        .map_err(w.err("delete history"))?;
    let c = touched.get(w, id)?;
    let revision = log(
        w,
        c,
        id,
        &Event {
            kind,
            cause,
            at_ms: now,
            expires_ms: 0,
            owner: old.owner,
            key,
            value: &[],
        },
    )?;
    let c = touched.get(w, id)?;
    c[VALUES] = c[VALUES].saturating_sub(1);
    c[BYTES] = c[BYTES].saturating_sub(old.len as u64);
    match (kind, cause) {
        (EventKind::Expired, _) => c[EXPIRED] += 1,
        (_, Cause::OwnerGone) => c[RECLAIMED] += 1,
        _ => c[DELETES] += 1,
    }
    Ok(revision)
}

/// A delete: whether a live value was there. An expired one is removed as expired.
pub(crate) fn delete(
    w: &mut Write<'_, '_>,
    id: u32,
    key: &str,
    now: u64,
) -> Result<(bool, Changed), StoreError> {
    let Some(old) = old_record(w, &kv_key(id, key))? else {
        return Ok((false, Vec::new()));
    };
    let mut touched = Touched::new();
    let live = !clock::expired(old.expires_ms, now);
    let kind = if live {
        EventKind::Deleted
    } else {
        EventKind::Expired
    };
    remove(w, &mut touched, id, key, old, kind, Cause::Deleted, now)?;
    Ok((live, touched.save(w)?))
}

/// A clear of at most `limit` values (`usize::MAX`: all): how many live values were
/// removed, and whether values are left (the limit was reached).
pub(crate) fn clear(
    w: &mut Write<'_, '_>,
    id: u32,
    now: u64,
    limit: usize,
) -> Result<(u64, bool, Changed), StoreError> {
    let all: Vec<(String, Old)> =
        w.t.kv
            .prefix_iter(w.txn, &codec::id_key(id))
            .map_err(w.err("read"))?
            .take(limit)
            .map(|item| {
                let (k, r) = item.map_err(w.err("read"))?;
                let key = std::str::from_utf8(k.get(4..).unwrap_or_default())
                    .map_err(|_| corrupt(w, "read"))?;
                let rec = decode_kv(r).ok_or_else(|| corrupt(w, "read"))?;
                Ok((
                    key.to_owned(),
                    Old {
                        expires_ms: rec.expires_ms,
                        owner: rec.owner,
                        len: rec.value.len(),
                    },
                ))
            })
            .collect::<Result<_, StoreError>>()?;
    let more = all.len() == limit;
    let mut touched = Touched::new();
    let mut removed = 0;
    for (key, old) in all {
        if clock::expired(old.expires_ms, now) {
            remove(
                w,
                &mut touched,
                id,
                &key,
                old,
                EventKind::Expired,
                Cause::None,
                now,
            )?;
        } else {
            remove(
                w,
                &mut touched,
                id,
                &key,
                old,
                EventKind::Deleted,
                Cause::Cleared,
                now,
            )?;
            removed += 1;
        }
    }
    Ok((removed, more, touched.save(w)?))
}

/// Removes values whose expiry is due (of store `only`, or all), at most `limit`.
fn expire_due(
    w: &mut Write<'_, '_>,
    touched: &mut Touched,
    now: u64,
    only: Option<u32>,
    limit: usize,
) -> Result<(), StoreError> {
    let upto = (now + 1).to_be_bytes();
    let due: Vec<(u64, u32, String)> =
        w.t.exp
            .range(w.txn, &(Bound::Unbounded, Bound::Excluded(&upto[..])))
            .map_err(w.err("read expiries"))?
            .filter_map(|item| {
                let (k, _) = item.ok()?;
                let (expires, id, key) = split_exp_key(k)?;
                Some((expires, id, key.to_owned()))
            })
            .filter(|(_, id, _)| only.is_none_or(|o| o == *id))
            .take(limit)
            .collect();
    for (expires, id, key) in due {
        match old_record(w, &kv_key(id, &key))? {
            Some(old) if old.expires_ms == expires => {
                remove(
                    w,
                    touched,
                    id,
                    &key,
                    old,
                    EventKind::Expired,
                    Cause::None,
                    now,
                )?;
            }
            // A stale index entry (cannot happen while the invariants hold): drop it.
            _ => {
                w.t.exp
                    .delete(w.txn, &exp_key(expires, id, &key))
                    .map_err(w.err("delete expiry"))?;
            }
        }
    }
    Ok(())
}

/// The sweep: removes what is due, logging `Expired`.
pub(crate) fn sweep(w: &mut Write<'_, '_>, now: u64, limit: usize) -> Result<Changed, StoreError> {
    let mut touched = Touched::new();
    expire_due(w, &mut touched, now, None, limit)?;
    touched.save(w)
}

/// Removes the owned values of `owner` (known dead), logging `Deleted(OwnerGone)`.
pub(crate) fn reclaim(
    w: &mut Write<'_, '_>,
    owner: u64,
    now: u64,
) -> Result<(u64, Changed), StoreError> {
    let owned: Vec<(u32, String)> =
        w.t.own
            .prefix_iter(w.txn, &owner.to_be_bytes())
            .map_err(w.err("read owners"))?
            .filter_map(|item| {
                let (k, _) = item.ok()?;
                let (_, id, key) = split_own_key(k)?;
                Some((id, key.to_owned()))
            })
            .collect();
    let mut touched = Touched::new();
    let mut removed = 0;
    for (id, key) in owned {
        match old_record(w, &kv_key(id, &key))? {
            Some(old) if old.owner == owner => {
                remove(
                    w,
                    &mut touched,
                    id,
                    &key,
                    old,
                    EventKind::Deleted,
                    Cause::OwnerGone,
                    now,
                )?;
                removed += 1;
            }
            _ => {
                w.t.own
                    .delete(w.txn, &own_key(owner, id, &key))
                    .map_err(w.err("delete owner"))?;
            }
        }
    }
    Ok((removed, touched.save(w)?))
}

/// The owners of owned values, other than `me`.
pub(crate) fn owners(
    txn: &RoTxn<'_>,
    t: &Tables,
    db: &Db,
    me: u64,
) -> Result<Vec<u64>, StoreError> {
    let mut owners = Vec::new();
    let mut from = 0u64;
    // One seek per owner: the first key at or after `from`.
    loop {
        let start = from.to_be_bytes();
        let next = t
            .own
            .range(txn, &(Bound::Included(&start[..]), Bound::Unbounded))
            .map_err(db.err("read owners"))?
            .next()
            .transpose()
            .map_err(db.err("read owners"))?
            .and_then(|(k, _)| split_own_key(k).map(|(owner, _, _)| owner));
        match next {
            Some(owner) => {
                if owner != me {
                    owners.push(owner);
                }
                match owner.checked_add(1) {
                    Some(n) => from = n,
                    None => break,
                }
            }
            None => break,
        }
    }
    Ok(owners)
}

/// The earliest expiry in the database (every store), if any.
pub(crate) fn earliest_expiry(db: &Db) -> Result<Option<u64>, StoreError> {
    db.read(|txn, t| {
        Ok(t.exp
            .first(txn)
            .map_err(db.err("read expiries"))?
            .and_then(|(k, _)| split_exp_key(k).map(|(expires, _, _)| expires)))
    })
}

/// Rings the notice of every store in `changed`.
pub(crate) async fn ring_all(db: &Db, changed: &Changed) {
    if changed.is_empty() {
        return;
    }
    if let Some(bus) = db.bus() {
        for (id, revision) in changed {
            db::ring(&bus, &db::kv_topic(*id), *revision).await;
        }
    }
}
