//! Bounded, observable, self-cleaning async work coordination, steered by short-lived signals.
//!
//! # Overview
//!
//! `ephemeral` has two halves that work together:
//!
//! * The **signal sink** ([`SignalSink`]) is a shared, bounded, expiring window of short-lived
//!   named signals such as `error.db.timeout`. Anyone raises them; anyone asks
//!   [`has_signal("error.*")`](SignalSink::has_signal), counts them, watches them or subscribes
//!   to a stream of them. Capacity and age are enforced exactly, queries never scan the window,
//!   and every internal table is bounded.
//! * **Coordinators** take items, run an async body on each with bounded concurrency, and keep
//!   every operation in a bounded window that evicts by count and age. They consult the sink to
//!   cancel, defer, resume or drain work.
//!
//! # Getting started
//!
//! ```
//! use ephemeral::SignalSink;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SignalSink::default();
//! sink.raise("error.db.timeout")?;
//!
//! if sink.has_signal("error.*") {
//!     println!("{} errors in the last minute", sink.count("error.*"));
//! }
//! # assert_eq!(sink.count("error.*"), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Coordinators
//!
//! | you need | use |
//! |---|---|
//! | a body run on each item, bounded, tracked, steered by signals | [`EphemeralWorkCoordinator`] |
//! | per-key order without head-of-line blocking | [`EphemeralKeyedWorkCoordinator`] |
//! | results looked up or awaited by operation id | [`EphemeralResultCoordinator`] |
//! | named lanes, highest first | [`PriorityWorkCoordinator`] |
//! | one collection or stream, bounded, with a summary | [`process_all`], [`process_stream`] |
//!
//! All four are thin wrappers over one engine: intake bounded by `max_pending`, at most
//! `max_concurrency` bodies at once, every operation kept in a window bounded by count and age,
//! and the `*_on` rules plus any number of [`Admission`] hooks deciding whether an item starts,
//! waits or is cancelled. Bodies get an [`OperationContext`] to raise and retract signals;
//! code deep inside a body (middleware, a client wrapper) reads the running operation's id with
//! [`current_operation`].
//!
//! ```
//! use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SignalSink::default();
//! let coordinator = EphemeralWorkCoordinator::new(
//!     |n: u32, ctx: OperationContext| async move {
//!         if n == 3 {
//!             ctx.signal("error.three").map_err(|e| e.to_string())?;
//!             return Err("three is unlucky".to_string());
//!         }
//!         Ok(())
//!     },
//!     EphemeralOptions::default().max_concurrency(4).signals(sink.clone()),
//! )?;
//! for n in 0..5 {
//!     coordinator.enqueue(n).await?;
//! }
//! coordinator.drain().await?;
//! assert!(sink.has_signal("error.*"));
//! assert_eq!(coordinator.stats().failed, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Channels
//!
//! [`Channel<T>`](Channel) broadcasts typed values to every subscriber, in order per
//! publisher, with the same buffer, overflow and lag model as sink subscriptions.
//!
//! # Buffers, lag and expiry
//!
//! Every receiver — a sink [`Subscription`], a channel [`Subscriber`] — reads from one
//! [`lag::Ring`]: a [`Buffer`] bound, an [`Overflow`] policy (`Wait` or `DropOldest`; sink
//! subscriptions are always `DropOldest`, so `raise` never waits), `Err(Lagged(n))` before the
//! next item after a loss, and expiry honoured at delivery: an item whose time to live ran out
//! while it waited is skipped and counted as expired, apart from lag. The ring is public so
//! that other transports give their receivers the same behaviour.
//!
//! # Which handles keep a sink alive
//!
//! Handles that own something in the sink keep it alive: every [`SignalSink`] clone, and every
//! [`Hold`] (the held condition is part of the sink's contents). Handles that receive from it
//! never do: [`Subscription`], [`Watch`], [`Listener`] (forwarding included) and [`Handler`]
//! hold it weakly. When the last owning handle is gone, subscriptions end after what they
//! hold, listeners and handlers stop, and watches see one last change and no match from then
//! on. A listener whose callback captures a `SignalSink` of its own sink keeps that sink alive
//! for as long as it is registered.
//!
//! # Names and patterns
//!
//! A [`Name`] is a dotted word such as `error.db.timeout`; a [`Pattern`] matches names with `*`
//! (any run, dots included), `?` (one character), `,` (alternatives) and a whole-segment `+`
//! (exactly one segment). Every string is a valid pattern, so queries take `&str`.
//!
//! # Time
//!
//! Everything in-process runs on tokio's clock, so tests can use the paused clock
//! (`#[tokio::test(start_paused = true)]`) and run instantly and deterministically.
//!
//! What needs a tokio runtime: creating a coordinator, an async handler or a channel
//! consumer (outside one, each is a typed error), and `send` on a channel with a send
//! timeout ([`SendError::NoRuntime`] outside one). A wait on tokio's clock must be polled
//! inside a runtime with timers enabled, as `tokio::time::sleep` must: a [`Watch`] whose
//! matches can expire, and a coordinator's `drain_timeout`. The rest (raising and querying
//! signals, subscriptions, sends without a timeout, `send_blocking`, enqueueing, waiting
//! for results and drains) works under any executor.
//!
//! # Feature flags
//!
//! - `serde`: `Serialize` on stats ([`SinkStats`], [`CoordinatorStats`], [`ChannelStats`]...),
//!   operation snapshots, states and echoes, signals, names and header values, and
//!   `Deserialize` wherever the value can be rebuilt (stats, states, names, header values, and
//!   a serialized [`Signal`] read back as the [`SignalBuilder`] that raises it again).
//!   Durations are whole milliseconds and instants are ages; the module `serde_ms` states the
//!   rule.
//! - `tower`: coordinators as `tower::Service` (`coordinator.service()`) and
//!   `CoordinatorLayer`, which runs any inner service as a coordinator's body: calls bounded
//!   by `max_concurrency` and `max_pending`, tracked, steered by signals (the docs of
//!   `CoordinatorLayer` and `CoordinatorService` say what readiness means, how errors keep
//!   their type and what an inner service must be).
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).
//!
//! # Map of the code: a signal's life
//!
//! | step | where |
//! |---|---|
//! | raise: `raise`, `raise_with`, `raise_caused` (depth, cycle, leaf and terminal guards) | `signal/sink.rs` |
//! | validate: the name rule; payload and header limits | `name.rs`; `signal/inner.rs` (`Inner::split`) |
//! | intern the name, stamp sequence and timestamp | `signal/state.rs` (`intern`, `State::insert`) |
//! | window and indexes: per-name sequences, operations, the expiry heap | `signal/state.rs` |
//! | queries: exact names, patterns with their memo | `signal/query.rs`, `pattern.rs` |
//! | routes: which registrations hear a name, cached per name | `signal/routes.rs`; guards in `signal/registration.rs` |
//! | subscriptions: pushed under the sink's lock into a lag ring | `signal/subscription.rs`, `lag/ring.rs` |
//! | listeners and async handlers: run after the lock is released | `signal/listener.rs`, `signal/inner.rs` (`run_listeners`) |
//! | watches: woken on every change to the live matches | `signal/watch.rs` |
//! | holds and forwarding | `signal/hold.rs`, `signal/forward.rs` |
//! | expiry, eviction and reclaiming the tables | `signal/state.rs` (`expire`, `evict_oldest`, `tidy`) |
//! | expiry at delivery, lag reports | `lag/ring.rs` |
//! | counters | `signal/stats.rs` |
//!
//! A channel message goes `channel/channel.rs` (send: one lock-free read of the subscriber
//! list) → `channel/shared.rs` (one subscriber) → `lag/ring.rs`; callback consumers are in
//! `channel/consumer.rs`. Shared locking helpers and the loom facade are in `sync.rs`.

#![forbid(unsafe_code)]

pub mod channel;
pub mod command;
pub mod coordinator;
mod current;
mod id;
pub mod lag;
mod name;
mod pattern;
#[cfg(feature = "serde")]
mod serde_impls;
#[cfg(feature = "serde")]
pub mod serde_ms;
#[cfg(feature = "serde")]
pub mod serde_payload;
pub mod signal;
mod sync;

pub use channel::{
    Channel, ChannelClosed, ChannelConfigError, ChannelOptions, ChannelSink, ChannelState,
    ChannelStats, Consumer, DeliveryError, DeliveryFailure, DeliveryStats, SendError, Subscriber,
};
pub use coordinator::{
    Admission, AdmissionRequest, CancelReason, CoordinatorError, CoordinatorHandle,
    CoordinatorStats, Decision, DeferPolicy, DrainSignals, Echo, EnqueueError, EnqueueManyError,
    EnqueuePermit, EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralResultCoordinator,
    EphemeralWorkCoordinator, IntakeError, IntakeSink, IntakeSinkError, KeyStats,
    KeyedEnqueuePermit, Lane, LaneEnqueuePermit, LaneError, MAX_PENDING, OperationContext,
    OperationError, OperationSnapshot, OperationState, OptionsError, PendingResult, PinError,
    PriorityWorkCoordinator, ResultError, Summary, process_all, process_all_with_cancel,
    process_keyed, process_stream, process_stream_with_cancel,
};
#[cfg(feature = "tower")]
pub use coordinator::{CoordinatorLayer, CoordinatorService, ResponseFuture, ServiceError};
pub use current::{WithOperation, current_operation, with_operation};
pub use id::OperationId;
pub use lag::{Buffer, Lagged, Overflow, ZeroBuffer};
pub use name::{MAX_NAME_LEN, Name, NameError, validate as validate_name};
pub use pattern::Pattern;
pub use signal::{
    ErrorCallback, Handler, HandlerError, HandlerFailure, HeaderValue, Headers, Hold, Listener,
    MAX_HEADER_KEY_LEN, PropagationError, RaiseError, Signal, SignalBuilder, SignalSink,
    SinkConfigError, SinkOptions, SinkStats, SubscriberStats, Subscription, Watch,
};
