//! The bytes queued for one peer, written to its socket in batches by one writer task.

use std::collections::HashMap;

use ephemeral::Name;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Encoded;

/// At most this many topics' losses are counted apart for one peer while it is stalled.
/// Past it, a loss on a new topic is counted on a topic already counted that reaches the
/// same subscriptions of the peer (a lag report reaches the subscriptions its topic
/// matches, so each is told the same count): a peer stopped for good under a publisher of
/// ever new topics (`order.<id>`) cost that publisher one table entry per topic, for as
/// long as the peer stayed stopped (1,000,000 topics: +127 MiB).
const MAX_LAG_TOPICS: usize = 1024;

/// A published message's topic, for lag reports, and which of the peer's subscriptions it
/// reaches (their indices in the peer's announcement), asked only past [`MAX_LAG_TOPICS`].
#[derive(Clone, Copy)]
pub(super) struct LagTopic<'a> {
    pub(super) topic: &'a Name,
    pub(super) readers: &'a (dyn Fn(&Name) -> Box<[u32]> + Sync),
}
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
    /// Messages dropped for this peer per topic, not yet reported to it: at most
    /// [`MAX_LAG_TOPICS`] topics, plus one per set of the peer's subscriptions reached by
    /// the topics past them (see [`State::count_lag`]).
    lag: HashMap<Name, u64>,
    /// Past [`MAX_LAG_TOPICS`]: the topic counted for each set of the peer's subscriptions.
    lag_by_readers: HashMap<Box<[u32]>, Name>,
    /// The peer stayed full past a publisher's deadline; publishers do not wait for it
    /// again until the writer has made progress.
    stalled: bool,
    closed: bool,
}

impl State {
    /// Counts one message dropped for the peer on `lag.topic`, in a table bounded as
    /// [`MAX_LAG_TOPICS`] says.
    fn count_lag(&mut self, lag: LagTopic<'_>) {
        if let Some(count) = self.lag.get_mut(lag.topic) {
            *count += 1;
            return;
        }
        let topic = if self.lag.len() < MAX_LAG_TOPICS {
            lag.topic.clone()
        } else {
            self.lag_by_readers
                .entry((lag.readers)(lag.topic))
                .or_insert_with(|| lag.topic.clone())
                .clone()
        };
        *self.lag.entry(topic).or_insert(0) += 1;
    }

    /// Queues a lag report for every topic counted, and forgets them.
    fn report_lag(&mut self) {
        self.lag_by_readers.clear();
        for (topic, count) in std::mem::take(&mut self.lag) {
            frame::encode(&Frame::Lag { topic, count }, &mut self.buf);
        }
    }
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
                lag_by_readers: HashMap::new(),
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
        lag_topic: Option<LagTopic<'_>>,
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
                    state.count_lag(topic);
                }
                return Pushed::Dropped;
            }
        }
    }

    /// Queues the frame if there is room, drops it if the peer is stalled, `None` if the
    /// caller has to wait.
    pub(super) fn try_push(
        &self,
        bytes: Encoded<'_>,
        lag_topic: Option<LagTopic<'_>>,
    ) -> Option<Pushed> {
        let mut state = self.state.lock();
        if state.closed {
            return Some(Pushed::Closed);
        }
        if state.buf.len() < self.limit {
            if !state.lag.is_empty() {
                // Report earlier losses before the next message, in stream order.
                state.report_lag();
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
                state.count_lag(topic);
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
            state.report_lag();
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use ephemeral::Name;
    use tokio::time::Instant;

    use super::{LagTopic, MAX_LAG_TOPICS, Outbound, Pushed};
    use crate::frame::{self, Frame};
    use crate::transport::Encoded;

    /// The lag reports queued in `batch`: topic → count.
    fn lag_reports(batch: &[u8]) -> HashMap<String, u64> {
        let mut reports = HashMap::new();
        let mut rest = batch;
        while rest.len() >= 4 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let (one, next) = rest.split_at(4 + len);
            if let Ok(Frame::Lag { topic, count }) = frame::decode(one) {
                *reports.entry(topic.as_str().to_owned()).or_insert(0) += count;
            }
            rest = next;
        }
        reports
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_peers_lag_table_stays_bounded_under_ever_new_topics() {
        let out = Outbound::new(1);
        // The peer subscribed to `even.*` and `odd.*`: a topic reaches one of the two.
        let readers = |topic: &Name| -> Box<[u32]> {
            Box::new([u32::from(topic.as_str().starts_with("odd."))])
        };
        let fill = [0u8; 8];
        assert!(matches!(
            out.try_push(Encoded::Bytes(&fill), None),
            Some(Pushed::Queued)
        ));
        // Full, and its deadline passes: the peer is stalled from here on.
        let stalled = out
            .push_message(
                Encoded::Bytes(&fill),
                None,
                Instant::now() + Duration::from_millis(1),
            )
            .await;
        assert!(matches!(stalled, Pushed::Dropped));
        let topics = 20 * MAX_LAG_TOPICS;
        for i in 0..topics {
            let side = if i % 2 == 0 { "even" } else { "odd" };
            let topic = Name::new(&format!("{side}.order-{i}")).unwrap();
            let lag = LagTopic {
                topic: &topic,
                readers: &readers,
            };
            assert!(matches!(
                out.try_push(Encoded::Bytes(&fill), Some(lag)),
                Some(Pushed::Dropped)
            ));
        }
        // Before the fix: one entry per topic, 20,480 of them.
        let counted = out.state.lock().lag.len();
        assert!(
            counted <= MAX_LAG_TOPICS + 2,
            "{counted} topics counted for {topics} dropped"
        );
        // The peer reads again: every loss is reported, each to the subscription it missed.
        let _ = out.take(Vec::new());
        out.progressed();
        let reports = lag_reports(&out.take(Vec::new()).unwrap());
        let sum = |side: &str| -> u64 {
            reports
                .iter()
                .filter(|(topic, _)| topic.starts_with(side))
                .map(|(_, count)| count)
                .sum()
        };
        assert_eq!(sum("even."), (topics / 2) as u64);
        assert_eq!(sum("odd."), (topics / 2) as u64);
        assert!(out.state.lock().lag_by_readers.is_empty());
    }
}
