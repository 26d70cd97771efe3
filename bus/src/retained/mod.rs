//! Retained state: values with a time to live, rooms with history, durable subscriptions.
//!
//! # Overview
//!
//! The bus carries events; this module keeps data. Three kinds, one API on two backends:
//!
//! * [`Store`]: named values with a time to live, [`history`](Store::history),
//!   [`watch`](Store::watch) and optional *owned* values that go away with the process
//!   that set them.
//! * [`Room`]: messages kept up to a count and an age; [`join`](Room::join) gives a late
//!   joiner the history, then the live messages, with no gap and no duplicate at the seam.
//! * [`DurableSubscription`]: messages published while a named subscriber is away are kept
//!   (bounded, overflow reported as [`Lagged`](crate::Lagged)) and delivered when it comes
//!   back, until acknowledged.
//!
//! On one machine, [`Bus::store`](crate::Bus::store), [`Bus::room`](crate::Bus::room) and
//! [`Bus::subscribe_durable`](crate::Bus::subscribe_durable) keep the state in the bus
//! directory, in an LMDB database: no broker, every process of the bus sees the same state,
//! and a process killed in the middle of a write leaves it intact. The types do not depend
//! on the backend (it sits behind [`backend`]'s traits), and [`Retained`] is the connection
//! trait, so code can move from one machine to many by changing how it connects, not how it
//! calls. Across machines, `ephemeral-nats` implements [`Retained`] for its `Nats`
//! connection on JetStream (a KV bucket per store, a limits stream per room and per
//! durable subscription); its `retained` module says how, and what differs.
//!
//! | | bus | NATS (`ephemeral-nats`) |
//! |---|---|---|
//! | where | LMDB in the bus directory | JetStream: KV bucket, limits streams |
//! | time to live | millisecond precision | reads honour the exact expiry; the server keeps whole seconds, so it removes a value at its TTL **rounded up to whole seconds, 1 s at the earliest** (its floor): any TTL is accepted, returned until it ran out and never after, and seen `Expired` by watchers at the rounded-up second |
//! | owned values | gone with the peer's lock | gone with the connection's liveness key (refreshed every second, lapses 3 s after the last refresh) |
//! | keys | the naming rule | the naming rule (escaped into KV keys where NATS needs it) |
//! | durable subscriptions | any patterns | patterns of two subscriptions must not overlap (one JetStream stream each) |
//! | `max_values`, `stats().expired` | enforced, counted | not enforced, not counted |
//! | a key set again after its expiry, before the value was removed | watchers see `Expired`, then the set | watchers see only the set |
//!
//! [`StoredHolds`] keeps a signal sink's holds in a store, so a process that starts (or
//! restarts) sees which conditions are held elsewhere.
//!
//! # On the bus: where and how
//!
//! The database lives in `<bus directory>/retained/` (by default under `/dev/shm`, so in
//! memory: it survives every process of the bus, not a reboot). It stays when the last peer
//! leaves the bus — that is what retained means; delete the directory to forget everything.
//! Reads ([`Store::get`]) are lock-free reads of the memory-mapped database (LMDB's
//! multi-version concurrency: a reader never waits for a writer or a lock), done in place;
//! everything that writes or scans runs on a dedicated thread per process (writes from many
//! tasks are committed together, each acknowledged only after its commit), so the async
//! runtime never waits for the database. Under `/dev/shm` a commit touches no disk; in a
//! directory on a disk ([`BUS_DIR_ENV`](crate::BUS_DIR_ENV)), each commit flushes its data
//! (one `fdatasync`, shared by the writes committed together), and an operating-system
//! crash can undo at most the last commit, never leave the database inconsistent.
//! Processes are told of changes by the bus itself
//! (the bus's own broadcasts on topics under `_retained`, in the namespace apart from user
//! topics: no subscription, not even one to `*`, ever sees them, and
//! [`BusStats::subscriptions`](crate::BusStats::subscriptions) does not list their
//! listeners), so watchers and joiners wake on a change, without polling; the database is
//! the source of truth, so a notification lost to a slow subscriber costs nothing but a
//! read.
//!
//! | bound | value |
//! |---|---|
//! | database size | 1 GiB (a memory map; the file grows as used) |
//! | names, keys | the naming rule of [`Name`](crate::Name) (≤ 255 bytes) |
//! | values, messages | [`StoreOptions::max_value_size`], [`RoomOptions::max_message_size`] (1 MiB) |
//! | values per store | [`StoreOptions::max_values`] (100,000) |
//! | revisions per key | [`StoreOptions::history`] (1, at most 64) |
//! | changes a watcher may fall behind | 4,096, and 16 MiB of them (per store: the log's bound) |
//! | messages per room | [`RoomOptions`] (1,000 and one hour) |
//! | kept per durable subscription | [`DurableOptions`] (10,000 messages, 64 MiB, 24 hours) |
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ephemeral_bus::{Bus, BusOptions};
//! use ephemeral_bus::retained::StoreOptions;
//!
//! # let parent = std::env::temp_dir().join(format!("ephemeral-doc-retained-{}", std::process::id()));
//! let bus = Bus::open_with("doc-retained", BusOptions::default().dir(&parent)).await?;
//! let sessions = bus.store("sessions", StoreOptions::default()).await?;
//! sessions.set("user.42", b"token", Duration::from_secs(1800)).await?;
//!
//! // Any other process that opens the bus and the store reads the same value.
//! assert_eq!(sessions.get("user.42").await?.as_deref(), Some(&b"token"[..]));
//! # drop((sessions, bus)); let _ = std::fs::remove_dir_all(&parent);
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub(crate) mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod durable;
mod error;
mod holds;
pub(crate) mod retry;
mod room;
mod store;

pub use backend::Retained;
pub use durable::{DurableMessage, DurableOptions, DurableSubscription};
pub use error::StoreError;
pub use holds::{HOLDER_HEADER, StoredHolds};
pub use room::{Room, RoomJoin, RoomMessage, RoomOptions};
pub use store::{
    Entry, MAX_HISTORY, Removal, Store, StoreEvent, StoreOptions, StoreStats, StoreWatch,
};

/// A max age (room, durable subscription) in whole milliseconds: zero stays zero (refused
/// when the options are used), anything below a millisecond is one.
pub(crate) fn max_age_ms(age: std::time::Duration) -> u64 {
    if age.is_zero() {
        0
    } else {
        u64::try_from(age.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

/// Checks a key against the naming rule.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    ephemeral::validate_name(key).map_err(|source| StoreError::InvalidKey {
        key: key.to_owned(),
        source,
    })
}

/// Checks the name of a store, room or durable subscription against the naming rule.
pub(crate) fn check_name(name: &str) -> Result<ephemeral::Name, StoreError> {
    ephemeral::Name::new(name).map_err(|source| StoreError::InvalidName {
        name: name.to_owned(),
        source,
    })
}
