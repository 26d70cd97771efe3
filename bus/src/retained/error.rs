//! `StoreError`: everything that can go wrong with retained state, whatever the backend.

use std::io;
use std::path::PathBuf;

use ephemeral::NameError;

use crate::BusError;

/// An error from a [`Store`](super::Store), a [`Room`](super::Room) or a
/// [`DurableSubscription`](super::DurableSubscription), on any backend.
///
/// Bad input (a key, a name, a value too large, a zero time to live or max age, an empty
/// pattern) is refused before anything is written, with the same variant on every backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A key is not a valid name (the one naming rule of `ephemeral`, see [`Name`](crate::Name)).
    /// The message speaks of the key (the rule's own message speaks of a signal name).
    #[error("invalid key `{key}`: {}", rule("key", source))]
    InvalidKey {
        /// The key given.
        key: String,
        /// The rule it broke.
        #[source]
        source: NameError,
    },
    /// The name of a store, room or durable subscription is not a valid name.
    #[error("invalid name `{name}`: {}", rule("name", source))]
    InvalidName {
        /// The name given.
        name: String,
        /// The rule it broke.
        #[source]
        source: NameError,
    },
    /// A value or message is larger than its store or room allows: its
    /// [`max_value_size`](super::StoreOptions::max_value_size) or
    /// [`max_message_size`](super::RoomOptions::max_message_size), or on NATS what fits the
    /// server's `max_payload` with the headers the value travels with.
    #[error(
        "value of {len} bytes is larger than the maximum of {max} bytes: store less, or raise max_value_size (max_message_size for a room) in the options it was created with; on NATS the maximum is also the server's max_payload less the headers (at most 134 bytes for a store's value, 48 for a room's message): raise max_payload in the server's configuration for larger values"
    )]
    ValueTooLarge {
        /// The value's size.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A time to live of zero: the value would be expired before anyone could read it.
    #[error("a time to live of zero was given: pass a positive duration, or None for no expiry")]
    ZeroTtl,
    /// A room or durable subscription was given a max age of zero: it would keep nothing.
    #[error(
        "a max age of zero was given: every message would be dropped as soon as it is kept; pass a positive duration (at least a millisecond)"
    )]
    ZeroMaxAge,
    /// A durable subscription's pattern matches no topic, or a store watch's no key: it is
    /// empty, or every alternative is blank or holds a character no name may (see
    /// [`Pattern::is_empty`](ephemeral::Pattern::is_empty)).
    #[error(
        "pattern `{pattern}` matches no name (it is empty, or every alternative is blank or holds whitespace or a control character): give a pattern such as `orders.*`"
    )]
    EmptyPattern {
        /// The pattern given.
        pattern: String,
    },
    /// The store holds its maximum number of values and the key is a new one.
    #[error(
        "store `{store}` holds its maximum of {max} values: delete some, let them expire, or create the store with a larger max_values"
    )]
    Full {
        /// The store.
        store: String,
        /// Its maximum ([`StoreOptions::max_values`](super::StoreOptions::max_values)).
        max: u64,
    },
    /// Another subscriber is attached to this durable subscription now.
    #[error(
        "durable subscription `{name}` is in use by another subscriber: one subscriber at a time; stop the other or pick another name"
    )]
    InUse {
        /// The durable subscription's name.
        name: String,
    },
    /// The database has no room left.
    #[error(
        "the retained-state database at {path} is full ({max} bytes): clear or delete values, or let them expire; clear rooms (Room::clear) whose bounds hold more than the database; acknowledge or remove what durable subscriptions keep"
    )]
    DatabaseFull {
        /// The database directory.
        path: PathBuf,
        /// Its size limit, in bytes.
        max: usize,
    },
    /// The database was written by an incompatible version of this library.
    #[error(
        "the retained-state database at {path} has format {found}, this library reads format {expected}: remove the directory to start afresh"
    )]
    Format {
        /// The database directory.
        path: PathBuf,
        /// The format found.
        found: u32,
        /// The format this library reads.
        expected: u32,
    },
    /// The database failed.
    #[error("retained-state database error on {path} ({op}): {message}")]
    Database {
        /// The database directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The database's own message.
        message: String,
    },
    /// An operating-system error on a file of the database.
    #[error("retained-state i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Another backend failed (for backends outside this crate, such as NATS).
    #[error("{backend} error ({op}): {message}")]
    Backend {
        /// The backend (`nats`, say).
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
    /// Another backend has no storage left for the write (NATS: the server's JetStream is
    /// at its `max_file_store` or `max_memory_store`, or the account at its storage limit).
    /// The bus's own database says [`DatabaseFull`](Self::DatabaseFull) instead. A room does
    /// not trim itself to make room here: its bounds are kept by the server, which already
    /// applies them, so what takes the room is other state.
    #[error(
        "{backend} has no storage left ({op}): {message}; free some (Room::clear, delete values or let them expire, acknowledge what durable subscriptions keep) or raise the server's limits (JetStream's max_file_store / max_memory_store, or the account's)"
    )]
    StorageFull {
        /// The backend (`nats`, say).
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
    /// The handle's backend has shut down (its runtime or database thread is gone).
    #[error("the retained-state backend has shut down: open the store, room or subscription again")]
    Closed,
}

/// The naming rule `source` broke, said of `what` (a key, a name): the rule's own message
/// speaks of a signal name, which a key or a store's name is not.
fn rule(what: &str, source: &NameError) -> String {
    match source {
        NameError::Empty => format!(
            "the {what} is empty: give one such as `user.42` (the naming rule of signal names applies)"
        ),
        other => {
            let reason = other.to_string();
            match reason.strip_prefix("signal name ") {
                Some(rest) => format!("the {what} {rest}"),
                None => reason,
            }
        }
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
