//! `Bus`: a named bus on this machine, shared by every process that opens it.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use ephemeral::{Buffer, HeaderValue, Lagged, Name, Overflow, Pattern};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::{self, Frame, Interest, MessageRef};
use crate::handlers::{HandlerKind, Handlers};
use crate::router::Locals;
use crate::subscription::LocalSub;
use crate::sync::Mutex;
use crate::topics::TopicCounters;
use crate::transport::Encoded;
use crate::transport::{Transport, UnixTransport};
use crate::{
    BusError, BusName, BusOptions, BusStats, Deadline, IntoPayload, Message, Outgoing, Subscription,
};

/// A random 64-bit number, from the standard library's randomly seeded hasher (no extra
/// dependency; these ids need to be unique, not secret).
pub(crate) fn random_u64(salt: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish()
}

/// This process's origin id: stamped on every message it publishes first, and how bridges
/// recognise (and drop) their own signals coming back around a loop.
#[must_use]
pub fn process_origin() -> u64 {
    static ORIGIN: OnceLock<u64> = OnceLock::new();
    *ORIGIN.get_or_init(|| random_u64(0x6f72_6967_696e))
}

pub(crate) struct Shared {
    name: Name,
    dir: PathBuf,
    pub(crate) options: BusOptions,
    pub(crate) peer: u64,
    pub(crate) locals: Arc<Locals>,
    pub(crate) transport: Arc<UnixTransport>,
    published: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) handlers: Handlers,
    /// Which server the next request goes to (modulo their count); starts at random so
    /// that one-shot requesters spread over the servers.
    pub(crate) round_robin: AtomicU64,
    last_topic: Mutex<Option<(Name, Arc<TopicCounters>)>>,
    opened: Instant,
    /// The durable subscriptions this handle keeps messages for when it publishes.
    pub(crate) capture: crate::durable::capture::Capture,
}

impl Shared {
    /// The topic as a `Name` with its counters, reusing the last one published when it
    /// repeats (no validation or allocation for a run of messages on one topic). Counts
    /// nothing: a message is counted once it is sent, so a refused publish (too large, say)
    /// is never counted as published.
    fn topic(&self, topic: &str) -> Result<(Name, Arc<TopicCounters>), BusError> {
        let mut last = self.last_topic.lock();
        if let Some((name, counters)) = last.as_ref().filter(|(n, _)| n.as_str() == topic) {
            return Ok((name.clone(), Arc::clone(counters)));
        }
        let name = Name::new(topic)?;
        let counters = self.locals.topics.counters(&name);
        *last = Some((name.clone(), Arc::clone(&counters)));
        Ok((name, counters))
    }

    /// Counts one message sent on a topic, in the handle's and the topic's counters.
    fn count_published(&self, counters: &TopicCounters) {
        // Relaxed: statistics.
        self.published.fetch_add(1, Ordering::Relaxed);
        counters.published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        self.locals.remove(id);
        self.transport.announce_now();
    }
}

/// Leaves the bus when the last `Bus` clone and the last subscription are gone.
pub(crate) struct BusHandle {
    pub(crate) shared: Arc<Shared>,
}

impl Drop for BusHandle {
    fn drop(&mut self) {
        self.shared.transport.close();
    }
}

/// A named bus shared by the processes of one machine, with no broker.
///
/// Opening joins (or creates) the directory `<parent>/ephemeral-<name>` (see [`BusOptions`]).
/// Every peer connects directly to every other; a publisher sends each message only to the
/// peers subscribed to its topic, and [`publish`](Self::publish) returns how many
/// subscriptions it reached. Only the owning user can open a bus: the directory must be
/// owned by this uid and closed to group and others (checked explicitly, so it holds for
/// root too). Peers are known dead by the lock they held, never by pid; a dead peer's files
/// are removed by the next peer that notices (at once, when its connection drops), and the
/// last peer out removes the directory.
///
/// `Bus` is a cheap `Clone`; the process leaves the bus when every clone and every
/// subscription is dropped.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use ephemeral_bus::Bus;
///
/// let bus = Bus::open("doc-orders-bus").await?;
/// let mut errors = bus.subscribe("error.*,timeout.*").await?;
///
/// let reached = bus.publish("error.db", b"connection refused").await?;
/// assert_eq!(reached, 1);
/// let message = errors.next().await.unwrap()?;
/// assert_eq!(message.payload_str(), Some("connection refused"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "the process leaves the bus when the last Bus clone is dropped"]
pub struct Bus {
    pub(crate) handle: Arc<BusHandle>,
}

impl Bus {
    /// Joins the bus `name` with the default options.
    ///
    /// # Errors
    ///
    /// See [`open_with`](Self::open_with).
    pub async fn open(name: &str) -> Result<Self, BusError> {
        Self::open_with(name, BusOptions::default()).await
    }

    /// Joins the bus `name`.
    ///
    /// # Errors
    ///
    /// [`BusError::BusName`] for a name that is not one path-safe word (checked before
    /// anything touches the disk), [`BusError::NotOwner`] or
    /// [`BusError::Permissions`] when the directory is not this user's alone, and
    /// [`BusError::Io`] when a bus file cannot be created.
    pub async fn open_with(name: &str, options: BusOptions) -> Result<Self, BusError> {
        let name = BusName::new(name)?;
        let dir = options.bus_dir(&name);
        crate::dir::check_len(&dir)?;
        let name = Name::new(name.as_str())?;
        let peer = random_u64(u64::from(std::process::id()) ^ 0x7065_6572);
        let locals = Arc::new(Locals::new(peer));
        // Listening for durable-registry changes from before the join, so the hello says so.
        let (listener, cursor) = crate::durable::capture::listener();
        locals.add(Arc::clone(&listener));
        let transport =
            UnixTransport::join(dir.clone(), peer, options.clone(), Arc::clone(&locals)).await?;
        let bus = Self {
            handle: Arc::new(BusHandle {
                shared: Arc::new(Shared {
                    name,
                    dir,
                    options,
                    peer,
                    locals,
                    transport,
                    published: AtomicU64::new(0),
                    callback_panics: AtomicU64::new(0),
                    handlers: Handlers::default(),
                    round_robin: AtomicU64::new(random_u64(peer)),
                    last_topic: Mutex::new(None),
                    opened: Instant::now(),
                    capture: crate::durable::capture::Capture::default(),
                }),
            }),
        };
        crate::durable::capture::start(&bus, listener, cursor).await;
        Ok(bus)
    }

    /// Whether the bus `name` exists now (someone has it open, or left it behind) under the
    /// parent that `options` choose. Opening a bus creates it; this only looks.
    ///
    /// # Errors
    ///
    /// [`BusError::BusName`] for a bad name, [`BusError::Io`] when the directory cannot be
    /// looked at (permission denied, say).
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral_bus::{Bus, BusOptions};
    ///
    /// let parent = std::env::temp_dir().join("ephemeral-doc-exists");
    /// assert!(!Bus::exists("nobody-here", &BusOptions::default().dir(&parent))?);
    /// # Ok::<(), ephemeral_bus::BusError>(())
    /// ```
    pub fn exists(name: &str, options: &BusOptions) -> Result<bool, BusError> {
        let dir = options.bus_dir(&BusName::new(name)?);
        match std::fs::symlink_metadata(&dir) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BusError::io(dir)(e)),
        }
    }

    /// Publishes `payload` on `topic`; returns how many subscriptions (in this process and
    /// others) it reached, durable subscriptions it was kept for included (see
    /// [`subscribe_durable`](Self::subscribe_durable): such a message is stored before this
    /// returns).
    ///
    /// `payload` is anything [`IntoPayload`]: `b"..."`, `&[u8]`, `&str`, byte arrays,
    /// `Vec<u8>`, `String`, [`Bytes`](bytes::Bytes)... Owned buffers are never copied into
    /// the message; borrowed bytes are copied only when a subscription of this process keeps
    /// the message, and for other processes every payload is written straight into the
    /// frame.
    ///
    /// A peer is sent what matches the subscriptions it announced. One that was stopped
    /// (SIGSTOP, a debugger) when this handle joined the bus has announced none to it yet:
    /// it is sent nothing and not counted until it resumes and answers, and since nothing
    /// was sent to it, it is not told of a gap ([`Lagged`]) either. A peer stopped *after*
    /// it announced is sent to as usual, within the bounded wait of
    /// [`BusOptions::send_timeout`].
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic, [`BusError::PayloadTooLarge`] above the maximum
    /// (nothing is sent or kept then), [`BusError::Retained`] when a durable subscription
    /// matches and the message could not be kept for it.
    #[tracing::instrument(level = "debug", name = "bus.publish", skip_all, fields(topic = topic, bytes = payload.as_payload().len()))]
    pub async fn publish(&self, topic: &str, payload: impl IntoPayload) -> Result<usize, BusError> {
        let shared = &self.handle.shared;
        let (topic, counters) = shared.topic(topic)?;
        let max = shared.options.max_payload;
        let len = payload.as_payload().len();
        if len > max {
            return Err(BusError::PayloadTooLarge { len, max });
        }
        let mut kept = 0;
        if shared.capture.matches(&topic) {
            kept = Box::pin(crate::durable::capture::capture(
                self,
                &topic,
                payload.as_payload(),
                &[],
                process_origin(),
                None,
            ))
            .await?;
        }
        if shared.locals.any_matching(&topic) {
            let mut outgoing = Outgoing::from_name(topic);
            outgoing.payload = payload.into_payload();
            let message = self.build(outgoing)?;
            return Ok(kept + self.send_built(message, &counters).await);
        }
        // No subscriber in this handle: encode straight from the caller's bytes into each
        // peer's queue.
        let message = MessageRef {
            topic: &topic,
            payload: payload.as_payload(),
            headers: &[],
            id: shared.locals.next_id(),
            origin: process_origin(),
            hops: 0,
            timestamp: SystemTime::now(),
            ttl: None,
            route: None,
        };
        let deadline = Deadline::lazy(shared.options.send_timeout);
        shared.count_published(&counters);
        let remote = shared
            .transport
            .send(&topic, Encoded::Message(&message), &deadline)
            .await;
        Ok(kept + remote)
    }

    /// Publishes a message built with [`Outgoing`].
    ///
    /// A subscriber whose buffer is full (`Overflow::Wait`) is waited for, together at most
    /// [`BusOptions::send_timeout`] per call; past that the message is dropped for it alone
    /// and it is told with `Lagged`. The count returned excludes such subscribers.
    ///
    /// # Errors
    ///
    /// [`BusError::PayloadTooLarge`] above the maximum payload,
    /// [`BusError::HeadersTooLarge`] when the headers do not fit in a frame (too many, a key
    /// or a value too long, or so many that the frame, payload and topic included, would
    /// pass the maximum payload plus 1 MiB), [`BusError::Retained`] as for
    /// [`publish`](Self::publish).
    #[tracing::instrument(level = "debug", name = "bus.publish", skip_all, fields(topic = %outgoing.topic, bytes = outgoing.payload.len()))]
    pub async fn publish_with(&self, outgoing: Outgoing) -> Result<usize, BusError> {
        let shared = &self.handle.shared;
        let counters = shared.locals.topics.counters(&outgoing.topic);
        // Checked before anything is kept: a publish refused for its size or headers leaves
        // nothing behind, not even for durable subscriptions.
        let message = self.build(outgoing)?;
        let mut kept = 0;
        if shared.capture.matches(&message.topic) {
            kept = Box::pin(crate::durable::capture::capture(
                self,
                &message.topic,
                &message.payload,
                &message.headers,
                message.origin,
                message.ttl,
            ))
            .await?;
        }
        Ok(kept + self.send_built(message, &counters).await)
    }

    /// Sends a built (checked) message, counted against `counters` (its topic's).
    async fn send_built(&self, message: Message, counters: &TopicCounters) -> usize {
        let shared = &self.handle.shared;
        let deadline = crate::after(shared.options.send_timeout);
        shared.count_published(counters);
        let local = shared.locals.dispatch(&message, Some(deadline)).await;
        let remote = shared
            .transport
            .send(
                &message.topic,
                Encoded::Message(&MessageRef::of(&message)),
                &Deadline::fixed(deadline),
            )
            .await;
        local + remote
    }

    /// The message, checked to fit in a frame.
    pub(crate) fn build(&self, outgoing: Outgoing) -> Result<Message, BusError> {
        let shared = &self.handle.shared;
        let max = shared.options.max_payload;
        if outgoing.payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                len: outgoing.payload.len(),
                max,
            });
        }
        check_headers(&outgoing.headers)?;
        let message = Message {
            route: None,
            topic: outgoing.topic,
            payload: outgoing.payload,
            headers: outgoing.headers.into(),
            id: shared.locals.next_id(),
            origin: outgoing.origin.unwrap_or_else(process_origin),
            hops: outgoing.hops,
            timestamp: SystemTime::now(),
            ttl: outgoing.ttl,
        };
        let len = MessageRef::of(&message).encoded_len();
        let max_frame = max.saturating_add(crate::transport::FRAME_OVERHEAD);
        if len > max_frame {
            // The payload fits (checked above) and a topic takes far less than the
            // overhead: the headers took the frame over, so they are what is said to be too
            // large, with their share of the frame and the room left for them.
            let bare = MessageRef {
                headers: &[],
                ..MessageRef::of(&message)
            }
            .encoded_len();
            return Err(BusError::HeadersTooLarge {
                what: "the encoded size of the headers".to_owned(),
                len: len - bare,
                max: max_frame.saturating_sub(bare),
            });
        }
        Ok(message)
    }

    /// Subscribes to the topics matching `pattern`, with the default buffer (1024 messages)
    /// and [`Overflow::Wait`].
    ///
    /// Returns once every connected peer routes by the new subscription (or did not answer
    /// within [`BusOptions::handshake_timeout`]), so a message published elsewhere after this
    /// returns is delivered. A peer that missed a handshake is not waited for again until
    /// it answers.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no name, as for
    /// [`subscribe_with`](Self::subscribe_with).
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, BusError> {
        self.subscribe_with(pattern, Buffer::default(), Overflow::Wait)
            .await
    }

    /// Subscribes with an explicit buffer and overflow policy.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no name (`""`, `","`, `"a b"`:
    /// it would never receive anything; `Nats::subscribe` refuses it alike). Nothing else:
    /// a `Bus` handle keeps the bus open.
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        buffer: Buffer,
        overflow: Overflow,
    ) -> Result<Subscription, BusError> {
        let pattern_checked = Pattern::new(pattern);
        if pattern_checked.is_empty() {
            return Err(BusError::EmptyPattern {
                pattern: pattern.to_owned(),
            });
        }
        Ok(self
            .register(pattern_checked, Interest::Messages, buffer, overflow)
            .await)
    }

    /// Adds a local subscription of any interest and waits (bounded) until every peer
    /// routes by it.
    pub(crate) async fn register(
        &self,
        pattern: Pattern,
        interest: Interest,
        buffer: Buffer,
        overflow: Overflow,
    ) -> Subscription {
        let shared = &self.handle.shared;
        let (local, cursor) = LocalSub::new(pattern, interest, buffer, overflow);
        let local = Arc::new(local);
        shared.locals.add(Arc::clone(&local));
        shared.transport.announce().await;
        Subscription::new(local, cursor, Arc::clone(&self.handle))
    }

    /// Observes requests and replies whose topic matches `pattern`: a copy of each, as it
    /// travels between a requester and a server of this bus (this process included), with
    /// a buffer of 1024 and [`Overflow::DropOldest`]. [`Message::kind`] tells requests from
    /// replies, [`Message::requester`] and [`Message::correlation`] together pair them (each
    /// requester numbers its requests from the same start). A request and its reply come
    /// from two different peers, so a reply's copy can arrive before its request's: pair
    /// them by requester and correlation, not by order.
    ///
    /// Observing never takes anything away: the request still reaches its one server and
    /// the reply its requester, and an observer is never chosen as a server. Copies are
    /// sent without waiting for a slow observer (it loses its oldest copies, reported as
    /// [`Lagged`]); copies dropped on the way to a peer whose queue stayed full are counted
    /// in the sender's [`BusStats::dropped_sends`].
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no topic (`""`, `","`, `"a b"`:
    /// it would never see anything), as for [`subscribe_with`](Self::subscribe_with).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use ephemeral_bus::{Bus, MessageKind};
    ///
    /// let bus = Bus::open("doc-observe").await?;
    /// let _server = bus.serve("math.double", |m| async move { m.payload().repeat(2) }).await?;
    /// let mut copies = bus.observe("math.*").await?;
    ///
    /// let reply = bus.request("math.double", b"ab", Duration::from_secs(1)).await?;
    /// assert_eq!(reply.payload(), b"abab");
    /// let request = copies.next().await.unwrap()?;
    /// assert_eq!((request.kind(), request.payload()), (MessageKind::Request, &b"ab"[..]));
    /// let answer = copies.next().await.unwrap()?;
    /// assert_eq!(answer.kind(), MessageKind::Reply);
    /// assert_eq!(answer.correlation(), request.correlation());
    /// assert_eq!(answer.requester(), Some(bus.peer_id()));
    /// assert_eq!(request.requester(), Some(bus.peer_id()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe(&self, pattern: &str) -> Result<Subscription, BusError> {
        self.observe_with(pattern, Buffer::default()).await
    }

    /// [`observe`](Self::observe) with an explicit buffer (always [`Overflow::DropOldest`]:
    /// an observer never slows down the traffic it watches).
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no topic, as for
    /// [`subscribe_with`](Self::subscribe_with).
    pub async fn observe_with(
        &self,
        pattern: &str,
        buffer: Buffer,
    ) -> Result<Subscription, BusError> {
        let pattern_checked = Pattern::new(pattern);
        if pattern_checked.is_empty() {
            return Err(BusError::EmptyPattern {
                pattern: pattern.to_owned(),
            });
        }
        Ok(self
            .register(
                pattern_checked,
                Interest::Observe,
                buffer,
                Overflow::DropOldest,
            )
            .await)
    }

    /// Listens to the bus's own broadcasts on topics matching `pattern` (a namespace apart
    /// from user topics: no subscription or observer ever sees them).
    pub(crate) async fn listen_internal(
        &self,
        pattern: &str,
        buffer: Buffer,
        overflow: Overflow,
    ) -> Subscription {
        self.register(Pattern::new(pattern), Interest::Internal, buffer, overflow)
            .await
    }

    /// Sends one of the bus's own broadcasts on `topic` to every internal subscription
    /// matching it, in this process and others; returns how many it reached.
    pub(crate) async fn broadcast(
        &self,
        topic: &str,
        payload: impl IntoPayload,
    ) -> Result<usize, BusError> {
        let shared = &self.handle.shared;
        let mut message = Message::new(Name::new(topic)?, payload)
            .with_id(process_origin(), shared.locals.next_id());
        message.route = Some(Box::new(crate::message::Route::broadcast()));
        if message.payload.len() > shared.options.max_payload {
            return Err(BusError::PayloadTooLarge {
                len: message.payload.len(),
                max: shared.options.max_payload,
            });
        }
        let frame = Frame::Message(message);
        let mut bytes = Vec::new();
        frame::encode(&frame, &mut bytes);
        let Frame::Message(message) = frame else {
            unreachable!("constructed as a message just above")
        };
        let deadline = crate::after(shared.options.send_timeout);
        let local = shared.locals.broadcast(&message, Some(deadline)).await;
        let remote = shared
            .transport
            .send_internal(&message.topic, &bytes, deadline)
            .await;
        Ok(local + remote)
    }

    /// Waits until every connected peer has read everything this handle sent it so far
    /// (bounded by [`BusOptions::handshake_timeout`]; a peer that missed a handshake is not
    /// waited for until it answers again), so a short-lived process can publish and exit
    /// without its last messages dying in its queues.
    ///
    /// A peer acknowledges a subscription announcement after reading every frame queued
    /// before it on the same connection, so one announcement round trip is the barrier.
    pub async fn flush(&self) {
        self.handle.shared.transport.announce().await;
    }

    /// Every other peer connected now, with its subscriptions, served topics and observers,
    /// sorted by id (like Redis's `PUBSUB CHANNELS`, per peer).
    #[must_use]
    pub fn peer_list(&self) -> Vec<crate::PeerInfo> {
        self.handle.shared.transport.peer_list()
    }

    /// Subscribes and calls `callback` with every item on a task of its own. A panicking
    /// callback is caught and counted ([`BusStats::callback_panics`]); delivery carries on.
    /// Dropping the returned [`CallbackTask`] unsubscribes.
    ///
    /// # Errors
    ///
    /// [`BusError::EmptyPattern`] for a pattern that matches no name, as for
    /// [`subscribe_with`](Self::subscribe_with).
    pub async fn subscribe_fn<F>(
        &self,
        pattern: &str,
        mut callback: F,
    ) -> Result<CallbackTask, BusError>
    where
        F: FnMut(Result<Message, Lagged>) + Send + 'static,
    {
        let mut subscription = self.subscribe(pattern).await?;
        let shared = Arc::clone(&self.handle.shared);
        let timings = shared.handlers.register(HandlerKind::Callback, pattern);
        let task = tokio::spawn(async move {
            while let Some(item) = subscription.next().await {
                let started = Instant::now();
                let failed = std::panic::catch_unwind(AssertUnwindSafe(|| callback(item))).is_err();
                timings.record(started.elapsed(), failed);
                if failed {
                    shared.callback_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(CallbackTask { task })
    }

    /// This handle's counters.
    #[must_use]
    pub fn stats(&self) -> BusStats {
        let shared = &self.handle.shared;
        let (corrupt_frames, dropped_sends) = shared.transport.counters();
        BusStats {
            peers: shared.transport.peer_count(),
            published: shared.published.load(Ordering::Relaxed),
            corrupt_frames,
            dropped_sends,
            callback_panics: shared.callback_panics.load(Ordering::Relaxed),
            late_replies: shared.locals.replies.late.load(Ordering::Relaxed),
            // The bus's own listeners (retained state's notices, inspection) are not the
            // user's subscriptions.
            subscriptions: shared
                .locals
                .all()
                .iter()
                .filter(|s| s.interest != Interest::Internal)
                .map(|s| s.stats())
                .collect(),
            topics: shared.locals.topics.snapshot(),
            handlers: shared.handlers.snapshot(),
            uptime: shared.opened.elapsed(),
        }
    }

    /// The bus name.
    #[must_use]
    pub fn name(&self) -> &Name {
        &self.handle.shared.name
    }

    /// The bus directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.handle.shared.dir
    }

    /// This peer's id (its files in the directory are named after it).
    #[must_use]
    pub fn peer_id(&self) -> u64 {
        self.handle.shared.peer
    }

    /// How many other peers are connected now.
    #[must_use]
    pub fn peers(&self) -> usize {
        self.handle.shared.transport.peer_count()
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("Bus")
            .field("name", &shared.name.as_str())
            .field("dir", &shared.dir)
            .field("peer", &format_args!("{:016x}", shared.peer))
            .field("peers", &shared.transport.peer_count())
            .finish()
    }
}

/// The task running a [`Bus::subscribe_fn`] callback; dropping it unsubscribes.
#[derive(Debug)]
#[must_use = "dropping the CallbackTask unsubscribes at once"]
pub struct CallbackTask {
    task: JoinHandle<()>,
}

impl Drop for CallbackTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks that `headers` fit a bus frame (see [`BusError::HeadersTooLarge`]).
fn check_headers(headers: &[(Arc<str>, HeaderValue)]) -> Result<(), BusError> {
    let over =
        |what: String, len: usize, max: usize| Err(BusError::HeadersTooLarge { what, len, max });
    if headers.len() > crate::MAX_HEADERS {
        return over(
            "the number of headers".to_owned(),
            headers.len(),
            crate::MAX_HEADERS,
        );
    }
    for (key, value) in headers {
        if key.len() > crate::MAX_HEADER_KEY {
            let shown: String = key.chars().take(16).collect();
            return over(
                format!("the length of header key `{shown}…`"),
                key.len(),
                crate::MAX_HEADER_KEY,
            );
        }
        if let HeaderValue::Str(text) = value
            && text.len() > crate::MAX_HEADER_STR
        {
            return over(
                format!("the length of string header `{key}`"),
                text.len(),
                crate::MAX_HEADER_STR,
            );
        }
    }
    Ok(())
}
