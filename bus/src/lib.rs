//! Signals and messages between processes on one machine, with no broker.
//!
//! # Overview
//!
//! A [`Bus`] is a named meeting place in a directory (by default under `/dev/shm`). Every
//! process that opens it becomes a peer: it can [`publish`](Bus::publish) messages on topics
//! (core [`Name`]s) and [`subscribe`](Bus::subscribe) to patterns (core [`Pattern`]s:
//! `error.*`, `news.+`, `a.*,b.*`). There is no server: peers connect to each other over Unix
//! sockets in the bus directory. A [`Bridge`] joins a [`SignalSink`](ephemeral::SignalSink)
//! to the bus, so signals raised in one process are seen in the others.
//!
//! The guarantees, in numbers:
//!
//! * Subscriptions use the core lag model: with [`Overflow::Wait`] nothing is lost while a
//!   subscriber keeps up; a publisher waits for a full subscriber at most
//!   [`BusOptions::send_timeout`] (1 s), then drops for that subscriber alone, which is told
//!   with [`Lagged`]. A stopped or dead subscriber never blocks publishers past that bound.
//! * Messages from one publisher arrive in order.
//! * Payloads up to [`BusOptions::max_payload`] (1 MiB); larger is a typed error.
//! * Frames carry a format version; a corrupt frame or one of another version is refused
//!   and counted ([`BusStats::corrupt_frames`]), never a crash.
//! * Peers are detected dead by a file lock they held, never by pid; the first peer to notice
//!   removes a dead peer's files (at once, when its connection drops).
//!
//! # Getting started
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use ephemeral_bus::Bus;
//!
//! # let dir = std::env::temp_dir().join(format!("ephemeral-doc-lib-{}", std::process::id()));
//! let bus = Bus::open("doc-shop-lib").await?;
//! let mut created = bus.subscribe("orders.*").await?;
//! bus.publish("orders.created", b"42").await?;
//! assert_eq!(created.next().await.unwrap()?.payload(), b"42");
//! # Ok(())
//! # }
//! ```
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024), on Unix (Linux for the `/dev/shm` default).

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod bridge;
mod bus;
mod dir;
mod error;
pub mod frame;
mod message;
mod options;
mod request;
mod router;
mod subscription;
mod topics;
mod transport;

pub use bridge::{
    Bridge, BridgeOptions, HOLD_HEADER, HOPS_HEADER, KEY_HEADER, ORIGIN_HEADER, RELEASE_HEADER,
    SEQ_HEADER, VIA_HEADER,
};
pub use bus::{Bus, BusStats, CallbackTask, Outgoing, process_origin};
pub use ephemeral::{Buffer, Lagged, Name, NameError, Overflow, Pattern};
pub use error::BusError;
pub use message::Message;
pub use options::{BUS_DIR_ENV, BusOptions};
pub use request::Server;
pub use subscription::{Subscription, SubscriptionStats};
pub use topics::TopicStats;
