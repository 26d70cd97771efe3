//! What a backend implements: the bus here, NATS in `ephemeral-nats`.
//!
//! Users never call these traits. [`Store`], [`Room`] and
//! [`DurableSubscription`] are one concrete type each, whatever
//! the backend: they check every input (keys, names, sizes, times to live) and then call the
//! backend through these traits, so both backends refuse the same inputs with the same
//! errors, and code moves from one machine to many by changing how it connects, not how it
//! calls. The shared test bodies (`conformance`, behind the feature of that name) hold every
//! backend to the same observable behaviour.
//!
//! Every input a backend receives has been validated: keys (passed as `&str`) and names
//! follow the naming rule, values fit the store's `max_value_size` or the room's
//! `max_message_size`, a time to live is positive. Opening a room and attaching to a durable
//! subscription are the backend's own methods (of [`Retained`]): they start with
//! [`check_room`] and [`check_durable`] (a positive max age, a pattern that can match).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use ephemeral::{Lagged, Name, Pattern};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::{
    DurableMessage, DurableOptions, DurableSubscription, Entry, Room, RoomMessage, RoomOptions,
    Store, StoreError, StoreEvent, StoreOptions, StoreStats,
};

/// Checks what opening a room is given (its name, its options); a backend's `room` calls
/// it before anything else, so every backend refuses the same input with the same error.
///
/// # Errors
///
/// [`StoreError::InvalidName`], [`StoreError::ZeroMaxAge`].
pub fn check_room(name: &str, options: &RoomOptions) -> Result<Name, StoreError> {
    let name = super::check_name(name)?;
    if options.max_age_ms == 0 {
        return Err(StoreError::ZeroMaxAge);
    }
    Ok(name)
}

/// Checks what attaching to a durable subscription is given (its pattern, its name, its
/// options); a backend's `subscribe_durable_with` calls it before anything else.
///
/// # Errors
///
/// [`StoreError::InvalidName`], [`StoreError::EmptyPattern`], [`StoreError::ZeroMaxAge`].
pub fn check_durable(
    pattern: &str,
    name: &str,
    options: &DurableOptions,
) -> Result<(Name, Pattern), StoreError> {
    let name = super::check_name(name)?;
    let compiled = Pattern::new(pattern);
    if compiled.is_empty() {
        return Err(StoreError::EmptyPattern {
            pattern: pattern.to_owned(),
        });
    }
    if options.max_age_ms == 0 {
        return Err(StoreError::ZeroMaxAge);
    }
    Ok((name, compiled))
}

/// A store's backend; see [`Store`] for the semantics each method must keep.
pub trait StoreBackend: fmt::Debug + Send + Sync + 'static {
    /// The store's name.
    fn name(&self) -> &Name;

    /// The options in effect (those the store was created with).
    fn options(&self) -> &StoreOptions;

    /// Sets `key`; `owned` ties the value to the life of this connection. Returns the new
    /// revision.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
        owned: bool,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The live value of `key`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;

    /// The live value of `key` if the backend can tell without waiting (a read of local
    /// memory), else `None` and [`get`](Self::get) is called. The default is `None`.
    fn get_now(&self, key: &str) -> Option<Result<Option<Vec<u8>>, StoreError>> {
        let _ = key;
        None
    }

    /// The live entry of `key`.
    fn entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, StoreError>>;

    /// Deletes `key`; whether a live value was there.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes every value; how many live values were removed.
    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Every live entry, sorted by key.
    fn entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, StoreError>>;

    /// The kept revisions of `key`, oldest first, all live.
    fn history<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<Entry>, StoreError>>;

    /// The store's counters.
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, StoreError>>;

    /// Changes to keys matching `pattern` from now on.
    fn watch(
        &self,
        pattern: Pattern,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<StoreEvent, Lagged>>, StoreError>>;

    /// Removes the owned values of owners that are gone; how many.
    fn reclaim(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// A room's backend; see [`Room`].
pub trait RoomBackend: fmt::Debug + Send + Sync + 'static {
    /// The room's name.
    fn name(&self) -> &Name;

    /// The options in effect (those the room was created with).
    fn options(&self) -> &RoomOptions;

    /// Appends a message; returns its sequence number.
    fn send<'a>(&'a self, payload: &'a [u8]) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Removes every message the room keeps; how many. Sequence numbers carry on.
    fn clear(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// The retained messages, then live ones, with no gap and no duplicate at the seam.
    fn join(
        &self,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<RoomMessage, Lagged>>, StoreError>>;
}

/// An attached durable subscription's backend; see
/// [`DurableSubscription`].
pub trait DurableBackend:
    futures_core::Stream<Item = Result<DurableMessage, Lagged>> + fmt::Debug + Send + Unpin + 'static
{
    /// The subscription's name.
    fn name(&self) -> &Name;

    /// The pattern it keeps messages for.
    fn pattern(&self) -> &Pattern;

    /// The options in effect.
    fn options(&self) -> &DurableOptions;

    /// Messages skipped because their own time to live ran out while kept.
    fn expired(&self) -> u64;

    /// Acknowledges every message up to and including `sequence`: they are removed. The
    /// future must not borrow the subscription (it is `Send` while the stream is not `Sync`).
    fn ack(&self, sequence: u64) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Removes the subscription and every message kept for it.
    fn remove(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A connection that offers retained state: [`Bus`](crate::Bus) here, `Nats` in
/// `ephemeral-nats`. Write code generic over it to run unchanged on either.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral_bus::Bus;
/// use ephemeral_bus::retained::{Retained, StoreError, StoreOptions};
///
/// async fn remember<R: Retained>(conn: &R) -> Result<(), StoreError> {
///     let cache = conn.store("doc.generic", StoreOptions::default()).await?;
///     cache.set("greeting", b"hello", None).await?;
///     Ok(())
/// }
///
/// # let parent = std::env::temp_dir().join(format!("ephemeral-doc-generic-{}", std::process::id()));
/// # let bus = Bus::open_with("doc-generic", ephemeral_bus::BusOptions::default().dir(&parent)).await?;
/// remember(&bus).await?;
/// # drop(bus); let _ = std::fs::remove_dir_all(&parent);
/// # Ok(())
/// # }
/// ```
pub trait Retained: Send + Sync {
    /// Opens (creating if needed) the store `name`.
    fn store(
        &self,
        name: &str,
        options: StoreOptions,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send;

    /// Opens (creating if needed) the room `name`.
    fn room(
        &self,
        name: &str,
        options: RoomOptions,
    ) -> impl Future<Output = Result<Room, StoreError>> + Send;

    /// Attaches to (creating if needed with the default bounds) the durable subscription
    /// `name` on `pattern`, keeping the bounds an existing one has.
    fn subscribe_durable(
        &self,
        pattern: &str,
        name: &str,
    ) -> impl Future<Output = Result<DurableSubscription, StoreError>> + Send;

    /// Attaches to (creating if needed) the durable subscription `name` on `pattern`,
    /// setting its bounds to `options`.
    fn subscribe_durable_with(
        &self,
        pattern: &str,
        name: &str,
        options: DurableOptions,
    ) -> impl Future<Output = Result<DurableSubscription, StoreError>> + Send;
}
