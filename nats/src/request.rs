//! Requests and replies over NATS queue groups: `serve` and `request`.
//!
//! A request on topic `t` travels on subject `<prefix>.q.<t>`; every [`Nats::serve`] of `t`
//! joins the queue group `<prefix>`, so NATS hands each request to exactly one server, on
//! whichever machine. The reply goes to the requester's inbox, with a [`STATUS`] header:
//! `ok`, `error` when the handler returned an error or panicked (the payload then holds
//! its message), or `stopped` when the server was dropped before handling the request
//! (the requester's [`NatsError::ServerStopped`]).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_nats::client::RequestErrorKind;
use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use ephemeral::Name;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::headers::{self, STATUS};
use crate::message::PayloadBytes;
use crate::subject::{self, REQUESTS};
use crate::{Message, Nats, NatsError, Outgoing};

/// The size of a reply's header block: `NATS/1.0`, `bus.status: error`, the blank line.
const REPLY_HEADER_LEN: usize = 12 + STATUS.len() + 4 + "error".len();

/// Requests one [`Server`] handles at once; more wait in the client (and past its buffer,
/// NATS drops them for this server, and their requesters time out).
pub const MAX_CONCURRENT_REQUESTS: usize = 256;

/// The reply status of a request refused because its server was dropped before handling it.
const STOPPED: &str = "stopped";

#[derive(Debug, Default)]
struct ServerCounters {
    handled: AtomicU64,
    failed: AtomicU64,
}

/// How a server goes on with the requests it has received and not started: ordered, so a
/// server only moves forward (a `stop` whose future is dropped becomes a drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Serving,
    /// `stop`: handle them all, then end.
    Draining,
    /// Dropped: answer each at once with [`STOPPED`], then end.
    Refusing,
}

/// A running server (see [`Nats::serve`]). It ends in one of two ways:
///
/// * [`stop`](Self::stop)`.await`, the graceful end: stops taking requests, then handles
///   every request it had already received (waiting for a free handler slot) and returns
///   once each is answered and the NATS server knows it no longer serves.
/// * Dropping it, the quick end: stops taking requests at once; requests being handled
///   finish and are answered, and each request received but not started is answered at once
///   with [`NatsError::ServerStopped`] (its handler never ran, so the requester may send it
///   again), never left to wait out its timeout. A `stop` whose future is dropped (say, by
///   a `tokio::time::timeout` around it) ends the same way.
///
/// Either way the unsubscription is sent before `drop` (or the first poll of `stop`)
/// returns: a request sent afterwards through the same connection (any clone of the
/// [`Nats`] handle that served) goes to another server of the topic, or fails at once with
/// [`NatsError::NoServer`]. Another connection learns of it a moment later, when the server
/// has read the unsubscription; a request it sends in that moment may still be routed here
/// and time out. [`stop`](Self::stop) waits for that moment to pass.
#[must_use = "dropping the server stops serving at once"]
pub struct Server {
    topic: Name,
    counters: Arc<ServerCounters>,
    /// The queue subscription, read by the task. Ending sends its unsubscription from here
    /// at once, ahead of anything this connection sends later, and leaves the subscriber
    /// with the task, which reads what it holds until it ends.
    requests: Arc<std::sync::Mutex<Option<async_nats::Subscriber>>>,
    /// Tells the task how to go on; moves forward only.
    mode: tokio::sync::watch::Sender<Mode>,
    /// The unsubscription was sent.
    unsubscribed: bool,
    nats: Nats,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// The topic served.
    #[must_use]
    pub fn topic(&self) -> &Name {
        &self.topic
    }

    /// Requests answered so far (failures included; refusals by a dropped server not).
    #[must_use]
    pub fn handled(&self) -> u64 {
        self.counters.handled.load(Ordering::Relaxed)
    }

    /// Requests whose handler returned an error or panicked.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Stops serving, gracefully: takes no new request, handles and answers every request
    /// already received (up to [`MAX_CONCURRENT_REQUESTS`] at once, as before), and returns
    /// once each is answered and the NATS server knows (a round trip, at most the connect
    /// timeout): a request sent after this returns, from any connection, goes to another
    /// server of the topic or fails at once with [`NatsError::NoServer`].
    ///
    /// It lasts as long as the slowest handler: to bound it, wrap it in
    /// `tokio::time::timeout`; when that drops it, the server ends as if dropped (what has
    /// not started is answered [`NatsError::ServerStopped`], running handlers finish).
    /// While the connection is down (or when it drops meanwhile) it returns at once and
    /// ends as a drop too: the refusals are sent when the connection is back, and
    /// requesters that gave up by then do not hear them.
    pub async fn stop(mut self) {
        self.end(Mode::Draining);
        let mut connected = self.nats.inner.state.connected();
        if let Some(task) = self.task.as_mut() {
            tokio::select! {
                _ = task => {}
                // The unsubscription cannot complete while the connection is down (the
                // subscriber would hold its requests until it is back): end as a drop.
                _ = connected.wait_for(|up| !*up) => return,
            }
        }
        self.task = None;
        self.nats.round_trip().await;
    }

    /// Moves to `mode` and, the first time, sends the unsubscription.
    fn end(&mut self, mode: Mode) {
        self.mode.send_if_modified(|now| {
            let forward = mode > *now;
            if forward {
                *now = mode;
            }
            forward
        });
        if std::mem::replace(&mut self.unsubscribed, true) {
            return;
        }
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(subscriber) = requests.as_mut() {
            // `drain` unsubscribes and leaves what the subscriber holds readable, then
            // ends it; the command is queued on the connection at once (it is only ever
            // pending when the client's command queue is full, or closed).
            if subscriber
                .drain()
                .now_or_never()
                .is_none_or(|sent| sent.is_err())
            {
                // Dropping it unsubscribes (the client retries in the background); what
                // it held is lost to a full or closed client, as before.
                requests.take();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.end(Mode::Refusing);
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("topic", &self.topic)
            .field("handled", &self.handled())
            .field("failed", &self.failed())
            .finish()
    }
}

impl Nats {
    /// Serves requests on `topic`: `handler` gets each request and returns the reply payload,
    /// or an error whose text the requester gets as [`NatsError::HandlerFailed`]. A panicking
    /// handler is caught and answered the same way. Requests are handled concurrently, up to
    /// [`MAX_CONCURRENT_REQUESTS`] at once.
    ///
    /// Servers of one topic on any machine share the load: NATS gives each request to one of
    /// them (a queue group). Returns once the server knows the subscription, so a request
    /// sent after this returns finds it.
    ///
    /// # Errors
    ///
    /// [`NatsError::Name`] for a bad topic, [`NatsError::Closed`] once the client is closed.
    pub async fn serve<F, Fut, T, E>(&self, topic: &str, handler: F) -> Result<Server, NatsError>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<PayloadBytes> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let topic = Name::new(topic)?;
        let subject = subject::subject(&self.inner.prefix, REQUESTS, &topic);
        let subscriber = self
            .inner
            .client
            .queue_subscribe(subject, self.inner.prefix.to_string())
            .await
            .map_err(|e| NatsError::subscribe("serve", &e))?;
        let requests = Arc::new(std::sync::Mutex::new(Some(subscriber)));
        let task_requests = Arc::clone(&requests);
        let handler = Arc::new(handler);
        let counters = Arc::new(ServerCounters::default());
        let client = self.inner.client.clone();
        let task_counters = Arc::clone(&counters);
        let task_topic = topic.clone();
        let (mode, mut mode_rx) = tokio::sync::watch::channel(Mode::Serving);
        let task = tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
            // The lock is held only while polling, never across an await.
            let next = || {
                futures::future::poll_fn(|cx| {
                    match task_requests
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_mut()
                    {
                        Some(subscriber) => subscriber.poll_next_unpin(cx),
                        None => std::task::Poll::Ready(None),
                    }
                })
            };
            while let Some(raw) = next().await {
                let Some(reply_to) = raw.reply.clone() else {
                    continue;
                };
                // Dropped: what has not started is refused at once, never left to time out.
                let permit = if *mode_rx.borrow() == Mode::Refusing {
                    None
                } else {
                    tokio::select! {
                        permit = Arc::clone(&permits).acquire_owned() => permit.ok(),
                        _ = mode_rx.wait_for(|m| *m == Mode::Refusing) => None,
                    }
                };
                let Some(permit) = permit else {
                    let mut map = HeaderMap::new();
                    map.insert(STATUS, STOPPED);
                    let _ = client
                        .publish_with_headers(reply_to, map, Bytes::new())
                        .await;
                    continue;
                };
                let (request, _) = to_message(task_topic.clone(), raw);
                let handler = Arc::clone(&handler);
                let client = client.clone();
                let counters = Arc::clone(&task_counters);
                let span = tracing::debug_span!(
                    "nats.serve",
                    topic = %task_topic,
                    bytes = request.payload().len()
                );
                let reply = async move {
                    let result = AssertUnwindSafe(handler(request)).catch_unwind().await;
                    let (mut status, mut payload) = match result {
                        Ok(Ok(payload)) => ("ok", payload.into().0),
                        Ok(Err(error)) => ("error", Bytes::from(error.to_string())),
                        Err(panic) => ("error", Bytes::from(panic_message(&*panic))),
                    };
                    // A reply the server would refuse must not turn into a silent timeout.
                    let max = client.max_payload();
                    if payload.len() + REPLY_HEADER_LEN > max {
                        let error = NatsError::PayloadTooLarge {
                            len: payload.len() + REPLY_HEADER_LEN,
                            max,
                        };
                        status = "error";
                        payload = Bytes::from(format!("the reply could not be sent: {error}"));
                    }
                    // Statistics only: Relaxed.
                    counters.handled.fetch_add(1, Ordering::Relaxed);
                    if status == "error" {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut map = HeaderMap::new();
                    map.insert(STATUS, status);
                    // A requester that gave up is not listening any more: nothing to do.
                    let _ = client.publish_with_headers(reply_to, map, payload).await;
                    drop(permit);
                };
                tokio::spawn(tracing::Instrument::instrument(reply, span));
            }
            // The subscription ended (it was drained, or the client closed): once every
            // handler has answered, the server is done. A permit is given back only when
            // its reply was sent.
            let _ = permits.acquire_many(MAX_CONCURRENT_REQUESTS as u32).await;
        });
        self.round_trip().await;
        Ok(Server {
            topic,
            counters,
            requests,
            mode,
            unsubscribed: false,
            nats: self.clone(),
            task: Some(task),
        })
    }

    /// Sends a request to one server of `topic` and waits for its reply, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`NatsError::NoServer`] at once when nobody serves `topic`, [`NatsError::Timeout`] when
    /// no reply came in time (the server is slow, or the connection dropped meanwhile),
    /// [`NatsError::HandlerFailed`] when the handler failed (or its reply was larger than the
    /// server accepts), and the errors of [`publish`](Self::publish)
    /// ([`NatsError::Disconnected`] at once while the connection is down).
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<PayloadBytes>,
        timeout: Duration,
    ) -> Result<Message, NatsError> {
        self.request_with(Outgoing::new(topic)?.payload(payload.into()), timeout)
            .await
    }

    /// [`request`](Self::request) with headers (the handler sees them on its [`Message`]).
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    #[tracing::instrument(level = "debug", name = "nats.request", skip_all, fields(topic = tracing::field::Empty, bytes = tracing::field::Empty, timeout_ms = timeout.as_millis() as u64))]
    pub async fn request_with(
        &self,
        out: Outgoing,
        timeout: Duration,
    ) -> Result<Message, NatsError> {
        let inner = &self.inner;
        let out = out.into_parts();
        record_sizes(&out);
        let map = headers::encode(&out, SystemTime::now());
        let len = out.payload.len() + headers::wire_len(&map);
        let max = inner.client.max_payload();
        if len > max {
            return Err(NatsError::PayloadTooLarge { len, max });
        }
        if !inner.state.is_connected() {
            return Err(inner.state.down(&out.topic));
        }
        let subject = subject::subject(&inner.prefix, REQUESTS, &out.topic);
        let request = Request::new()
            .payload(out.payload)
            .headers(map)
            .timeout(Some(timeout));
        let topic = out.topic;
        let reply = inner
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::NoResponders => NatsError::NoServer {
                    topic: topic.to_string(),
                },
                RequestErrorKind::TimedOut => NatsError::Timeout {
                    topic: topic.to_string(),
                    after: timeout,
                },
                RequestErrorKind::MaxPayloadExceeded => NatsError::PayloadTooLarge {
                    len,
                    max: inner.client.max_payload(),
                },
                _ => NatsError::Client {
                    op: "request",
                    message: e.to_string(),
                },
            })?;
        let (reply, status) = to_message(topic.clone(), reply);
        match status {
            ReplyStatus::Ok => Ok(reply),
            ReplyStatus::Failed => Err(NatsError::HandlerFailed {
                topic: topic.to_string(),
                message: reply.payload_str().unwrap_or("").to_owned(),
            }),
            ReplyStatus::Stopped => Err(NatsError::ServerStopped {
                topic: topic.to_string(),
            }),
        }
    }
}

/// What a reply's [`STATUS`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyStatus {
    Ok,
    /// The handler failed or panicked.
    Failed,
    /// The server was dropped before handling the request.
    Stopped,
}

/// A received request or reply as a [`Message`] on `topic`, and what its status says.
fn to_message(topic: Name, raw: async_nats::Message) -> (Message, ReplyStatus) {
    let mut decoded = headers::decode(raw.headers.as_ref());
    let message = decoded.message(topic, raw.payload.clone());
    let status = match decoded.status.as_deref() {
        Some("error") => ReplyStatus::Failed,
        Some(STOPPED) => ReplyStatus::Stopped,
        _ => ReplyStatus::Ok,
    };
    (message, status)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| format!("handler panicked: {s}"))
        .or_else(|| {
            panic
                .downcast_ref::<String>()
                .map(|s| format!("handler panicked: {s}"))
        })
        .unwrap_or_else(|| "handler panicked".to_owned())
}

/// Fills the current span's `topic` and `bytes` (declared empty by `#[instrument]`, as the
/// outgoing message's parts are private until it is taken apart).
pub(crate) fn record_sizes(out: &ephemeral_bus::OutgoingParts) {
    let span = tracing::Span::current();
    span.record("topic", out.topic.as_str());
    span.record("bytes", out.payload.len());
}
