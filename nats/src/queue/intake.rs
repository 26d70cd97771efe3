//! `Intake`: the guard of one node's intake, and the pull loop of a plain queue.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{
    EnqueueError, EphemeralKeyedWorkCoordinator, EphemeralWorkCoordinator, OperationId, Pattern,
    SignalSink,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::job::{Delivery, Job, Mark, ack_info};
use super::names::PLAIN_CONSUMER;
use super::orphans::{self, Watched};
use super::pull::{Puller, Status, route};
use super::state::{Core, Counters, Settle};

/// A coordinator an intake feeds: the work coordinator (keys ignored) or the keyed one (the
/// job's key).
// The error hands the job back (a large value, moved once per refused job: not worth a box).
#[allow(clippy::result_large_err)]
pub(crate) trait Target: Send + Sync + 'static {
    fn max_concurrency(&self) -> usize;
    fn try_put(&self, job: Job) -> Result<OperationId, EnqueueError<Job>>;
    fn put(&self, job: Job) -> BoxFuture<'_, Result<OperationId, EnqueueError<Job>>>;
    fn cancel_op(&self, id: OperationId) -> bool;
    /// Whether the coordinator refuses new items (completed, cancelled or dropped): the
    /// intake then stops pulling, since nothing it pulled could run here.
    fn is_closed(&self) -> bool;
}

impl Target for EphemeralWorkCoordinator<Job> {
    fn max_concurrency(&self) -> usize {
        EphemeralWorkCoordinator::max_concurrency(self)
    }
    fn try_put(&self, job: Job) -> Result<OperationId, EnqueueError<Job>> {
        self.try_enqueue(job)
    }
    fn put(&self, job: Job) -> BoxFuture<'_, Result<OperationId, EnqueueError<Job>>> {
        Box::pin(self.enqueue(job))
    }
    fn cancel_op(&self, id: OperationId) -> bool {
        self.cancel_operation(id)
    }
    fn is_closed(&self) -> bool {
        EphemeralWorkCoordinator::is_closed(self)
    }
}

impl Target for EphemeralKeyedWorkCoordinator<Arc<str>, Job> {
    fn max_concurrency(&self) -> usize {
        EphemeralKeyedWorkCoordinator::max_concurrency(self)
    }
    fn try_put(&self, job: Job) -> Result<OperationId, EnqueueError<Job>> {
        let key = job.delivery.key.clone().unwrap_or_else(|| Arc::from(""));
        self.try_enqueue(key, job)
    }
    fn put(&self, job: Job) -> BoxFuture<'_, Result<OperationId, EnqueueError<Job>>> {
        let key = job.delivery.key.clone().unwrap_or_else(|| Arc::from(""));
        Box::pin(self.enqueue(key, job))
    }
    fn cancel_op(&self, id: OperationId) -> bool {
        self.cancel_operation(id)
    }
    fn is_closed(&self) -> bool {
        EphemeralKeyedWorkCoordinator::is_closed(self)
    }
}

/// Counters of one node's intake, read with [`Intake::stats`].
///
/// Every job pulled ends in exactly one settle outcome, so once nothing is held
/// `pulled == acked + ack_unconfirmed + nacked + terminated + dead_lettered + abandoned`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntakeStats {
    /// Jobs delivered to this node.
    pub pulled: u64,
    /// Of those, deliveries after the first (`delivered ≥ 2`).
    pub redelivered: u64,
    /// Jobs held now (waiting, running, or being settled).
    pub held: u64,
    /// Held jobs that have not started.
    pub waiting: u64,
    /// Completed and acknowledged.
    pub acked: u64,
    /// Completed, ack never confirmed.
    pub ack_unconfirmed: u64,
    /// Handed back to run again (failures, cancellations, hand-backs).
    pub nacked: u64,
    /// Terminated after an explicit cancel.
    pub terminated: u64,
    /// Moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Settled by sending nothing (lease lost).
    pub abandoned: u64,
    /// Of the nacks and dead letters, hand-backs (held too long, intake stopped,
    /// partition moved). A handed-back job never started here: a job whose body starts
    /// while the intake hands back runs, and is settled by its outcome instead (one or
    /// the other wins it, never both), so `started + handed_back ≤ pulled`.
    pub handed_back: u64,
    /// Leases lost (no ping reached the server within `ack_wait`).
    pub leases_lost: u64,
    /// Confirmed keep-alive pings.
    pub pings: u64,
    /// Pull requests sent.
    pub pull_requests: u64,
    /// Pull requests that brought at least one job.
    pub pulls_answered: u64,
    /// Summed over those, the time from sending each to its first job arriving; see
    /// [`mean_pull_wait`](Self::mean_pull_wait).
    pub pull_wait: Duration,
    /// Bodies started.
    pub started: u64,
    /// Jobs this node found acknowledged by the server yet left in the work stream (after
    /// a server restart) and moved to the dead letters with the reason
    /// [`ORPHAN_REASON`](super::ORPHAN_REASON); see the [module docs](super).
    pub orphaned: u64,
}

impl IntakeStats {
    /// The mean time the server took to answer a pull request: from sending it to its first
    /// job arriving (`pull_wait / pulls_answered`); `None` before any was answered.
    ///
    /// A node holds at most `max_concurrency + prefetch` jobs, counting those it asked for
    /// and has not received, so it cannot take more than about
    /// `(max_concurrency + prefetch) / mean_pull_wait` jobs a second. When its rate comes
    /// near that, it waits on the server, not on its bodies: only a larger
    /// [`prefetch`](super::IntakeOptions::prefetch) raises it (more jobs held per node,
    /// more redelivered if the node dies).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral_nats::queue::IntakeStats;
    ///
    /// let mut stats = IntakeStats::default();
    /// assert_eq!(stats.mean_pull_wait(), None);
    /// stats.pulls_answered = 4;
    /// stats.pull_wait = Duration::from_millis(2);
    /// assert_eq!(stats.mean_pull_wait(), Some(Duration::from_micros(500)));
    /// ```
    #[must_use]
    pub fn mean_pull_wait(&self) -> Option<Duration> {
        let mean = self
            .pull_wait
            .as_nanos()
            .checked_div(u128::from(self.pulls_answered))?;
        Some(Duration::from_nanos(
            u64::try_from(mean).unwrap_or(u64::MAX),
        ))
    }
}

/// One node's intake from a [`WorkQueue`](super::WorkQueue) into a coordinator.
///
/// Dropping it (or [`stop`](Self::stop)) stops pulling and hands back, at once, every held
/// job that has not started; running jobs finish and are settled as usual, kept alive
/// until then. [`shutdown`](Self::shutdown) does the same and waits until nothing is held.
/// The coordinator lives at least as long as its intake. A coordinator that closes
/// (`complete`, `cancel`) stops its intake too ([`is_stopped`](Self::is_stopped)).
///
/// # Examples
///
/// A defer rule on the intake: while `maintenance.*` is live, the node pulls nothing and
/// acknowledges nothing; the moment it lifts, it pulls again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// use std::time::Duration;
/// use ephemeral::{EphemeralOptions, OperationContext, SignalSink};
/// use ephemeral_nats::Nats;
/// use ephemeral_nats::queue::{IntakeOptions, Job, WorkQueueOptions};
///
/// let nats = Nats::connect(&server.url()).await?;
/// let queue = nats.work_queue("reports", WorkQueueOptions::default()).await?;
/// let sink = SignalSink::default();
/// let maintenance = sink.hold("maintenance.db")?;
/// let (coordinator, intake) = queue
///     .work_coordinator(
///         |_job: Job, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
///         EphemeralOptions::default().max_concurrency(2).signals(sink.clone()),
///         IntakeOptions::default().defer_on("maintenance.*"),
///     )
///     .await?;
/// queue.push("monthly", "2026-11").await?;
/// tokio::time::sleep(Duration::from_millis(200)).await;
/// assert_eq!(intake.stats().pulled, 0); // deferred: the job waits on the server
/// drop(maintenance);
/// while coordinator.stats().completed < 1 {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// let stats = intake.shutdown().await;
/// assert_eq!((stats.pulled, stats.acked, stats.redelivered), (1, 1, 0));
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the intake stops pulling"]
pub struct Intake {
    pub(crate) core: Arc<Core>,
    pub(crate) stop: Option<oneshot::Sender<()>>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) janitor: Option<tokio::task::JoinHandle<()>>,
}

impl Intake {
    /// Jobs this node holds now (waiting, running, or being settled).
    #[must_use]
    pub fn held(&self) -> usize {
        self.core.held_count()
    }

    /// The intake's counters.
    #[must_use]
    pub fn stats(&self) -> IntakeStats {
        let c = &self.core.counters;
        IntakeStats {
            pulled: Counters::get(&c.pulled),
            redelivered: Counters::get(&c.redelivered),
            held: self.core.held_count() as u64,
            waiting: self.core.waiting_count() as u64,
            acked: Counters::get(&c.acked),
            ack_unconfirmed: Counters::get(&c.ack_unconfirmed),
            nacked: Counters::get(&c.nacked),
            terminated: Counters::get(&c.terminated),
            dead_lettered: Counters::get(&c.dead_lettered),
            abandoned: Counters::get(&c.abandoned),
            handed_back: Counters::get(&c.handed_back),
            leases_lost: Counters::get(&c.leases_lost),
            pings: Counters::get(&c.pings),
            pull_requests: Counters::get(&c.pull_requests),
            pulls_answered: Counters::get(&c.pulls_answered),
            pull_wait: Duration::from_nanos(Counters::get(&c.pull_wait_nanos)),
            started: Counters::get(&c.started),
            orphaned: Counters::get(&c.orphaned),
        }
    }

    /// Stops pulling and hands back every held job that has not started.
    pub fn stop(&mut self) {
        self.stop.take();
    }

    /// Whether pulling has stopped (by [`stop`](Self::stop), or because the coordinator
    /// stopped accepting items).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.stop.is_none()
            || self
                .task
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Stops pulling, hands back what has not started, and waits until every job this
    /// node held is settled (running ones finish first). Returns the final counters.
    pub async fn shutdown(mut self) -> IntakeStats {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        loop {
            let notified = self.core.room.notified();
            if self.core.held_count() == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
        self.stats()
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(janitor) = self.janitor.take() {
            janitor.abort();
        }
    }
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("queue", &self.core.names.queue)
            .field("held", &self.held())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// A defer rule the intake obeys by not pulling: the same rule as the coordinator's
/// `defer_on` / `resume_on`.
#[derive(Debug, Clone)]
pub(crate) struct DeferRule {
    pub(crate) defer: Pattern,
    pub(crate) resume: Option<Pattern>,
}

impl DeferRule {
    /// Whether it holds now: a live defer match, and no resume signal newer than the
    /// latest one.
    pub(crate) fn holds(&self, sink: &SignalSink) -> bool {
        let Some(latest) = sink.sense(self.defer.as_str()).into_iter().rev().find(|s| {
            self.resume
                .as_ref()
                .is_none_or(|r| !r.matches(s.name().as_str()))
        }) else {
            return false;
        };
        let Some(resume) = &self.resume else {
            return true;
        };
        sink.latest(resume.as_str())
            .is_none_or(|r| r.sequence() <= latest.sequence())
    }

    /// The pattern to watch: changes to either side.
    pub(crate) fn watched(&self) -> String {
        match &self.resume {
            Some(resume) => format!("{},{}", self.defer.as_str(), resume.as_str()),
            None => self.defer.as_str().to_owned(),
        }
    }
}

/// What an intake loop needs besides the core.
pub(crate) struct Loop<T> {
    pub(crate) core: Arc<Core>,
    pub(crate) target: T,
    pub(crate) tx: mpsc::UnboundedSender<Settle>,
    pub(crate) prefetch: Option<usize>,
    pub(crate) defer: Option<DeferRule>,
    pub(crate) stop: oneshot::Receiver<()>,
    /// The stop came while waiting for the coordinator to take a job (`stop` is spent).
    pub(crate) stopped: bool,
}

impl<T: Target> Loop<T> {
    /// How many jobs this node may hold now.
    pub(crate) fn capacity(&self) -> usize {
        let concurrency = self.target.max_concurrency();
        concurrency + self.prefetch.unwrap_or(concurrency)
    }

    pub(crate) fn deferred(&self) -> bool {
        self.defer
            .as_ref()
            .is_some_and(|rule| rule.holds(&self.core.sink))
    }

    /// Puts a delivered job into the coordinator. Returns false when the coordinator no
    /// longer accepts items or the intake was stopped meanwhile (the job was handed back).
    pub(crate) async fn enqueue(&mut self, delivery: Arc<Delivery>, job: Job) -> bool {
        let taken = match self.target.try_put(job) {
            Ok(id) => Some(id),
            Err(EnqueueError::Full(job)) => self.wait_for_room(job).await,
            Err(_) => None,
        };
        match taken {
            Some(id) => {
                self.core.link(&self.tx, id, delivery);
                true
            }
            None => {
                self.core.hand_back(&self.tx, delivery, None);
                false
            }
        }
    }

    /// Waits for the coordinator to take `job` when its pending room is full (it is
    /// paused, or its items are deferred, with a `max_pending` below what this node
    /// holds). Meanwhile it keeps house (hands back what waited past `max_hold`, gives up
    /// lost leases) and obeys a stop at once: `None` when the job was not taken.
    async fn wait_for_room(&mut self, job: Job) -> Option<OperationId> {
        if self.stopped {
            return None;
        }
        let period = self.tick_period();
        let target = &self.target;
        let mut put = std::pin::pin!(target.put(job));
        loop {
            tokio::select! {
                biased;
                _ = &mut self.stop => {
                    self.stopped = true;
                    return None;
                }
                result = &mut put => return result.ok(),
                () = tokio::time::sleep(period) => {}
            }
            self.housekeeping();
        }
    }

    /// Hands back jobs held too long without starting, and gives up (sending nothing)
    /// those whose lease is lost before they started.
    pub(crate) fn housekeeping(&self) {
        let now = Instant::now();
        // While the intake's own defer rule holds it pulls nothing, so a hand-back is
        // offered to the other nodes at once; otherwise after the cancel delay, so this
        // node does not pull the same job straight back.
        let delay = if self.deferred() {
            None
        } else {
            Some(self.core.rules.cancel_delay)
        };
        for delivery in self.snapshot_waiting() {
            if delivery.lease().lost {
                give_up_waiting(&self.core, &self.target, &delivery, Mark::Lost);
            } else if now.saturating_duration_since(delivery.received) >= self.core.max_hold {
                give_up_waiting(&self.core, &self.target, &delivery, Mark::HandBack(delay));
            }
        }
        self.core.sweep_early();
    }

    /// Hands back every enqueued job that has not started (the intake stops).
    pub(crate) fn hand_back_waiting(&self) {
        for delivery in self.snapshot_waiting() {
            give_up_waiting(&self.core, &self.target, &delivery, Mark::HandBack(None));
        }
    }

    fn snapshot_waiting(&self) -> Vec<Arc<Delivery>> {
        self.core
            .held
            .iter()
            .filter(|d| !d.is_started() && !d.is_settling())
            .map(|d| Arc::clone(d.value()))
            .collect()
    }

    /// The housekeeping period.
    pub(crate) fn tick_period(&self) -> Duration {
        (self.core.pull_expiry / 4).clamp(Duration::from_millis(20), Duration::from_millis(250))
    }
}

/// Gives up an enqueued job that has not started (handed back, or its lease lost): marks
/// it, counts a hand-back, and cancels its operation, which then settles it by the mark.
///
/// The job is claimed first ([`Delivery::try_give_up`]): its body may start on a worker
/// at any moment, and a job whose body won the claim is left to run and be settled by its
/// outcome, neither counted as handed back nor cancelled. The list of waiting jobs a
/// caller went through was taken earlier and may be stale. Returns whether it was given up.
pub(crate) fn give_up_waiting<T: Target>(
    core: &Core,
    target: &T,
    delivery: &Delivery,
    mark: Mark,
) -> bool {
    // Not filed yet (enqueue returned an instant ago): the next look finds it.
    let Some(op) = delivery.op.get().copied() else {
        return false;
    };
    if !delivery.try_give_up() {
        return false;
    }
    delivery.set_mark(mark);
    if matches!(mark, Mark::HandBack(_)) {
        Counters::bump(&core.counters.handed_back);
    }
    target.cancel_op(op);
    true
}

/// The pull loop of a plain queue: one consumer shared by every node.
pub(crate) async fn run_plain<T: Target>(mut l: Loop<T>) {
    let client = l.core.nats.client().clone();
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(format!("{inbox}.>")).await else {
        tracing::warn!(queue = %l.core.names.queue, "cannot subscribe for pull replies; the intake stops");
        return;
    };
    let mut puller = Puller::new(&l.core.names.stream, PLAIN_CONSUMER, &inbox, 0, None);
    // The consumer has no filter: it reads every subject of the stream.
    let watched = vec![Watched {
        consumer: PLAIN_CONSUMER.to_owned(),
        filter: ">".to_owned(),
    }];
    orphans::spawn(Arc::clone(&l.core), watched.clone());
    let mut watch = l
        .defer
        .as_ref()
        .map(|rule| l.core.sink.watch(&rule.watched()));
    let mut tick = tokio::time::interval(l.tick_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connects = l.core.nats.stats().connects;
    let mut pause_until = Instant::now();
    'pull: loop {
        // A closed coordinator takes no job: pulling would only take jobs from other nodes
        // to hand them back, each delivery counted against `max_deliver`.
        if l.stopped || l.target.is_closed() {
            break 'pull;
        }
        if Instant::now() >= pause_until && l.core.nats.is_connected() && !l.deferred() {
            let capacity = l.capacity();
            let used = l.core.held_count() + puller.outstanding();
            let room = capacity.saturating_sub(used);
            if room > 0 && (puller.open() == 0 || room >= capacity.div_ceil(2)) {
                match puller.request(&client, room, l.core.pull_expiry).await {
                    Ok(()) => Counters::bump(&l.core.counters.pull_requests),
                    Err(_) => pause_until = Instant::now() + Duration::from_millis(100),
                }
            }
        }
        tokio::select! {
            biased;
            _ = &mut l.stop => break 'pull,
            message = replies.next() => {
                let Some(message) = message else { break 'pull };
                if let Some(status) = message.status.filter(|s| *s != async_nats::StatusCode::OK) {
                    let Some((_, request)) = route(&inbox, message.subject.as_str()) else { continue };
                    match puller.on_status(request, status, message.description.as_deref(), message.headers.as_ref()) {
                        Status::Unavailable => pause_until = Instant::now() + Duration::from_millis(250),
                        Status::Broken(why) => {
                            tracing::warn!(queue = %l.core.names.queue, %why, "pulling failed; retrying in 1 s");
                            pause_until = Instant::now() + Duration::from_secs(1);
                        }
                        Status::Ended | Status::PinLost | Status::Ignore => {}
                    }
                    continue;
                }
                let Some(info) = message.reply.as_deref().and_then(ack_info) else { continue };
                let (delivered, seq) = (info.delivered, info.stream_seq);
                l.core.counters.pull_answered(puller.on_job());
                let delivery = l.core.receive(&message, delivered, seq, None);
                let job = Job { delivery: Arc::clone(&delivery), payload: message.payload, headers: message.headers };
                if !l.enqueue(delivery, job).await {
                    break 'pull;
                }
            }
            () = l.core.room.notified() => {}
            () = changed(watch.as_mut()) => {}
            _ = tick.tick() => {
                let now_connects = l.core.nats.stats().connects;
                if now_connects != connects {
                    connects = now_connects;
                    puller.reset();
                    orphans::spawn(Arc::clone(&l.core), watched.clone());
                }
                puller.expire(Instant::now());
                l.housekeeping();
            }
        }
    }
    l.hand_back_waiting();
    // Requests still open may bring jobs until they expire: take them and hand them back
    // at once rather than let them sit undelivered until ack_wait.
    let until = Instant::now() + l.core.pull_expiry + Duration::from_millis(200);
    while puller.outstanding() > 0 {
        let Ok(Some(message)) = tokio::time::timeout_at(until, replies.next()).await else {
            break;
        };
        if let Some(status) = message.status.filter(|s| *s != async_nats::StatusCode::OK) {
            if let Some((_, request)) = route(&inbox, message.subject.as_str()) {
                let _ = puller.on_status(
                    request,
                    status,
                    message.description.as_deref(),
                    message.headers.as_ref(),
                );
            }
            continue;
        }
        if let Some(info) = message.reply.as_deref().and_then(ack_info) {
            l.core.counters.pull_answered(puller.on_job());
            let delivery = l
                .core
                .receive(&message, info.delivered, info.stream_seq, None);
            l.core.hand_back(&l.tx, delivery, None);
        }
    }
}

/// Waits for a change of the defer rule's signals (for ever without a rule).
pub(crate) async fn changed(watch: Option<&mut ephemeral::Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}
