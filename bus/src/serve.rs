//! The server's side of request/reply: `serve`, `serve_stream` and the running [`Server`].
//!
//! A server registers with [`Interest::Serve`] for exactly its topic; requests reach it as
//! routed frames (never through a subscription), at most
//! [`ServeOptions::max_concurrent`] run at once, up to [`ServeOptions::max_queued`] more
//! wait in order, and the rest are refused at once ([`BusError::ServerBusy`] for their
//! requesters). Every request ends with exactly one final reply: the answer, the end of a
//! stream, a failure (a panicking handler), busy, or gone (the server stopped first).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use ephemeral::{Buffer, Name, Overflow, Pattern};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::BusHandle;
use crate::frame::Interest;
use crate::handlers::{HandlerCounters, HandlerKind};
use crate::message::{Leg, Route};
use crate::subscription::LocalSub;
use crate::sync::panic_message;
use bytes::Bytes;

use crate::{Bus, BusError, IntoPayload, Message, MessageKind, ReplyStatus, Subscription};

/// Options of [`Bus::serve_with`] and [`Bus::serve_stream_with`]: how many requests run and
/// wait at once.
///
/// # Examples
///
/// ```
/// use ephemeral_bus::ServeOptions;
///
/// // One request at a time (say, a resource that allows one user), ten more in line.
/// let options = ServeOptions::default().max_concurrent(1).max_queued(10);
/// assert_eq!(options.get_max_concurrent(), 1);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ServeOptions {
    max_concurrent: usize,
    max_queued: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_concurrent: 64,
            max_queued: 1024,
        }
    }
}

impl ServeOptions {
    /// How many requests run at once (default 64; at least 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// How many requests wait, in arrival order, while `max_concurrent` run (default 1024).
    /// A request arriving with the queue full is refused at once: its requester gets
    /// [`BusError::ServerBusy`]. Zero refuses every request that cannot start at once.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }

    /// The concurrency bound.
    #[must_use]
    pub fn get_max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// The queue bound.
    #[must_use]
    pub fn get_max_queued(&self) -> usize {
        self.max_queued
    }
}

/// A running server (see [`Bus::serve`]).
///
/// Dropping it stops serving at once: the other peers stop choosing it, requests waiting in
/// its queue and handlers still running are answered [`ReplyStatus::Gone`] (their
/// requesters get [`BusError::PeerGone`] and may retry elsewhere).
#[must_use = "dropping the Server stops serving at once"]
pub struct Server {
    topic: Name,
    local: Arc<LocalSub>,
    bus: Arc<BusHandle>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// The topic served.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Unregister now, so no peer chooses this server again; the task answers what it
        // still holds and ends.
        self.local.close();
        self.bus.shared.unsubscribe(self.local.id);
        self.stop.cancel();
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("topic", &self.topic.as_str())
            .field("running", &!self.task.is_finished())
            .finish()
    }
}

/// One reply's handler: the reply's bytes, or the text of the handler's error.
type OneFn =
    dyn Fn(Message) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>> + Send + Sync;
type StreamFn = dyn Fn(Message) -> BoxStream<'static, Vec<u8>> + Send + Sync;

/// What a server runs for each request.
#[derive(Clone)]
enum Handler {
    /// One reply ([`Bus::serve`]).
    One(Arc<OneFn>),
    /// A stream of replies ([`Bus::serve_stream`]).
    Stream(Arc<StreamFn>),
}

impl Bus {
    /// Serves requests on `topic`: `handler` gets each request message and returns the reply
    /// payload, with the default [`ServeOptions`] (64 at once, 1024 waiting).
    ///
    /// A panicking handler is caught; the requester gets [`BusError::ServerFailed`] with its
    /// message.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use ephemeral_bus::Bus;
    ///
    /// let bus = Bus::open("doc-serve-request").await?;
    /// let _server = bus
    ///     .serve("math.double", |request| async move {
    ///         let n: u64 = request.payload_str().unwrap_or("0").parse().unwrap_or(0);
    ///         (n * 2).to_string().into_bytes()
    ///     })
    ///     .await?;
    /// let reply = bus.request("math.double", b"21", Duration::from_secs(1)).await?;
    /// assert_eq!(reply.payload_str(), Some("42"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve<F, Fut>(&self, topic: &str, handler: F) -> Result<Server, BusError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        self.serve_with(topic, ServeOptions::default(), handler)
            .await
    }

    /// [`serve`](Self::serve) with options.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    pub async fn serve_with<F, Fut>(
        &self,
        topic: &str,
        options: ServeOptions,
        handler: F,
    ) -> Result<Server, BusError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        // A handler that cannot fail: `try_serve_with`'s, never answering with an error.
        self.try_serve_with(topic, options, move |m| {
            let reply = handler(m);
            async move { Ok::<_, std::convert::Infallible>(reply.await) }
        })
        .await
    }

    /// [`serve`](Self::serve) for a handler that can fail, as a NATS handler can
    /// ([`Nats::serve`](https://docs.rs/ephemeral-nats)): it returns the reply payload or an
    /// error, whose text the requester gets as [`BusError::ServerFailed`], as it would a
    /// panic's (counted in the handler's [`errors`](crate::HandlerStats)); the server
    /// carries on. Default [`ServeOptions`].
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use ephemeral_bus::{Bus, BusError};
    ///
    /// let bus = Bus::open("doc-try-serve").await?;
    /// let _server = bus
    ///     .try_serve("math.double", |request| async move {
    ///         let text = request.payload_str().unwrap_or_default().to_owned();
    ///         let n: u64 = text.parse().map_err(|e| format!("`{text}` is not a number: {e}"))?;
    ///         Ok::<_, String>((n * 2).to_string())
    ///     })
    ///     .await?;
    /// let reply = bus.request("math.double", b"21", Duration::from_secs(1)).await?;
    /// assert_eq!(reply.payload_str(), Some("42"));
    /// let refused = bus.request("math.double", b"x", Duration::from_secs(1)).await;
    /// assert!(matches!(refused, Err(BusError::ServerFailed { message, .. }) if message.contains("not a number")));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_serve<F, Fut, T, E>(&self, topic: &str, handler: F) -> Result<Server, BusError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: IntoPayload + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.try_serve_with(topic, ServeOptions::default(), handler)
            .await
    }

    /// [`try_serve`](Self::try_serve) with options.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    pub async fn try_serve_with<F, Fut, T, E>(
        &self,
        topic: &str,
        options: ServeOptions,
        handler: F,
    ) -> Result<Server, BusError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: IntoPayload + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let handler = Handler::One(Arc::new(move |m| {
            let reply = handler(m);
            Box::pin(async move {
                reply
                    .await
                    .map(IntoPayload::into_payload)
                    .map_err(|e| e.to_string())
            })
        }));
        self.start_server(topic, options, handler).await
    }

    /// Serves requests on `topic` with a stream of replies: `handler` gets each request and
    /// returns a stream; each item is one reply, and the requester's
    /// [`request_stream`](Self::request_stream) ends when the stream ends. Default
    /// [`ServeOptions`]; a running stream counts against `max_concurrent` until it ends.
    ///
    /// A handler that panics (making or polling the stream) ends the requester's stream
    /// with [`BusError::ServerFailed`]. A requester that stops reading for longer than
    /// [`send_timeout`](crate::BusOptions::send_timeout), or drops its stream, stops the
    /// handler.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    pub async fn serve_stream<F, S>(&self, topic: &str, handler: F) -> Result<Server, BusError>
    where
        F: Fn(Message) -> S + Send + Sync + 'static,
        S: futures_core::Stream<Item = Vec<u8>> + Send + 'static,
    {
        self.serve_stream_with(topic, ServeOptions::default(), handler)
            .await
    }

    /// [`serve_stream`](Self::serve_stream) with options.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] for a bad topic.
    pub async fn serve_stream_with<F, S>(
        &self,
        topic: &str,
        options: ServeOptions,
        handler: F,
    ) -> Result<Server, BusError>
    where
        F: Fn(Message) -> S + Send + Sync + 'static,
        S: futures_core::Stream<Item = Vec<u8>> + Send + 'static,
    {
        let handler = Handler::Stream(Arc::new(move |m| handler(m).boxed()));
        self.start_server(topic, options, handler).await
    }

    async fn start_server(
        &self,
        topic: &str,
        options: ServeOptions,
        handler: Handler,
    ) -> Result<Server, BusError> {
        let topic = Name::new(topic)?;
        let requests = self
            .register(
                Pattern::new(&topic),
                Interest::Serve,
                Buffer::default(),
                Overflow::Wait,
            )
            .await;
        let local = Arc::clone(&requests.local);
        let stop = CancellationToken::new();
        let timings = self
            .handle
            .shared
            .handlers
            .register(HandlerKind::Serve, &topic);
        let task = tokio::spawn(
            ServerLoop {
                bus: self.clone(),
                timings,
                handler,
                options,
                stop: stop.clone(),
                queue: VecDeque::new(),
                running: JoinSet::new(),
                in_flight: HashMap::new(),
            }
            .run(requests),
        );
        Ok(Server {
            topic,
            local,
            bus: Arc::clone(&self.handle),
            stop,
            task,
        })
    }

    /// Sends the reply `status` with `payload` to the requester of `request`; returns
    /// whether the requester took it.
    ///
    /// A reply over the bus's max payload is not lost silently (the requester would wait
    /// for its timeout): the requester is answered `Failed`, with what went wrong.
    async fn reply(&self, request: &Message, status: ReplyStatus, payload: Bytes) -> bool {
        let Some(route) = request.route() else {
            return false;
        };
        let max = self.handle.shared.options.max_payload;
        let (status, payload) = if payload.len() > max {
            tracing::warn!(
                topic = %request.topic,
                bytes = payload.len(),
                max,
                "a reply over the bus's max payload was not sent; the requester is told"
            );
            let message = format!(
                "its reply of {} bytes is over the bus's max payload of {max} bytes: reply with less, or open every peer of the bus with a larger BusOptions::max_payload",
                payload.len()
            );
            (ReplyStatus::Failed, Bytes::from(message))
        } else {
            (status, payload)
        };
        let reply = self.routed(
            request.topic.clone(),
            payload,
            Route {
                to: route.from,
                from: self.handle.shared.peer,
                correlation: route.correlation,
                leg: Leg::Reply(status),
            },
        );
        let deadline = crate::after(self.handle.shared.options.send_timeout);
        match self.send_routed(&reply, deadline).await {
            Ok(delivered) => delivered,
            Err(error) => {
                // The payload fits (checked above): only a topic too long for a frame is
                // left, which the request itself could not have had.
                tracing::warn!(topic = %request.topic, %error, "a reply could not be sent");
                false
            }
        }
    }
}

/// The task of one server: takes requests, runs them within the bounds, answers the rest.
struct ServerLoop {
    bus: Bus,
    timings: Arc<HandlerCounters>,
    handler: Handler,
    options: ServeOptions,
    stop: CancellationToken,
    /// Requests waiting for a permit, in arrival order (at most `max_queued`).
    queue: VecDeque<Message>,
    running: JoinSet<()>,
    /// Running requests by (requester, correlation), to stop one on its requester's cancel.
    in_flight: HashMap<(u64, u64), CancellationToken>,
}

impl ServerLoop {
    async fn run(mut self, mut requests: Subscription) {
        let permits = Arc::new(Semaphore::new(self.options.max_concurrent));
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned(), if !self.queue.is_empty() => {
                    let (Ok(permit), Some(request)) = (permit, self.queue.pop_front()) else {
                        break;
                    };
                    self.start(request, permit);
                }
                Some(_) = self.running.join_next(), if !self.running.is_empty() => {
                    self.in_flight.retain(|_, token| !token.is_cancelled());
                }
                item = requests.next() => match item {
                    None => break,
                    Some(Err(_)) => {}
                    Some(Ok(request)) => self.take(request, &permits).await,
                },
            }
        }
        // Stopped: everything still held is answered, so no requester waits for a timeout.
        self.stop.cancel();
        while let Some(request) = self.queue.pop_front() {
            self.bus
                .reply(&request, ReplyStatus::Gone, Bytes::new())
                .await;
        }
        while let Some(Ok(request)) = requests.try_recv() {
            if request.kind() == MessageKind::Request {
                self.bus
                    .reply(&request, ReplyStatus::Gone, Bytes::new())
                    .await;
            }
        }
        while self.running.join_next().await.is_some() {}
    }

    /// A request (or a cancel) arrived: run it, queue it, or refuse it.
    async fn take(&mut self, request: Message, permits: &Arc<Semaphore>) {
        let Some(route) = request.route() else { return };
        if route.leg == Leg::Cancel {
            if let Some(token) = self.in_flight.remove(&(route.from, route.correlation)) {
                token.cancel();
            }
            self.queue.retain(|r| {
                r.route()
                    .is_none_or(|q| (q.from, q.correlation) != (route.from, route.correlation))
            });
            return;
        }
        if self.queue.is_empty()
            && let Ok(permit) = Arc::clone(permits).try_acquire_owned()
        {
            self.start(request, permit);
        } else if self.queue.len() < self.options.max_queued {
            self.queue.push_back(request);
        } else {
            self.bus
                .reply(&request, ReplyStatus::Busy, Bytes::new())
                .await;
        }
    }

    fn start(&mut self, request: Message, permit: OwnedSemaphorePermit) {
        let Some(route) = request.route() else { return };
        let cancel = self.stop.child_token();
        self.in_flight
            .insert((route.from, route.correlation), cancel.clone());
        let bus = self.bus.clone();
        let handler = self.handler.clone();
        let stop = self.stop.clone();
        let timings = Arc::clone(&self.timings);
        self.running.spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            tokio::select! {
                failed = handle(&bus, &handler, &request) => timings.record(started.elapsed(), failed),
                () = cancel.cancelled() => {
                    // Stopped by the server's drop: the requester may retry elsewhere. (A
                    // requester's own cancel needs no answer: nobody waits for one.)
                    if stop.is_cancelled() {
                        bus.reply(&request, ReplyStatus::Gone, Bytes::new()).await;
                    }
                }
            }
            // Marks the request finished, so the loop forgets it.
            cancel.cancel();
        });
    }
}

/// Runs the handler for one request and sends its replies; returns whether it panicked.
#[tracing::instrument(level = "debug", name = "bus.serve", skip_all, fields(topic = %request.topic, bytes = request.payload.len()))]
async fn handle(bus: &Bus, handler: &Handler, request: &Message) -> bool {
    match handler {
        Handler::One(handler) => {
            let made = std::panic::catch_unwind(AssertUnwindSafe(|| handler(request.clone())));
            let result = match made {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match result {
                Ok(Ok(payload)) => {
                    bus.reply(request, ReplyStatus::Ok, payload).await;
                    false
                }
                Ok(Err(error)) => {
                    bus.reply(request, ReplyStatus::Failed, Bytes::from(error))
                        .await;
                    true
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    bus.reply(request, ReplyStatus::Failed, Bytes::from(message))
                        .await;
                    true
                }
            }
        }
        Handler::Stream(handler) => {
            let mut stream =
                match std::panic::catch_unwind(AssertUnwindSafe(|| handler(request.clone()))) {
                    Ok(stream) => stream,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        bus.reply(request, ReplyStatus::Failed, Bytes::from(message))
                            .await;
                        return true;
                    }
                };
            loop {
                match AssertUnwindSafe(stream.next()).catch_unwind().await {
                    Ok(Some(item)) => {
                        if !bus
                            .reply(request, ReplyStatus::Item, Bytes::from(item))
                            .await
                        {
                            // The requester is gone or stopped reading: stop producing.
                            return false;
                        }
                    }
                    Ok(None) => {
                        bus.reply(request, ReplyStatus::End, Bytes::new()).await;
                        return false;
                    }
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        bus.reply(request, ReplyStatus::Failed, Bytes::from(message))
                            .await;
                        return true;
                    }
                }
            }
        }
    }
}
