//! Stores, rooms and durable subscriptions by name: their ids and options.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{decode_named, encode_named, name_key};
use super::{Db, Write};
use crate::retained::StoreError;

const NEXT_ID: &[u8] = b"\0next_id";

fn options_error(db_path: &std::path::Path, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Database {
        path: db_path.to_path_buf(),
        op: "read options",
        message: format!(
            "stored options could not be read ({e}): the database is of another version; remove the directory"
        ),
    }
}

/// The id and options of a `names` record.
fn decode<O: DeserializeOwned>(path: &std::path::Path, r: &[u8]) -> Result<(u32, O), StoreError> {
    let (id, json) = decode_named(r).ok_or_else(|| options_error(path, &"record too short"))?;
    let options = serde_json::from_slice(json).map_err(|e| options_error(path, &e))?;
    Ok((id, options))
}

/// The id and options of `name` of `kind`, if it exists.
pub(crate) fn find<O: DeserializeOwned>(
    db: &Db,
    kind: u8,
    name: &str,
) -> Result<Option<(u32, O)>, StoreError> {
    db.read(|txn, t| {
        let Some(r) = t
            .names
            .get(txn, &name_key(kind, name))
            .map_err(db.err("read names"))?
        else {
            return Ok(None);
        };
        decode(&db.path, r).map(Some)
    })
}

/// Allocates a new id.
pub(crate) fn new_id(w: &mut Write<'_, '_>) -> Result<u32, StoreError> {
    let last =
        w.t.names
            .get(w.txn, NEXT_ID)
            .map_err(w.err("read names"))?
            .and_then(|r| r.get(..4)?.try_into().ok())
            .map_or(0, u32::from_le_bytes);
    let id = last.checked_add(1).ok_or_else(|| StoreError::Database {
        path: w.path.to_path_buf(),
        op: "new id",
        message: "every id is used: remove the directory to start afresh".into(),
    })?;
    w.t.names
        .put(w.txn, NEXT_ID, &id.to_le_bytes())
        .map_err(w.err("write names"))?;
    Ok(id)
}

/// Writes `name` of `kind` with `id` and `options`.
pub(crate) fn put<O: Serialize>(
    w: &mut Write<'_, '_>,
    kind: u8,
    name: &str,
    id: u32,
    options: &O,
) -> Result<(), StoreError> {
    let json = serde_json::to_vec(options).map_err(|e| StoreError::Database {
        path: w.path.to_path_buf(),
        op: "write options",
        message: e.to_string(),
    })?;
    w.t.names
        .put(w.txn, &name_key(kind, name), &encode_named(id, &json))
        .map_err(w.err("write names"))
}

/// The id and options of `name` of `kind`, created with `options` if it does not exist
/// (an existing one keeps its own options).
pub(crate) async fn open<O>(
    db: &Arc<Db>,
    kind: u8,
    name: &str,
    options: &O,
) -> Result<(u32, O), StoreError>
where
    O: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    if let Some(found) = find(db, kind, name)? {
        return Ok(found);
    }
    let name = name.to_owned();
    let options = options.clone();
    db.write(move |w| {
        if let Some(r) =
            w.t.names
                .get(w.txn, &name_key(kind, &name))
                .map_err(w.err("read names"))?
        {
            // Created by another process since our look.
            return decode(w.path, r);
        }
        let id = new_id(w)?;
        put(w, kind, &name, id, &options)?;
        Ok((id, options.clone()))
    })
    .await
}
