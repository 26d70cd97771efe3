//! The requester's side of request/reply: `request` and `request_stream`.
//!
//! A request travels to **one** server of its topic, a peer that registered with
//! [`Bus::serve`] or [`Bus::serve_stream`] (this handle included); subscribers and observers
//! are never chosen. Requests and replies are routed frames, not messages on topics: no user
//! topic is taken by them, and observers ([`Bus::observe`]) get copies. The server is chosen
//! round-robin per requesting handle, starting at a random server, so one-shot requesters
//! (a CLI call each) spread over the servers too. When the chosen server's connection ends
//! before its reply (it left or died), the request fails at once with
//! [`BusError::PeerGone`] instead of waiting for the timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ephemeral::Name;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use crate::bus::BusHandle;
use crate::frame::{self, MessageRef};
use crate::message::{Leg, Route};
use crate::replies::Waiter;
use crate::router::Routed;
use crate::transport::Transport;
use crate::{Bus, BusError, IntoPayload, Message, ReplyStatus, process_origin};

/// How many replies of a stream wait for its reader before the server is held back.
const STREAM_BUFFER: usize = 64;

type Gone = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A request sent and registered: what its caller waits on besides the replies.
struct Sent {
    /// Unregisters the request when dropped.
    guard: Registered,
    /// Resolves when the chosen server's connection ends (never, for a server here).
    gone: Gone,
    /// The chosen server.
    server: u64,
}

/// A registered request; dropping it unregisters it (however the request ends).
struct Registered {
    bus: Arc<BusHandle>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.bus.shared.locals.replies.remove(self.id);
    }
}

impl Bus {
    /// Sends a request to one server of `topic` and waits for its reply, at most `timeout`.
    ///
    /// A server of a stream ([`serve_stream`](Self::serve_stream)) answers with its first
    /// item; its next item, which nobody waits for, tells it to stop. So does the first item
    /// of a stream that comes after the request gave up (timed out, or this future was
    /// dropped). A plain server's handler runs to its end either way; its late reply is
    /// counted in [`BusStats::late_replies`](crate::BusStats::late_replies).
    ///
    /// A server whose process is stopped (SIGSTOP, a debugger) still has its connection, so
    /// it is still chosen in its turn, and a request sent to it ends with
    /// [`BusError::Timeout`]: only a server that left or died is known to be gone.
    ///
    /// # Errors
    ///
    /// [`BusError::NoServer`] when no peer serves `topic`, [`BusError::Timeout`] when no
    /// reply came in time, [`BusError::PeerGone`] when the chosen server left, died or
    /// stopped first, [`BusError::ServerFailed`] when its handler panicked,
    /// [`BusError::ServerBusy`] when it refused the request (see
    /// [`ServeOptions`](crate::ServeOptions)), and the errors of [`publish`](Self::publish).
    #[tracing::instrument(level = "debug", name = "bus.request", skip_all, fields(topic = topic, bytes = payload.as_payload().len(), timeout_ms = timeout.as_millis() as u64))]
    pub async fn request(
        &self,
        topic: &str,
        payload: impl IntoPayload,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let topic = Name::new(topic)?;
        let (tx, rx) = oneshot::channel();
        let sent = self
            .send_request(&topic, payload.into_payload(), Waiter::One(tx), timeout)
            .await?;
        let Sent { guard, gone, .. } = sent;
        let result = tokio::select! {
            reply = rx => match reply {
                Ok(reply) => answer(&topic, reply),
                Err(_) => Err(BusError::Closed),
            },
            () = gone => Err(BusError::PeerGone { topic: topic.to_string() }),
            () = tokio::time::sleep(timeout) => Err(BusError::Timeout {
                topic: topic.to_string(),
                after: timeout,
            }),
        };
        drop(guard);
        result
    }

    /// Sends a request to one server of `topic` and returns the stream of its replies: the
    /// items of a [`serve_stream`](Self::serve_stream) server, or the one reply of a
    /// [`serve`](Self::serve) server. The stream ends after the server's last item.
    ///
    /// `timeout` bounds each wait: for the first reply, and between two replies. A server
    /// that dies, leaves or stops mid-stream ends the stream with
    /// [`BusError::PeerGone`], never a hang; a handler that panics ends it with
    /// [`BusError::ServerFailed`]. Replies already received are yielded first.
    ///
    /// Up to 64 replies wait for the reader; past that the server is held back (through
    /// the socket, as a full [`Overflow::Wait`](crate::Overflow::Wait) subscription holds
    /// back a publisher), and a server held back longer than its
    /// [`send_timeout`](crate::BusOptions::send_timeout) stops the stream (the reader then
    /// sees the timeout). Dropping the stream before its end tells the server to stop; after
    /// a timeout, the next item, which nobody waits for, does.
    ///
    /// # Errors
    ///
    /// [`BusError::NoServer`] when no peer serves `topic`, and the errors of
    /// [`publish`](Self::publish); later errors arrive as items of the stream.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use futures::StreamExt;
    /// use ephemeral_bus::Bus;
    ///
    /// let bus = Bus::open("doc-request-stream").await?;
    /// let _server = bus
    ///     .serve_stream("count.to", |request| {
    ///         let n: u8 = request.payload_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    ///         futures::stream::iter((1..=n).map(|i| i.to_string().into_bytes()))
    ///     })
    ///     .await?;
    /// let replies = bus.request_stream("count.to", b"3", Duration::from_secs(1)).await?;
    /// let numbers: Vec<String> = replies
    ///     .map(|reply| reply.unwrap().payload_str().unwrap().to_owned())
    ///     .collect()
    ///     .await;
    /// assert_eq!(numbers, ["1", "2", "3"]);
    /// # Ok(())
    /// # }
    /// ```
    #[tracing::instrument(level = "debug", name = "bus.request", skip_all, fields(topic = topic, bytes = payload.as_payload().len(), timeout_ms = timeout.as_millis() as u64, stream = true))]
    pub async fn request_stream(
        &self,
        topic: &str,
        payload: impl IntoPayload,
        timeout: Duration,
    ) -> Result<ReplyStream, BusError> {
        let topic = Name::new(topic)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let sent = self
            .send_request(&topic, payload.into_payload(), Waiter::Stream(tx), timeout)
            .await?;
        Ok(ReplyStream {
            replies: rx,
            gone: sent.gone,
            idle: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            topic,
            server: sent.server,
            done: false,
            guard: Some(sent.guard),
        })
    }

    /// Chooses a server, registers `waiter` and sends the request.
    async fn send_request(
        &self,
        topic: &Name,
        payload: Bytes,
        waiter: Waiter,
        timeout: Duration,
    ) -> Result<Sent, BusError> {
        let shared = &self.handle.shared;
        let max = shared.options.max_payload;
        if payload.len() > max {
            return Err(BusError::PayloadTooLarge {
                len: payload.len(),
                max,
            });
        }
        let me = shared.peer;
        let local = shared.locals.server(topic).is_some();
        let remote = shared.transport.servers_of(topic);
        let candidates = usize::from(local) + remote.len();
        if candidates == 0 {
            return Err(BusError::NoServer {
                topic: topic.to_string(),
            });
        }
        // Relaxed: only spreads requests; any interleaving of two requesters is fine.
        let turn = shared.round_robin.fetch_add(1, Ordering::Relaxed);
        let pick = (turn % candidates as u64) as usize;
        let server = if local && pick == 0 {
            me
        } else {
            remote[pick - usize::from(local)]
        };
        let id = shared.locals.replies.register(waiter);
        let guard = Registered {
            bus: Arc::clone(&self.handle),
            id,
        };
        let gone: Gone = if server == me {
            Box::pin(std::future::pending())
        } else {
            Box::pin(shared.transport.gone(server))
        };
        let request = self.routed(
            topic.clone(),
            payload,
            Route {
                to: server,
                from: me,
                correlation: id,
                leg: Leg::Request,
            },
        );
        let deadline = crate::after(timeout.min(shared.options.send_timeout));
        if !self.send_routed(&request, deadline).await? && server == me {
            // The local server stopped between the choice and the delivery.
            return Err(BusError::PeerGone {
                topic: topic.to_string(),
            });
        }
        Ok(Sent {
            guard,
            gone,
            server,
        })
    }

    /// A request, reply or cancel message from this peer.
    pub(crate) fn routed(&self, topic: Name, payload: Bytes, route: Route) -> Message {
        Message {
            route: Some(Box::new(route)),
            topic,
            payload,
            headers: Vec::new().into(),
            id: self.handle.shared.locals.next_id(),
            origin: process_origin(),
            hops: 0,
            timestamp: SystemTime::now(),
            ttl: None,
        }
    }

    /// Sends a request, reply or cancel to its addressee (here or in another peer), waiting
    /// for a full addressee until `deadline`, and a copy to every observer. Returns whether
    /// the addressee took it.
    pub(crate) async fn send_routed(
        &self,
        message: &Message,
        deadline: Instant,
    ) -> Result<bool, BusError> {
        let shared = &self.handle.shared;
        let Some(to) = message.to() else {
            return Ok(false);
        };
        let mut bytes = Vec::with_capacity(96 + message.topic.len() + message.payload.len());
        frame::encode_message(&MessageRef::of(message), &mut bytes);
        let max = shared.options.max_payload + crate::transport::FRAME_OVERHEAD;
        if bytes.len() > max {
            return Err(BusError::PayloadTooLarge {
                len: bytes.len(),
                max,
            });
        }
        // Copies first: an observer then usually sees a request before its reply (not
        // always: the two come from different peers, on different connections).
        shared
            .transport
            .send_copies(&message.topic, &bytes, deadline, to)
            .await;
        let routed = shared.locals.route(message, Some(deadline)).await;
        let delivered = if to == shared.peer {
            matches!(routed, Routed::Done)
        } else {
            shared.transport.send_to(to, &bytes, deadline).await
        };
        Ok(delivered)
    }
}

/// What a reply says, as the caller of [`Bus::request`] sees it.
fn answer(topic: &Name, reply: Message) -> Result<Message, BusError> {
    match reply.reply_status() {
        Some(ReplyStatus::Ok | ReplyStatus::Item) | None => Ok(reply),
        Some(status) => Err(refusal(topic, status, &reply)),
    }
}

/// The error a final reply other than an answer stands for.
fn refusal(topic: &Name, status: ReplyStatus, reply: &Message) -> BusError {
    let topic = topic.to_string();
    match status {
        ReplyStatus::Busy => BusError::ServerBusy { topic },
        ReplyStatus::Gone => BusError::PeerGone { topic },
        ReplyStatus::End => BusError::ServerFailed {
            topic,
            message: "the server's stream ended without a reply".to_owned(),
        },
        _ => BusError::ServerFailed {
            topic,
            message: reply.payload_str().unwrap_or("").to_owned(),
        },
    }
}

/// The replies to one [`Bus::request_stream`], as a `Stream` of `Result<Message, BusError>`.
///
/// Yields each reply in the order the server sent it, then ends after the last. An error
/// (the server died, failed, refused, or a wait passed the timeout) is the last item.
/// Dropping the stream before its end tells the server to stop.
#[must_use = "dropping the ReplyStream tells the server to stop"]
pub struct ReplyStream {
    replies: mpsc::Receiver<Message>,
    gone: Gone,
    idle: Pin<Box<Sleep>>,
    timeout: Duration,
    topic: Name,
    server: u64,
    done: bool,
    guard: Option<Registered>,
}

impl ReplyStream {
    fn finish(
        &mut self,
        item: Option<Result<Message, BusError>>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.done = true;
        self.guard = None;
        Poll::Ready(item)
    }
}

impl Stream for ReplyStream {
    type Item = Result<Message, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Replies first: whatever arrived before the server's connection ended is yielded.
        match self.replies.poll_recv(cx) {
            Poll::Ready(Some(reply)) => {
                let status = reply.reply_status().unwrap_or(ReplyStatus::Ok);
                return match status {
                    ReplyStatus::Item => {
                        let deadline = crate::after(self.timeout);
                        self.idle.as_mut().reset(deadline);
                        Poll::Ready(Some(Ok(reply)))
                    }
                    // A plain server's one answer: the stream ends after it.
                    ReplyStatus::Ok => self.finish(Some(Ok(reply))),
                    ReplyStatus::End => self.finish(None),
                    other => {
                        let error = refusal(&self.topic, other, &reply);
                        self.finish(Some(Err(error)))
                    }
                };
            }
            Poll::Ready(None) => return self.finish(Some(Err(BusError::Closed))),
            Poll::Pending => {}
        }
        if self.gone.as_mut().poll(cx).is_ready() {
            let topic = self.topic.to_string();
            return self.finish(Some(Err(BusError::PeerGone { topic })));
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            let error = BusError::Timeout {
                topic: self.topic.to_string(),
                after: self.timeout,
            };
            return self.finish(Some(Err(error)));
        }
        Poll::Pending
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        // Given up before the end: tell the server to stop, from a task of its own (a drop
        // cannot wait). Outside a runtime there is nobody to send it; the server then stops
        // at its next reply, which finds nobody waiting (a reader answers such a stream item
        // with a cancel: `Routed::Unwanted`).
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bus = Bus {
            handle: Arc::clone(&guard.bus),
        };
        let cancel = bus.routed(
            self.topic.clone(),
            Bytes::new(),
            Route {
                to: self.server,
                from: bus.handle.shared.peer,
                correlation: guard.id,
                leg: Leg::Cancel,
            },
        );
        drop(guard);
        runtime.spawn(async move {
            let deadline = crate::after(bus.handle.shared.options.send_timeout);
            let _ = bus.send_routed(&cancel, deadline).await;
        });
    }
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("topic", &self.topic.as_str())
            .field("server", &format_args!("{:016x}", self.server))
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
