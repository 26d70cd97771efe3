//! The state one intake shares between its tasks and its coordinator's `on_finalized`:
//! the jobs this node holds, which operation runs which, and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use ephemeral::{CancelReason, OperationId, OperationSnapshot, OperationState, Signal, SignalSink};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::job::{Delivery, Lease};
use super::names::Names;
use super::options::{AckMode, FinalizedCallback, SettledCallback};
use super::settle::{Action, Outcome, Rules, Settled, decide};
use crate::Nats;

/// Raised in the coordinator's sink when this node lost the lease on a job it holds (key:
/// the job id): no ping reached the server within `ack_wait`, so the job may run elsewhere.
pub const LEASE_LOST_SIGNAL: &str = "nats.lease.lost";

/// Raised in the coordinator's sink when a job was dropped by an explicit cancel and
/// terminated on the server (key: the job id).
pub const JOB_DROPPED_SIGNAL: &str = "nats.job.dropped";

/// A settle order for the acker task.
#[derive(Debug)]
pub(crate) struct Settle {
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) action: Action,
}

/// What the table knows about an operation.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Enqueued and not finished.
    Held(Arc<Delivery>),
    /// Finished before the intake filed its delivery (the operation ended between enqueue
    /// returning its id and the filing).
    Early {
        state: OperationState,
        error: Option<Arc<str>>,
        at: Instant,
    },
}

/// Counters of one intake; see [`IntakeStats`](super::IntakeStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) pulled: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) ack_unconfirmed: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) terminated: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) handed_back: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
    pub(crate) pings: AtomicU64,
    pub(crate) pull_requests: AtomicU64,
    pub(crate) pulls_answered: AtomicU64,
    /// Summed over the answered pull requests, nanoseconds from sending to the first job.
    pub(crate) pull_wait_nanos: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) orphaned: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        // Relaxed: plain event counters, read as a loose snapshot.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a pull request's first job, `waited` after the request was sent.
    pub(crate) fn pull_answered(&self, waited: Option<Duration>) {
        if let Some(waited) = waited {
            Self::bump(&self.pulls_answered);
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.pull_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

/// Everything an intake's tasks share. Holds no coordinator (the coordinator holds it,
/// through its `on_finalized`), so dropping the coordinator is never prevented by it.
pub(crate) struct Core {
    pub(crate) nats: Nats,
    pub(crate) names: Names,
    pub(crate) stream: jetstream::stream::Stream,
    pub(crate) rules: Rules,
    pub(crate) ack_wait: Duration,
    pub(crate) ack_mode: AckMode,
    pub(crate) max_hold: Duration,
    pub(crate) pull_expiry: Duration,
    pub(crate) sink: SignalSink,
    /// Every delivery this node holds (from arrival to settled), by local number.
    pub(crate) held: DashMap<u64, Arc<Delivery>>,
    next_local: AtomicU64,
    /// Enqueued deliveries by operation.
    pub(crate) ops: DashMap<OperationId, Slot>,
    /// Woken when room frees up or a job starts.
    pub(crate) room: Notify,
    pub(crate) counters: Counters,
    pub(crate) on_settled: Option<SettledCallback>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("stream", &self.names.stream)
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

/// The parts of [`Core`] fixed at creation.
pub(crate) struct CoreConfig {
    pub(crate) nats: Nats,
    pub(crate) names: Names,
    pub(crate) stream: jetstream::stream::Stream,
    pub(crate) rules: Rules,
    pub(crate) ack_wait: Duration,
    pub(crate) ack_mode: AckMode,
    pub(crate) max_hold: Duration,
    pub(crate) pull_expiry: Duration,
    pub(crate) sink: SignalSink,
    pub(crate) on_settled: Option<SettledCallback>,
}

impl Core {
    pub(crate) fn new(c: CoreConfig) -> Self {
        Self {
            nats: c.nats,
            names: c.names,
            stream: c.stream,
            rules: c.rules,
            ack_wait: c.ack_wait,
            ack_mode: c.ack_mode,
            max_hold: c.max_hold,
            pull_expiry: c.pull_expiry,
            sink: c.sink,
            held: DashMap::new(),
            next_local: AtomicU64::new(0),
            ops: DashMap::new(),
            room: Notify::new(),
            counters: Counters::default(),
            on_settled: c.on_settled,
        }
    }

    /// The lease a delivery gets from `at`: a tenth of `ack_wait` short, for the trip to
    /// the server and back.
    pub(crate) fn lease_from(&self, at: Instant) -> Instant {
        at + self.ack_wait - self.ack_wait / 10
    }

    /// Files a newly arrived delivery as held.
    pub(crate) fn receive(
        &self,
        message: &async_nats::Message,
        delivered: u32,
        stream_seq: u64,
        partition: Option<u16>,
    ) -> Arc<Delivery> {
        // Relaxed: only uniqueness matters.
        let local = self.next_local.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map_or_else(
                || Arc::from(stream_seq.to_string()),
                |v| Arc::from(v.as_str()),
            );
        let key = partition
            .is_some()
            .then(|| self.names.key_of(message.subject.as_str()))
            .flatten()
            .map(Arc::from);
        let delivery = Arc::new(Delivery {
            local,
            reply: message.reply.clone().unwrap_or_else(|| "".into()),
            stream_seq,
            delivered,
            max_deliver: self.rules.max_deliver,
            partition,
            id,
            key,
            received: now,
            started: Default::default(),
            op: Default::default(),
            mark: Default::default(),
            lease: std::sync::Mutex::new(Lease {
                deadline: self.lease_from(now),
                renewed: now,
                pinging: false,
                lost: false,
            }),
            settling: Default::default(),
        });
        Counters::bump(&self.counters.pulled);
        if delivered > 1 {
            Counters::bump(&self.counters.redelivered);
        }
        self.held.insert(local, Arc::clone(&delivery));
        delivery
    }

    /// Reports a lease this node just lost (once per delivery): counted, logged, and
    /// raised as [`LEASE_LOST_SIGNAL`].
    pub(crate) fn lease_lost(&self, delivery: &Delivery) {
        Counters::bump(&self.counters.leases_lost);
        tracing::warn!(
            queue = %self.names.queue,
            job = %delivery.id,
            "lease lost: no ping reached the server within ack_wait"
        );
        if let Ok(builder) = Signal::build(LEASE_LOST_SIGNAL) {
            let mut builder = builder.key(Arc::clone(&delivery.id));
            if let Some(op) = delivery.op.get() {
                builder = builder.operation(*op);
            }
            let _ = self.sink.raise_with(builder);
        }
    }

    /// Jobs held now.
    pub(crate) fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Held jobs that have not started.
    pub(crate) fn waiting_count(&self) -> usize {
        self.held
            .iter()
            .filter(|d| !d.is_started() && !d.is_settling())
            .count()
    }

    /// Chooses the action for `delivery` after its operation ended in `state`, and sends
    /// it to the acker (once per delivery).
    pub(crate) fn settle_finished(
        &self,
        tx: &mpsc::UnboundedSender<Settle>,
        delivery: Arc<Delivery>,
        state: &OperationState,
        error: Option<&str>,
    ) {
        let signal_left = match state {
            OperationState::Cancelled(CancelReason::Signal(name)) => self
                .sink
                .latest(name.as_str())
                .and_then(|s| s.expires_at())
                .map(|at| at.saturating_duration_since(Instant::now())),
            _ => None,
        };
        let action = decide(&delivery, state, error, signal_left, &self.rules);
        if action == Action::Term {
            let op = delivery.op.get().copied();
            if let Ok(builder) = Signal::build(JOB_DROPPED_SIGNAL) {
                let mut builder = builder.key(Arc::clone(&delivery.id));
                if let Some(op) = op {
                    builder = builder.operation(op);
                }
                let _ = self.sink.raise_with(builder);
            }
        }
        self.send(tx, delivery, action);
    }

    /// Sends `action` for `delivery` to the acker, unless it is settling already.
    pub(crate) fn send(
        &self,
        tx: &mpsc::UnboundedSender<Settle>,
        delivery: Arc<Delivery>,
        action: Action,
    ) {
        if !delivery.begin_settling() {
            return;
        }
        if let Err(mpsc::error::SendError(order)) = tx.send(Settle { delivery, action }) {
            // The acker is gone (the runtime is shutting down): nothing can be sent; the
            // server delivers the job again after ack_wait.
            self.finish(&order.delivery, Outcome::Abandoned);
        }
    }

    /// Hands a delivery back before (or instead of) enqueueing it.
    pub(crate) fn hand_back(
        &self,
        tx: &mpsc::UnboundedSender<Settle>,
        delivery: Arc<Delivery>,
        delay: Option<Duration>,
    ) {
        Counters::bump(&self.counters.handed_back);
        let action = if delivery.delivered >= self.rules.max_deliver {
            Action::Dead {
                reason: "handed back",
                error: "handed back on its last delivery".to_owned(),
            }
        } else {
            Action::Nak(delay)
        };
        self.send(tx, delivery, action);
    }

    /// Files the operation of an enqueued delivery, or settles it at once if it finished
    /// already.
    pub(crate) fn link(
        &self,
        tx: &mpsc::UnboundedSender<Settle>,
        id: OperationId,
        delivery: Arc<Delivery>,
    ) {
        let _ = delivery.op.set(id);
        let early = match self.ops.entry(id) {
            Entry::Occupied(entry) => match entry.remove() {
                Slot::Early { state, error, .. } => Some((state, error)),
                Slot::Held(_) => None,
            },
            Entry::Vacant(entry) => {
                entry.insert(Slot::Held(Arc::clone(&delivery)));
                None
            }
        };
        if let Some((state, error)) = early {
            self.settle_finished(tx, delivery, &state, error.as_deref());
        }
    }

    /// Removes a settled delivery, counts its outcome and tells the caller.
    pub(crate) fn finish(&self, delivery: &Delivery, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Acked => &self.counters.acked,
            Outcome::AckUnconfirmed => &self.counters.ack_unconfirmed,
            Outcome::Nacked(_) => &self.counters.nacked,
            Outcome::Terminated => &self.counters.terminated,
            Outcome::DeadLettered => &self.counters.dead_lettered,
            Outcome::Abandoned => &self.counters.abandoned,
        };
        Counters::bump(counter);
        self.held.remove(&delivery.local);
        if let Some(callback) = &self.on_settled {
            let settled = Settled {
                id: Arc::clone(&delivery.id),
                key: delivery.key.clone(),
                stream_sequence: delivery.stream_seq,
                delivered: delivery.delivered,
                operation: delivery.op.get().copied(),
                outcome,
            };
            let call = std::panic::AssertUnwindSafe(|| callback(&settled));
            if std::panic::catch_unwind(call).is_err() {
                tracing::warn!(queue = %self.names.queue, "an on_settled callback panicked");
            }
        }
        self.room.notify_one();
    }

    /// Drops `Early` slots nobody claimed for a minute (operations of jobs the caller
    /// enqueued into the coordinator by hand; the intake claims its own within
    /// microseconds).
    pub(crate) fn sweep_early(&self) {
        let now = Instant::now();
        self.ops.retain(|_, slot| match slot {
            Slot::Early { at, .. } => now.saturating_duration_since(*at) < Duration::from_secs(60),
            Slot::Held(_) => true,
        });
    }
}

/// The coordinator's `on_finalized`: settles the finished operation's job.
pub(crate) struct Finalizer {
    pub(crate) core: Arc<Core>,
    pub(crate) tx: mpsc::UnboundedSender<Settle>,
    pub(crate) user: Option<FinalizedCallback>,
}

impl Finalizer {
    pub(crate) fn on_finalized(&self, snapshot: &OperationSnapshot) {
        let held = match self.core.ops.entry(snapshot.id) {
            Entry::Occupied(entry) => match entry.get() {
                Slot::Held(_) => match entry.remove() {
                    Slot::Held(delivery) => Some(delivery),
                    Slot::Early { .. } => None,
                },
                // Finished twice: cannot happen; keep the first.
                Slot::Early { .. } => None,
            },
            Entry::Vacant(entry) => {
                entry.insert(Slot::Early {
                    state: snapshot.state.clone(),
                    error: snapshot.error.as_deref().map(Arc::from),
                    at: Instant::now(),
                });
                None
            }
        };
        if let Some(delivery) = held {
            self.core.settle_finished(
                &self.tx,
                delivery,
                &snapshot.state,
                snapshot.error.as_deref(),
            );
        }
        if let Some(user) = &self.user {
            user(snapshot);
        }
    }
}
