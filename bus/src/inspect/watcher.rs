//! [`StateWatcher`]: the reading side, for `ephemeral top` and other tools.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::format::{FormatError, State, StateFrame};
use super::{InspectError, StateTransport};

/// Receives published state frames and polls the publishers.
///
/// A publisher sends only when polled, so a watcher that wants a live view calls
/// [`poll`](Self::poll) about once per publisher interval (250 ms by default) and reads
/// frames with [`next`](Self::next); one that wants a single snapshot calls
/// [`collect`](Self::collect). Publishers that stop watching polls stop sending; nothing needs
/// to be torn down.
///
/// See [`PublishState`](super::PublishState) for an example.
pub struct StateWatcher<T> {
    transport: T,
    states: BoxStream<'static, bytes::Bytes>,
    refused: u64,
}

impl<T: StateTransport> StateWatcher<T> {
    /// Starts listening for frames.
    ///
    /// # Errors
    ///
    /// The transport's, when it cannot subscribe.
    pub async fn new(transport: &T) -> Result<Self, InspectError> {
        Ok(Self {
            transport: transport.clone(),
            states: transport.listen_states().await?,
            refused: 0,
        })
    }

    /// Asks every publisher for its state; returns how many it reached (the publishers that
    /// will answer), or `None` when the transport cannot tell (NATS).
    ///
    /// # Errors
    ///
    /// The transport's, when it cannot publish.
    ///
    /// The future does not borrow the watcher, so it can be sent to a task of its own while
    /// the watcher reads frames elsewhere.
    pub fn poll(
        &self,
    ) -> impl Future<Output = Result<Option<usize>, InspectError>> + Send + 'static {
        let transport = self.transport.clone();
        async move { transport.send_poll().await }
    }

    /// The next frame; `None` once the transport closed. A frame that cannot be read (another
    /// version, say) is returned as its error and counted in [`refused`](Self::refused).
    pub async fn next(&mut self) -> Option<Result<StateFrame, FormatError>> {
        let bytes = self.states.next().await?;
        let frame = StateFrame::decode(&bytes);
        if frame.is_err() {
            self.refused += 1;
        }
        Some(frame)
    }

    /// Frames refused so far.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Polls once and gathers the answers: the latest frame of every publisher that answered,
    /// sorted by process and name. Returns once as many publishers answered as the poll
    /// reached, or after `timeout` with those that did. Over a transport that cannot count
    /// the publishers a poll reached (NATS), it always waits the whole `timeout`.
    ///
    /// # Errors
    ///
    /// The transport's, when it cannot publish the poll.
    pub async fn collect(&mut self, timeout: Duration) -> Result<Vec<StateFrame>, InspectError> {
        let expected = self.poll().await?;
        let deadline = crate::after(timeout);
        let mut frames: BTreeMap<String, StateFrame> = BTreeMap::new();
        // Publishers that answered with something other than a live state (stopped, or a
        // frame this reader refuses): they answered, but there is nothing to show.
        let mut silent = 0usize;
        while expected.is_none_or(|expected| frames.len() + silent < expected) {
            let Ok(item) = tokio::time::timeout_at(deadline, self.next()).await else {
                break;
            };
            match item {
                None => break,
                Some(Ok(frame)) if matches!(frame.state, State::Stopped) => {
                    frames.remove(&frame.publisher.id);
                    silent += 1;
                }
                Some(Ok(frame)) => {
                    frames.insert(frame.publisher.id.clone(), frame);
                }
                Some(Err(_)) => silent += 1,
            }
        }
        let mut frames: Vec<StateFrame> = frames.into_values().collect();
        frames.sort_by(|a, b| {
            let key = |f: &StateFrame| {
                (
                    f.publisher.process.program.clone(),
                    f.publisher.process.pid,
                    f.publisher.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(frames)
    }
}

impl<T> fmt::Debug for StateWatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateWatcher")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}
