//! Signals, messages and requests across machines, through NATS.
//!
//! # Overview
//!
//! The bus ([`ephemeral_bus`]) joins processes on one machine with no broker. Past one
//! machine, this crate does the same on [NATS](https://nats.io): a [`Nats`] handle is a
//! connection to a server or cluster, with the bus's calls —
//! [`publish`](Nats::publish) / [`subscribe`](Nats::subscribe) (a stream of
//! `Result<Message, Lagged>`) and [`serve`](Nats::serve) / [`request`](Nats::request) — so
//! code moves from one machine to many by changing how it connects, not how it calls. Two
//! differences to know: a NATS handler returns `Result` (on the bus that is
//! [`Bus::try_serve`](ephemeral_bus::Bus::try_serve); `Bus::serve` takes an infallible one),
//! and its failure reaches the requester as [`NatsError::HandlerFailed`] where the bus says
//! [`BusError::ServerFailed`](ephemeral_bus::BusError::ServerFailed).
//!
//! What it promises, in numbers and rules:
//!
//! * **Any name travels.** Topics are core [`Name`]s on subjects
//!   `<prefix>.s.<topic>`, mapped injectively ([`subject`]): ordinary names unchanged, and the
//!   ones NATS cannot carry (empty segments, a `>` segment) escaped, never silently dropped
//!   by the server. Patterns subscribe to the widest exact NATS subjects, plus a local filter
//!   where NATS cannot express them (`job.?`, `a.*.c`).
//! * **Loss is never silent.** Each handle numbers what it publishes per topic; a subscriber
//!   turns a gap (a reconnect, a slow consumer cut off) into [`Lagged`] (from the second
//!   message it gets from that publisher on; see [`Subscription`]).
//!   A publish while disconnected is [`NatsError::Disconnected`], not a message queued in the
//!   dark. [`Nats::connection_signals`] raises `nats.connected` / `nats.disconnected` and
//!   holds `nats.offline` in a sink during an outage.
//! * **Nothing expired is delivered.** A time to live travels as the remaining milliseconds
//!   and counts from arrival; a message that ran out before it was read is skipped and
//!   counted ([`SubscriptionStats::expired`]).
//! * **One bridge on one machine and many.** [`Nats::bridge`] joins a signal sink to every
//!   sink bridged on the cluster with the bus's own [`Bridge`] (behind the [`Link`] trait
//!   both implement): remaining time to live, key, payload and typed headers travel, holds
//!   are mirrored as leases (3 s), losses count in [`Bridge::lagged`] and
//!   [`Bridge::failed`], and buses bridged to NATS never loop. [`Message`] and
//!   [`Outgoing`] are the bus's types too.
//! * **Requests find one server or fail at once.** NATS queue groups pick one server per
//!   request; nobody serving is [`NatsError::NoServer`] immediately; a failing or panicking
//!   handler is [`NatsError::HandlerFailed`] at the requester.
//! * **Errors say what to do**, and connection errors have a [`ConnectKind`] to match on.
//! * **Retained state across machines.** [`Nats`] implements
//!   [`Retained`](ephemeral_bus::retained::Retained): the bus's
//!   [`Store`](ephemeral_bus::retained::Store) (values with a time to live, history, watch,
//!   owned values reclaimed when their process dies),
//!   [`Room`](ephemeral_bus::retained::Room) (history, then live) and
//!   [`DurableSubscription`](ephemeral_bus::retained::DurableSubscription) (kept while away,
//!   bounded, overflow as `Lagged`) on JetStream, with the same checks and errors as on the
//!   bus. Reads honour a time to live to the millisecond; the server, which keeps whole
//!   seconds (one at the least), removes the value at its time to live rounded up to the
//!   second; see [`retained`].
//!
//! Core NATS is at most once: a message is delivered to the subscribers present when it is
//! published, or reported lost as above. Durable work across machines is JetStream's job
//! ([`Nats::jetstream`]).
//!
//! # Getting started
//!
//! Any nats-server 2.11 or later; the README's NATS section says how to get one in seconds.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = ephemeral_nats::testing::NatsServer::start().await;
//! # let url = server.url();
//! use futures::StreamExt;
//! use ephemeral_nats::{Nats, NatsOptions};
//!
//! let nats = Nats::connect_with(&url, NatsOptions::default().name("orders")).await?;
//! let mut orders = nats.subscribe("orders.*").await?;
//! nats.publish("orders.created", "42").await?;
//! assert_eq!(orders.next().await.unwrap()?.payload(), b"42");
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `testing`: `testing::NatsServer`, a real `nats-server` per test (started, restarted on
//!   the same port, stopped and killed by pid).
//! * `conformance`: the shared retained-state test bodies of `ephemeral-bus` run against
//!   [`Nats`] (implies `testing`).
//! * `serde`: `Serialize` and `Deserialize` on [`NatsStats`] and [`SubscriptionStats`];
//!   turns on `ephemeral-bus/serde`, so [`Message`] (the same type as on the bus) and the
//!   core types serialize too.
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

mod bridge;
mod client;
mod connection;
mod durations;
mod error;
pub mod headers;
pub mod inspect;
mod message;
mod options;
mod publish;
pub mod queue;
mod request;
pub mod retained;
mod sequence;
pub mod subject;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
mod version;

pub use bridge::DEFAULT_HOLD_LEASE;
pub use client::{Nats, NatsStats};
pub use connection::{CONNECTED_SIGNAL, ConnectionSignals, DISCONNECTED_SIGNAL, OFFLINE_SIGNAL};
pub use ephemeral::{Buffer, Lagged, Name, NameError, Pattern};
pub use ephemeral_bus::link::Link;
pub use ephemeral_bus::{Bridge, BridgeOptions, Message, Outgoing};
pub use error::{ConnectKind, NatsError};
pub use message::PayloadBytes;
pub use options::{DEFAULT_PREFIX, NatsOptions};
pub use request::{MAX_CONCURRENT_REQUESTS, Server};
pub use subscription::{Subscription, SubscriptionStats};

/// Re-exported: the client this crate is built on.
pub use async_nats;
