//! The connection's state and events, and `ConnectionSignals`: them as sink signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_nats::Event;
use ephemeral::{Hold, SignalSink};

use crate::NatsError;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Raised in the sink each time the connection is (re)established.
pub const CONNECTED_SIGNAL: &str = "nats.connected";
/// Raised in the sink each time the connection is lost.
pub const DISCONNECTED_SIGNAL: &str = "nats.disconnected";
/// Held in the sink while not connected.
pub const OFFLINE_SIGNAL: &str = "nats.offline";

/// A change of the connection, as the client reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Connected,
    Disconnected,
    Closed,
}

/// Connection state shared by the client's event callback and the handle.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    connected: watch::Sender<bool>,
    /// The client gave up for good (closed, or out of reconnect attempts).
    closed: AtomicBool,
    changes: broadcast::Sender<Change>,
    /// Whether the client's report of the first connection (made before the handle existed,
    /// and counted then) has come through yet.
    first_seen: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
}

impl ConnectionState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            // The handle exists only once the first connection succeeded.
            connected: watch::Sender::new(true),
            closed: AtomicBool::new(false),
            changes: broadcast::Sender::new(64),
            first_seen: AtomicBool::new(false),
            connects: AtomicU64::new(1),
            disconnects: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
        })
    }

    /// Called by the client (in order) for each event.
    pub(crate) fn on_event(&self, event: &Event) {
        // Counters are statistics only: Relaxed, nothing is ordered by them.
        let change = match event {
            Event::Connected => {
                // Events come one at a time from the client's event task, so this swap is
                // never contended; Relaxed is enough.
                if !self.first_seen.swap(true, Ordering::Relaxed) {
                    // The first connection: counted at creation, and not news to anyone.
                    return;
                }
                self.connects.fetch_add(1, Ordering::Relaxed);
                Change::Connected
            }
            Event::Disconnected => {
                self.disconnects.fetch_add(1, Ordering::Relaxed);
                Change::Disconnected
            }
            // Out of reconnect attempts (`max_reconnects`): the client's connection task has
            // ended and sends no `Closed` of its own.
            Event::Closed | Event::ClientError(async_nats::ClientError::MaxReconnects) => {
                self.closed.store(true, Ordering::Relaxed);
                Change::Closed
            }
            Event::SlowConsumer(_) => {
                self.slow_consumers.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        };
        self.connected.send_replace(change == Change::Connected);
        // No receiver is fine: nobody listens for signals.
        let _ = self.changes.send(change);
    }

    pub(crate) fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows whether the connection is up.
    pub(crate) fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Whether the client gave up for good: closed, or out of reconnect attempts.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The error of a call that found the connection down: [`NatsError::Closed`] once the
    /// client gave up for good, else [`NatsError::Disconnected`] (it is reconnecting).
    pub(crate) fn down(&self, topic: &str) -> NatsError {
        if self.is_closed() {
            NatsError::Closed
        } else {
            NatsError::Disconnected {
                topic: topic.to_owned(),
            }
        }
    }

    fn subscribe(&self) -> (broadcast::Receiver<Change>, watch::Receiver<bool>) {
        // Subscribe to changes first, then read the state: a change in between is seen twice
        // at worst, never missed.
        let changes = self.changes.subscribe();
        (changes, self.connected.subscribe())
    }
}

/// Raises connection changes in a sink; see [`Nats::connection_signals`](crate::Nats::connection_signals).
/// Dropping it stops raising and releases `nats.offline` if held.
#[derive(Debug)]
#[must_use = "the signals stop when this guard is dropped"]
pub struct ConnectionSignals {
    task: JoinHandle<()>,
}

impl Drop for ConnectionSignals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn connection_signals(state: &ConnectionState, sink: &SignalSink) -> ConnectionSignals {
    let (mut changes, connected) = state.subscribe();
    let sink = sink.clone();
    let task = tokio::spawn(async move {
        let mut offline: Option<Hold> = None;
        let hold_offline = |offline: &mut Option<Hold>| {
            if offline.is_none() {
                *offline = sink.hold(OFFLINE_SIGNAL).ok();
            }
        };
        if !*connected.borrow() {
            hold_offline(&mut offline);
        }
        loop {
            match changes.recv().await {
                Ok(Change::Connected) => {
                    offline = None;
                    let _ = sink.raise(CONNECTED_SIGNAL);
                }
                Ok(Change::Disconnected) => {
                    let _ = sink.raise(DISCONNECTED_SIGNAL);
                    hold_offline(&mut offline);
                }
                Ok(Change::Closed) | Err(broadcast::error::RecvError::Closed) => {
                    // The client is gone for good: offline until the guard is dropped.
                    hold_offline(&mut offline);
                    std::future::pending::<()>().await;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed changes: settle on the current state.
                    if *connected.borrow() {
                        offline = None;
                    } else {
                        hold_offline(&mut offline);
                    }
                }
            }
        }
    });
    ConnectionSignals { task }
}
