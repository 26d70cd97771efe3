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
//! waits or is cancelled. Bodies get an [`OperationContext`] to raise and retract signals.
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
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod channel;
pub mod command;
pub mod coordinator;
mod id;
mod lag;
mod name;
mod pattern;
pub mod signal;
mod sync;

pub use channel::{
    Channel, ChannelClosed, ChannelConfigError, ChannelOptions, ChannelState, ChannelStats,
    Consumer, DeliveryError, DeliveryFailure, DeliveryStats, SendError, Subscriber,
};
pub use coordinator::{
    Admission, AdmissionRequest, CancelReason, CoordinatorError, CoordinatorHandle,
    CoordinatorStats, Decision, DeferPolicy, DrainSignals, Echo, EnqueueError, EnqueueManyError,
    EnqueuePermit, EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralResultCoordinator,
    EphemeralWorkCoordinator, IntakeError, KeyStats, KeyedEnqueuePermit, Lane, LaneEnqueuePermit,
    LaneError, OperationContext, OperationSnapshot, OperationState, OptionsError, PinError,
    PriorityWorkCoordinator, ResultError, Summary, process_all, process_all_with_cancel,
    process_keyed, process_stream, process_stream_with_cancel,
};
pub use id::OperationId;
pub use lag::{Buffer, Lagged, Overflow, ZeroBuffer};
pub use name::{MAX_NAME_LEN, Name, NameError, validate as validate_name};
pub use pattern::Pattern;
pub use signal::{
    ErrorCallback, Handler, HandlerError, HandlerFailure, HeaderValue, Headers, Hold, Listener,
    PropagationError, RaiseError, Signal, SignalBuilder, SignalSink, SinkConfigError, SinkOptions,
    SinkStats, SubscriberStats, Subscription, Watch,
};
