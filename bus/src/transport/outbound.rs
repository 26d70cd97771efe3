//! The bytes queued for one peer, written to its socket in batches by one writer task.

use std::collections::HashMap;

use ephemeral::Name;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Encoded;
use crate::frame::{self, Frame};
use crate::sync::Mutex;

pub(super) struct Outbound {
    state: Mutex<State>,
    /// Wakes the writer (one waiter; `notify_one` keeps a permit, so no wake-up is lost).
    pub(super) data: Notify,
    /// Wakes publishers waiting for room (`notify_waiters`, with `enable` before checking).
    space: Notify,
    limit: usize,
}

struct State {
    buf: Vec<u8>,
    /// Messages dropped for this peer per topic, not yet reported to it.
    lag: HashMap<Name, u64>,
    /// The peer stayed full past a publisher's deadline; publishers do not wait for it
    /// again until the writer has made progress.
    stalled: bool,
    closed: bool,
}

pub(super) enum Pushed {
    Queued,
    Dropped,
    Closed,
}

impl Outbound {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                lag: HashMap::new(),
                stalled: false,
                closed: false,
            }),
            data: Notify::new(),
            space: Notify::new(),
            limit,
        }
    }

    /// Queues a control frame regardless of the limit (control frames are tiny and rare).
    pub(super) fn push_control(&self, frame: &Frame) {
        let mut state = self.state.lock();
        if state.closed {
            return;
        }
        frame::encode(frame, &mut state.buf);
        drop(state);
        self.data.notify_one();
    }

    /// Queues a message frame, waiting for room until `deadline`. Past it the message is
    /// dropped for this peer; a published message (`lag_topic`) is counted per topic and
    /// reported to the peer as lag later. A request or reply has no topic to report on: its
    /// requester learns of the loss by its timeout.
    pub(super) async fn push_message(
        &self,
        bytes: Encoded<'_>,
        lag_topic: Option<&Name>,
        deadline: Instant,
    ) -> Pushed {
        if let Some(pushed) = self.try_push(bytes, lag_topic) {
            return pushed;
        }
        loop {
            // Register for room before checking again, so a batch taken in between is seen.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(pushed) = self.try_push(bytes, lag_topic) {
                return pushed;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let mut state = self.state.lock();
                state.stalled = true;
                if let Some(topic) = lag_topic {
                    *state.lag.entry(topic.clone()).or_insert(0) += 1;
                }
                return Pushed::Dropped;
            }
        }
    }

    /// Queues the frame if there is room, drops it if the peer is stalled, `None` if the
    /// caller has to wait.
    pub(super) fn try_push(&self, bytes: Encoded<'_>, lag_topic: Option<&Name>) -> Option<Pushed> {
        let mut state = self.state.lock();
        if state.closed {
            return Some(Pushed::Closed);
        }
        if state.buf.len() < self.limit {
            if !state.lag.is_empty() {
                // Report earlier losses before the next message, in stream order.
                let lag = std::mem::take(&mut state.lag);
                for (topic, count) in lag {
                    frame::encode(&Frame::Lag { topic, count }, &mut state.buf);
                }
            }
            let was_empty = state.buf.is_empty();
            bytes.write_to(&mut state.buf);
            drop(state);
            // The writer only sleeps on an empty queue, so only the first frame wakes it.
            if was_empty {
                self.data.notify_one();
            }
            return Some(Pushed::Queued);
        }
        if state.stalled {
            if let Some(topic) = lag_topic {
                *state.lag.entry(topic.clone()).or_insert(0) += 1;
            }
            return Some(Pushed::Dropped);
        }
        None
    }

    /// Takes everything queued, for the writer. `None` once closed.
    pub(super) fn take(&self, spare: Vec<u8>) -> Option<Vec<u8>> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        if state.buf.is_empty() && !state.lag.is_empty() && !state.stalled {
            let lag = std::mem::take(&mut state.lag);
            for (topic, count) in lag {
                frame::encode(&Frame::Lag { topic, count }, &mut state.buf);
            }
        }
        let batch = std::mem::replace(&mut state.buf, spare);
        drop(state);
        if !batch.is_empty() {
            self.space.notify_waiters();
        }
        Some(batch)
    }

    /// The writer wrote a batch: the peer is reading again.
    pub(super) fn progressed(&self) {
        let mut state = self.state.lock();
        if state.stalled {
            state.stalled = false;
            drop(state);
            // Let pending lag reports out even if no publisher comes by.
            self.data.notify_one();
        }
    }

    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.data.notify_one();
        self.space.notify_waiters();
    }
}
