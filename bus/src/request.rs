//! Request and response over the bus: `serve` and `request`, with correlation ids.
//!
//! A request on topic `t` travels as a message on `_req.t` to **one** server, chosen
//! round-robin (per requesting handle) among the peers serving `t`, this handle included;
//! the reply comes back on the requester's own `_reply.<peer>` topic carrying the request's
//! correlation id. A reply with no request waiting for it (it came after the timeout) is
//! dropped and counted ([`BusStats::late_replies`](crate::BusStats::late_replies)). When the
//! chosen server's connection ends before it replied (it left or died), the request fails
//! at once with [`BusError::PeerGone`] instead of waiting for the timeout.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{Buffer, HeaderValue, Name, Overflow, Pattern};
use futures::{FutureExt, StreamExt};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use crate::bus::Shared;
use crate::subscription::LocalSub;
use crate::transport::Transport;
use crate::{Bus, BusError, Message, Outgoing};

const REPLY_TO: &str = "reply-to";
const CORRELATION: &str = "correlation";
const STATUS: &str = "status";

/// The requester's side: waiting requests by correlation id.
#[derive(Default)]
pub(crate) struct Replies {
    pending: Mutex<HashMap<u64, oneshot::Sender<Message>>>,
    next: AtomicU64,
    round_robin: AtomicU64,
    pub(crate) late: AtomicU64,
    started: OnceCell<Name>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Replies {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes a waiting request when the request future ends, however it ends.
struct Pending<'a> {
    replies: &'a Replies,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.replies.pending).remove(&self.id);
    }
}

/// Starts, once per bus handle, the task that hands replies to waiting requests. It holds
/// the shared state, not the handle, so it never keeps the bus open; it ends when the bus
/// closes its subscriptions.
async fn reply_topic(shared: &Arc<Shared>) -> Result<Name, BusError> {
    let replies = &shared.replies;
    let name = replies
        .started
        .get_or_try_init(|| async {
            let topic = Name::new(&format!("_reply.{:016x}", shared.peer))?;
            let local = Arc::new(LocalSub::new(
                Pattern::new(&topic),
                Buffer::Unbounded,
                Overflow::DropOldest,
            ));
            shared.locals.add(Arc::clone(&local));
            shared.transport.announce().await;
            let weak = Arc::downgrade(shared);
            let task = tokio::spawn(async move {
                while let Some(item) = futures::stream::poll_fn(|cx| local.poll_next(cx))
                    .next()
                    .await
                {
                    let Some(shared) = weak.upgrade() else { break };
                    let Ok(message) = item else { continue };
                    let id = match message.header(CORRELATION) {
                        Some(HeaderValue::Int(id)) => *id as u64,
                        _ => continue,
                    };
                    let waiting = lock(&shared.replies.pending).remove(&id);
                    match waiting {
                        Some(tx) => {
                            // The requester may have given up in between: then it is late.
                            if tx.send(message).is_err() {
                                shared.replies.late.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        None => {
                            shared.replies.late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            *lock(&replies.task) = Some(task);
            Ok::<_, BusError>(topic)
        })
        .await?;
    Ok(name.clone())
}

/// A running server (see [`Bus::serve`]); dropping it stops serving.
#[derive(Debug)]
pub struct Server {
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Handler = dyn Fn(Message) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync;

impl Bus {
    /// Serves requests on `topic`: `handler` gets each request message and returns the reply
    /// payload. Requests are handled concurrently, each on a task of its own. A panicking
    /// handler is caught; the requester gets [`BusError::ServerFailed`] with its message.
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
        let topic = Name::new(topic)?;
        let handler: Arc<Handler> = Arc::new(move |m| Box::pin(handler(m)));
        let mut requests = self.subscribe(&format!("_req.{topic}")).await?;
        let bus = self.clone();
        let task = tokio::spawn(async move {
            while let Some(item) = requests.next().await {
                let Ok(request) = item else { continue };
                let Some(HeaderValue::Str(reply_to)) = request.header(REPLY_TO).cloned() else {
                    continue;
                };
                let Some(correlation) = request.header(CORRELATION).cloned() else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                let bus = bus.clone();
                tokio::spawn(async move {
                    let result = AssertUnwindSafe(handler(request)).catch_unwind().await;
                    let (status, payload) = match result {
                        Ok(payload) => ("ok", payload),
                        Err(panic) => ("error", panic_message(&*panic).into_bytes()),
                    };
                    if let Ok(reply) = Outgoing::new(&reply_to) {
                        let reply = reply
                            .payload(payload)
                            .header(CORRELATION, correlation)
                            .header(STATUS, status);
                        let _ = bus.publish_with(reply).await;
                    }
                });
            }
        });
        Ok(Server { task })
    }

    /// Sends a request to one server of `topic` and waits for its reply, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`BusError::NoServer`] when no peer serves `topic`, [`BusError::Timeout`] when no
    /// reply came in time, [`BusError::PeerGone`] when the chosen server left or died first,
    /// [`BusError::ServerFailed`] when its handler panicked, and the errors of
    /// [`publish`](Self::publish).
    pub async fn request(
        &self,
        topic: &str,
        payload: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let shared = &self.handle.shared;
        let request_topic = Name::new(&format!("_req.{}", Name::new(topic)?))?;
        let reply_to = reply_topic(shared).await?;

        // Servers subscribe to exactly `_req.<topic>`; a subscriber whose pattern merely
        // matches it (a `*` watcher) is not a server.
        let local = shared.locals.any_exact(request_topic.as_str());
        let remote = shared.transport.servers_of(&request_topic);
        let candidates = usize::from(local) + remote.len();
        if candidates == 0 {
            return Err(BusError::NoServer {
                topic: topic.to_owned(),
            });
        }
        let pick =
            (shared.replies.round_robin.fetch_add(1, Ordering::Relaxed) as usize) % candidates;

        let id = shared.replies.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&shared.replies.pending).insert(id, tx);
        let _pending = Pending {
            replies: &shared.replies,
            id,
        };
        let outgoing = Outgoing::new(&request_topic)?
            .payload(payload)
            .header(REPLY_TO, reply_to.as_str())
            .header(CORRELATION, id as i64);
        let (message, bytes) = self.build(outgoing)?;
        let give_up = crate::after(timeout);
        let deadline = crate::after(timeout.min(shared.options.send_timeout));
        let gone: Pin<Box<dyn Future<Output = ()> + Send>> = if local && pick == 0 {
            shared.locals.dispatch_one(&message, deadline).await;
            Box::pin(std::future::pending())
        } else {
            let peer = remote[pick - usize::from(local)];
            let gone = shared.transport.gone(peer);
            shared
                .transport
                .send_to(peer, &request_topic, &bytes, deadline)
                .await;
            Box::pin(gone)
        };
        tokio::select! {
            reply = rx => match reply {
                Ok(reply) if matches!(reply.header(STATUS), Some(HeaderValue::Str(s)) if &**s == "error") => {
                    Err(BusError::ServerFailed {
                        topic: topic.to_owned(),
                        message: reply.payload_str().unwrap_or("").to_owned(),
                    })
                }
                Ok(reply) => Ok(reply),
                Err(_) => Err(BusError::Closed),
            },
            () = gone => Err(BusError::PeerGone { topic: topic.to_owned() }),
            () = tokio::time::sleep_until(give_up) => Err(BusError::Timeout {
                topic: topic.to_owned(),
                after: timeout,
            }),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_owned())
}
