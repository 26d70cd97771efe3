//! Small, composable building blocks on the public API of [`ephemeral`].
//!
//! # Overview
//!
//! Each atom is a module with its own docs, example and tests, and raises signals into a
//! [`SignalSink`](ephemeral::SignalSink) when one is given. Atoms use only the public API of
//! the core crate, so anything they do, your own code can do too.
//!
//! Where an atom catches a panic of your code (a batch handler, a cache factory or eviction
//! callback, a service hook) and carries on, it catches it as it unwinds: built with
//! `panic = "abort"` there is nothing to catch, and the process ends. A [`retry::Retry`]
//! catches none: it runs your body inline, and a panic unwinds out of its call.
//!
//! # Getting started
//!
//! ```toml
//! ephemeral-atoms = "0.1"
//! ```
//!
//! A flaky call retried with exponential backoff inside a coordinator's body; the retry's
//! signals land in the coordinator's sink, where anyone can ask about them:
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
//! use ephemeral_atoms::retry::{Backoff, Retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = SignalSink::default();
//! let retry = Arc::new(
//!     Retry::new(Backoff::exponential(Duration::from_millis(50)))
//!         .max_attempts(4)?
//!         .signals(sink.clone()),
//! );
//! let calls = Arc::new(AtomicU32::new(0));
//! let coordinator = EphemeralWorkCoordinator::new(
//!     {
//!         let calls = calls.clone();
//!         move |order: u32, _ctx: OperationContext| {
//!             let (retry, calls) = (retry.clone(), calls.clone());
//!             async move {
//!                 // Fails twice, then succeeds: the third attempt goes through.
//!                 retry
//!                     .run(|attempt| {
//!                         calls.fetch_add(1, Ordering::Relaxed);
//!                         async move {
//!                             if attempt < 3 { Err(format!("order {order}: busy")) } else { Ok(()) }
//!                         }
//!                     })
//!                     .await
//!             }
//!         }
//!     },
//!     EphemeralOptions::default().signals(sink.clone()),
//! )?;
//! coordinator.enqueue(7).await?;
//! coordinator.drain().await?;
//! assert_eq!(coordinator.stats().completed, 1);
//! assert_eq!(calls.load(Ordering::Relaxed), 3);
//! assert_eq!(sink.count("retry.attempt"), 2); // one as each retry starts
//! # Ok(())
//! # }
//! ```
//!
//! # Retry
//!
//! [`retry::Retry`] runs an async body until it succeeds, with a [`retry::Backoff`] schedule
//! (constant, exponential, fibonacci; jitter; max delay), a `when` predicate, an `adjust` hook
//! for a server's `Retry-After`, an optional shared [`retry::RetryBudget`] and cancellation
//! that stops the wait at once. Signals: `retry.attempt`, `retry.exhausted`. Inside a
//! coordinator body the concurrency slot stays held during backoff.
//!
//! # Batching
//!
//! [`batch::Batcher`] hands items to a handler in batches of at most `max_size`, at the
//! latest `flush_interval` after a batch's first item: 25 quick pushes with max 10 give 10,
//! 10, then 5 after the interval. One batch at a time; `close` flushes the rest and waits;
//! handler errors and panics are returned and signalled (`batch.failed`), never lost.
//!
//! # Rate limiting
//!
//! [`rate_limit::GcraLimiter`] and [`rate_limit::TokenBucket`] share one trait
//! ([`rate_limit::RateLimiter`]: `try_acquire` with `retry_after`, `check`, `acquire`,
//! `admit`; waiters are served in order, one on the clock); with 10 per second and burst 5,
//! five permits at once, then one per 100 ms.
//! [`rate_limit::KeyedRateLimiter`] limits per key in a bounded table that reclaims idle
//! keys. [`rate_limit::control`] steers any of them from `rate.limit.set:<n>`,
//! `.increase:<n>`, `.decrease:<n>` and `.burst:<n>` signals, confirmed by
//! `rate.limit.applied`.
//!
//! # Sliding cache
//!
//! [`cache::SlidingCache`] computes missing values with an async factory, once per key
//! however many requests wait, expires them by sliding and absolute time (an expired value is
//! never returned), stores at most `max_size` values, and reports every eviction with its
//! reason (expired, size, explicit). Signals: `cache.hit`, `cache.miss` (a read joining a
//! computation already running raises neither), `cache.evict`.
//!
//! # Presets
//!
//! [`presets::FixedWork`] (a FIFO coordinator with a set worker count, changed only through
//! its `inner()` coordinator),
//! [`presets::KeyedSequential`] (strictly one item at a time per key, keys in parallel) and
//! [`presets::SignalAware`] (intake refused with the live signal's name while a `refuse_on`
//! signal is live, or deferred by `defer_on` / `resume_on`) are the core coordinators with
//! sensible defaults, under the names people look for; each hands out the coordinator itself
//! through `inner()`.
//!
//! # Services
//!
//! [`service::ServiceHost`] runs long-lived [`service::Service`]s: starts them in dependency
//! order (a cycle is a typed error), restarts a failing work step with backoff and gives up
//! after a limit with the reason, and on Ctrl-C, SIGTERM or a cancellation token stops them
//! in reverse order within a deadline, naming any service that did not stop.
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]

pub mod batch;
pub mod cache;
mod header;
pub mod presets;
pub mod rate_limit;
pub mod retry;
pub mod service;
