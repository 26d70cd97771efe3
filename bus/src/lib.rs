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
//! Beyond publish/subscribe: [`Bus::serve`] and [`Bus::request`] do request/response with
//! correlation ids (one registered server answers, chosen round-robin from a random start;
//! a timeout, a dead server, a busy server and a panicking handler are typed errors),
//! [`Bus::serve_stream`] and [`Bus::request_stream`] stream replies, [`Bus::observe`]
//! shows copies of requests and replies without taking any away, and [`Bus::stats`] gives
//! per-topic and per-subscription counters.
//!
//! Requests and replies are not messages on topics: they travel as routed frames to their
//! one addressee, so they take no topic from users, and `subscribe("*")` sees every topic
//! anyone publishes on (`_private.x` and `ünicode.x` included) and nothing else.
//!
//! [`inspect`] lets coordinators and sinks publish their live state ([`PublishState`]) for
//! `ephemeral top` and other tools, at a bounded rate and only while someone watches.
//!
//! [`retained`] keeps data, not just events: [`Bus::store`] (values with a time to live,
//! history, watch, values owned by a process), [`Bus::room`] (messages kept up to a count
//! and an age; a late joiner gets the history, then live) and [`Bus::subscribe_durable`]
//! (messages kept while a named subscriber is away, until acknowledged), in an LMDB
//! database in the bus directory. The same types come from `ephemeral-nats` across machines.
//!
//! # Features
//!
//! * `conformance`: `retained::conformance`, the shared test bodies every retained-state
//!   backend runs (with real child processes).
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
//!   removes a dead peer's files (at once, when its connection drops), or the next peer to
//!   open the bus does; the last peer out removes the directory.
//! * Bridged signals keep their remaining time to live; holds are mirrored as leases (1 s);
//!   origin, hop count and the medium they came by keep any topology of buses (and NATS,
//!   through `ephemeral-nats`, which bridges with this same code behind [`link::Link`])
//!   from looping.
//!
//! # Security
//!
//! The bus directory is created mode 700; opening one that is owned by another uid or open to
//! group or others is refused with [`BusError::NotOwner`] or [`BusError::Permissions`]. The
//! check is explicit (uid and mode), so it also holds when running as root. Peer files are
//! mode 600. A bus name is one word of letters, digits, `-` and `_` ([`BusName`]), so no
//! name can place a bus outside its parent directory; a missing parent is created mode 700.
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
//! # Map of the code
//!
//! A published message's life:
//!
//! 1. [`Bus::publish`] (`bus.rs`) checks the topic and payload, delivers to this handle's
//!    own subscriptions, and encodes one frame (`frame.rs`, the wire format).
//! 2. The transport (`transport/unix.rs`) sends the frame to each peer whose announced
//!    subscriptions match the topic, through that peer's queue (`transport/outbound.rs`,
//!    the bounded wait and lag reports), written to its socket by one writer task.
//! 3. The receiving peer's reader (`transport/unix.rs`) decodes the frame and hands it to
//!    the router (`router.rs`), which pushes it into each matching subscription's ring
//!    (`subscription.rs`: buffer, overflow, lag, expiry); [`Subscription`] reads it there.
//!
//! A request's life: [`Bus::request`] (`request.rs`) picks one registered server, registers
//! the waiting request (`replies.rs`) and sends a routed frame; the server's router hands
//! it to the server loop (`serve.rs`: concurrency bound, queue, handler, timings in
//! `handlers.rs`), whose reply is routed back to the waiting request; observers get copies
//! on the way. The bus directory, its owner check, locks and reclaim of dead peers are in
//! `dir.rs`; bus names in `name.rs`.
//!
//! A bridged signal's life (`bridge/`): the bridge's outward task reads the sink's
//! subscription and publishes each signal with its remaining time to live and origin over
//! its [`link::Link`] (`link.rs`: the bus, or NATS); the other side's inward task reads its
//! link subscription and raises it in its sink; holds travel as refreshed leases
//! (`bridge/holds.rs`), mirrored once per sink (`bridge/mirrors.rs`, with the table that
//! raises a signal reaching a sink along two paths once).
//!
//! The state exchange of [`inspect`] and the retained state's change notices and registry
//! syncs travel as the bus's own broadcasts (`Bus::broadcast`, internal subscriptions in
//! `router.rs`): a namespace apart from user topics, never delivered to a subscription nor
//! listed in [`BusStats`].
//!
//! # Tracing
//!
//! `debug` spans: `bus.publish` (`topic`, `bytes`) around each publish, `bus.request`
//! (`topic`, `bytes`, `timeout_ms`) around each request, and `bus.serve` (`topic`, `bytes`)
//! around each request a server handles, with the handler inside it.
//!
//! # Feature flags
//!
//! - `serde`: `Serialize` and `Deserialize` on [`Message`] (payload as text when UTF-8, else
//!   bytes; `timestamp_ms` in UNIX milliseconds), [`BusStats`] and its parts, [`PeerInfo`],
//!   [`BusOptions`] and [`ServeOptions`] (read back through their setters); turns on
//!   `ephemeral/serde`. Durations are whole milliseconds (`uptime_ms`, `ttl_ms`, `p99_ms`).
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024), on Unix (Linux for the `/dev/shm` default).

mod bridge;
mod bus;
mod db;
mod dir;
mod durable;
mod error;
pub mod frame;
mod handlers;
pub mod inspect;
pub mod link;
mod message;
mod name;
mod options;
mod outgoing;
mod payload;
mod replies;
mod request;
pub mod retained;
mod room;
mod router;
#[cfg(feature = "serde")]
mod serde_impls;
mod serve;
mod stats;
mod store;
mod subscription;
mod sync;
mod topics;
mod transport;

/// The most headers a bus message carries ([`BusError::HeadersTooLarge`] beyond).
pub const MAX_HEADERS: usize = 255;
/// The longest header key a bus message carries, in bytes.
pub const MAX_HEADER_KEY: usize = 255;
/// The longest string header value a bus message carries, in bytes.
pub const MAX_HEADER_STR: usize = u16::MAX as usize;

pub use bridge::{
    BRIDGE_HEADERS, BRIDGE_ID_HEADER, Bridge, BridgeOptions, Bridged, HOLD_HEADER, HOPS_HEADER,
    KEY_HEADER, ORIGIN_HEADER, REFRESH_HEADER, RELEASE_HEADER, SEQ_HEADER, VIA_HEADER,
};
pub use bus::{Bus, CallbackTask, process_origin};
/// Re-exported: a message's payload type ([`Message::payload_shared`], [`IntoPayload`]).
pub use bytes::{self, Bytes};
pub use ephemeral::{Buffer, Headers, Lagged, Name, NameError, Overflow, Pattern};
pub use error::BusError;
pub use handlers::{HandlerKind, HandlerStats};
pub use inspect::PublishState;
pub use message::{Message, MessageKind, ReplyStatus};
pub use name::{BUS_NAME_RULE, BusName, BusNameError, MAX_BUS_NAME_LEN};
pub use options::{BUS_DIR_ENV, BusOptions};
pub use outgoing::{Outgoing, OutgoingParts};
pub use payload::IntoPayload;
pub use request::ReplyStream;
pub use retained::{
    DurableMessage, DurableOptions, DurableSubscription, Entry, Room, RoomJoin, RoomMessage,
    RoomOptions, Store, StoreError, StoreEvent, StoreOptions, StoreStats, StoreWatch,
};
pub use serve::{ServeOptions, Server};
pub use stats::{BusStats, PeerInfo};
pub use subscription::{Subscription, SubscriptionStats};
pub use topics::TopicStats;

/// The end of a call's bounded wait, read from the clock only when something has to wait
/// (a publish that finds room everywhere never reads it). Once read it stays: every wait of
/// the call shares the one bound.
pub(crate) struct Deadline {
    timeout: std::time::Duration,
    at: std::sync::OnceLock<tokio::time::Instant>,
}

impl Deadline {
    /// `timeout` from the first time it is asked for.
    pub(crate) fn lazy(timeout: std::time::Duration) -> Self {
        Self {
            timeout,
            at: std::sync::OnceLock::new(),
        }
    }

    /// The instant itself.
    pub(crate) fn fixed(at: tokio::time::Instant) -> Self {
        Self {
            timeout: std::time::Duration::ZERO,
            at: std::sync::OnceLock::from(at),
        }
    }

    /// The instant, read from the clock now if this is the first time.
    pub(crate) fn at(&self) -> tokio::time::Instant {
        *self.at.get_or_init(|| after(self.timeout))
    }
}

/// `timeout` from now on tokio's clock, saturating far in the future instead of overflowing
/// (a timeout of `Duration::MAX` means "no timeout", never a panic).
pub(crate) fn after(timeout: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365 * 30))
}
