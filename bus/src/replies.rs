//! The requester's side of request/reply: requests waiting for replies, by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::sync::Mutex;
use crate::{Message, ReplyStatus};

/// Who waits for the replies to one request.
pub(crate) enum Waiter {
    /// [`Bus::request`](crate::Bus::request): the first reply ends it.
    One(oneshot::Sender<Message>),
    /// [`Bus::request_stream`](crate::Bus::request_stream): items until a final reply.
    Stream(mpsc::Sender<Message>),
}

/// Requests of this peer waiting for replies. Every entry is removed by the request's own
/// drop guard when the request ends however it ends, so the table holds at most the
/// requests in flight.
#[derive(Default)]
pub(crate) struct Replies {
    pending: Mutex<HashMap<u64, Waiter>>,
    next: AtomicU64,
    /// Replies that found nobody waiting (the request gave up, or its stream was dropped).
    pub(crate) late: AtomicU64,
}

impl Replies {
    /// Registers a waiter; returns its correlation id. The caller unregisters it with
    /// [`remove`](Self::remove) when the request ends however it ends (a drop guard).
    pub(crate) fn register(&self, waiter: Waiter) -> u64 {
        // Relaxed: the counter only has to hand out distinct values.
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().insert(id, waiter);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
        self.pending.lock().remove(&id);
    }

    /// Hands `reply` to its waiter. A streaming waiter with a full buffer is waited for until
    /// `deadline` (forever when `None`: a connection's reader, whose waiting pushes back on
    /// the server through the socket). Returns whether the waiter took it; a reply nobody
    /// takes is counted as late.
    pub(crate) async fn deliver(&self, reply: Message, deadline: Option<Instant>) -> bool {
        let Some(id) = reply.correlation() else {
            return false;
        };
        let last = reply.reply_status().is_none_or(ReplyStatus::is_final);
        let sender = {
            let mut pending = self.pending.lock();
            match pending.get(&id) {
                // A stream stays registered until its final reply.
                Some(Waiter::Stream(tx)) if !last => Some(Waiter::Stream(tx.clone())),
                _ => pending.remove(&id),
            }
        };
        let Some(sender) = sender else {
            self.late.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let taken = match sender {
            Waiter::One(tx) => tx.send(reply).is_ok(),
            Waiter::Stream(tx) => match deadline {
                None => tx.send(reply).await.is_ok(),
                Some(deadline) => matches!(
                    tokio::time::timeout_at(deadline, tx.send(reply)).await,
                    Ok(Ok(()))
                ),
            },
        };
        if !taken {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}
