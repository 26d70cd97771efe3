//! `WorkQueue`: the handle of one queue on the server.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, PriorityPolicy};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{
    self, Config as StreamConfig, RetentionPolicy, StorageType, SubjectTransform,
};
use bytes::Bytes;
use ephemeral::{
    Admission, EphemeralKeyedWorkCoordinator, EphemeralOptions, EphemeralWorkCoordinator,
    OperationContext, Pattern,
};
use tokio::sync::{mpsc, oneshot};

use super::claims::Claims;
use super::dead::{self, DeadLetters};
use super::error::{NO_MESSAGE_FOUND, QueueError, jetstream, js_code, js_err};
use super::intake::{DeferRule, Intake, Loop, Target, run_plain};
use super::job::{Job, start_body};
use super::keyed::run_keyed;
use super::lease::LeaseCheck;
use super::names::{self, GROUP, Names, PLAIN_CONSUMER};
use super::options::{IntakeOptions, Storage, WorkQueueOptions};
use super::settle::Rules;
use super::state::{Core, CoreConfig, Finalizer};
use crate::durations::{jetstream_age, jetstream_duration};
use crate::{Nats, NatsError};

/// "stream not found"
const STREAM_NOT_FOUND: u64 = 10059;
/// "stream name already in use with a different configuration"
const STREAM_NAME_IN_USE: u64 = 10058;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pushed {
    /// The job's sequence number in the work stream (for a duplicate: the first push's).
    pub sequence: u64,
    /// The id was pushed before, within the duplicate window: nothing new was queued.
    pub duplicate: bool,
}

/// The queue's counters on the server, from [`WorkQueue::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Jobs in the work stream (queued and held).
    pub messages: u64,
    /// Jobs never delivered to any node yet (the server's `num_pending`).
    pub queued: u64,
    /// Jobs delivered and not yet acknowledged, all nodes together (the server's
    /// `num_ack_pending`). JetStream counts a job handed back (a nak: a failure with
    /// backoff, a cancellation, a node stopping) here until it is delivered again, and
    /// reports no separate count of those, so after a hand-back `held` stays up while no
    /// node holds the job. [`IntakeStats`](super::IntakeStats) counts what one node holds.
    pub held: u64,
    /// Of the held jobs, those delivered more than once (the server's `num_redelivered`).
    pub redelivered: u64,
    /// Pull requests waiting on the server.
    pub waiting_pulls: u64,
    /// Jobs in the dead-letter stream.
    pub dead: u64,
}

/// A JetStream work queue that coordinators on any number of machines drain together.
///
/// * **Create or bind**: [`Nats::work_queue`] creates the work stream
///   `<PREFIX>_WQ_<name>` (work-queue retention: a job is removed once acknowledged), its
///   dead-letter stream `<PREFIX>_WQ_<name>_DEAD`, and its consumers, or binds to them
///   (`<PREFIX>`: the subject prefix upper-cased with `_` for `.`, `EPHEMERAL` by default;
///   a prefix with capitals or `_` also gets `_h` and a hash, so no two prefixes share a
///   stream). [`stream_name`](Self::stream_name) gives the name. A queue name is 1 to 64
///   letters, digits, `-` and `_`, and does not end in `_DEAD` (queue `x`'s dead-letter
///   stream is `…_WQ_x_DEAD`). Both streams are checked when bound: a stream of either name
///   set up for anything else is [`QueueError::Incompatible`], never adopted.
/// * **Push**: [`push`](Self::push) / [`push_keyed`](Self::push_keyed) (and the JSON
///   forms) queue a job under an id; a second push of the same id within the
///   `duplicate_window` is [`Pushed::duplicate`] and queues nothing. A push waits for the
///   server's confirmation and retries (with the same id, so never twice) while the
///   server does not answer, up to `push_timeout`.
/// * **Drain**: [`work_coordinator`](Self::work_coordinator) /
///   [`keyed_coordinator`](Self::keyed_coordinator) build an ordinary coordinator fed
///   from the queue, and an [`Intake`] guard. Every query, signal rule and admission hook
///   works on it as usual; each job is settled with the server by its operation's terminal
///   state (see the [module docs](super)).
/// * **Look**: [`stats`](Self::stats), [`dead_letters`](Self::dead_letters).
///
/// A cheap [`Clone`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// use ephemeral::{EphemeralOptions, OperationContext};
/// use ephemeral_nats::Nats;
/// use ephemeral_nats::queue::{IntakeOptions, Job, WorkQueueOptions};
///
/// let nats = Nats::connect(&server.url()).await?;
/// let queue = nats.work_queue("thumbnails", WorkQueueOptions::default()).await?;
/// assert!(!queue.push("img-1", "cat.jpg").await?.duplicate);
/// assert!(queue.push("img-1", "cat.jpg").await?.duplicate); // same id: one job
///
/// // On any machine: a coordinator drained from the queue.
/// let (coordinator, intake) = queue
///     .work_coordinator(
///         |job: Job, _ctx: OperationContext| async move {
///             println!("resizing {:?} (delivery {})", job.payload(), job.delivered());
///             Ok::<_, std::convert::Infallible>(())
///         },
///         EphemeralOptions::default().max_concurrency(4),
///         IntakeOptions::default(),
///     )
///     .await?;
/// while coordinator.stats().completed < 1 {
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// }
/// // (A worker runs until told to stop.) Stops pulling, hands back what has not started,
/// // waits for what runs.
/// let stats = intake.shutdown().await;
/// assert_eq!((stats.pulled, stats.acked), (1, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct WorkQueue {
    inner: Arc<Inner>,
}

struct Inner {
    nats: Nats,
    names: Names,
    options: WorkQueueOptions,
    stream: stream::Stream,
    dead: stream::Stream,
}

impl Nats {
    /// Creates the work queue `name` (its work stream, dead-letter stream and consumers)
    /// or binds to it. See [`WorkQueue`].
    ///
    /// # Errors
    ///
    /// A bad name or option ([`QueueError::BadName`] also for a name ending in `_DEAD`: the
    /// queue named without it keeps its dead letters in the stream that would be this
    /// queue's), [`QueueError::Incompatible`] for a work or dead-letter stream of that name
    /// set up otherwise (another retention, other subjects, plain vs keyed, another
    /// partition count),
    /// [`NatsError::ServerTooOld`] (a keyed queue needs 2.11), [`NatsError::Client`] saying
    /// the connection is down or to enable JetStream when the server (or the account) has
    /// none, or the server's refusal.
    pub async fn work_queue(
        &self,
        name: &str,
        options: WorkQueueOptions,
    ) -> Result<WorkQueue, QueueError> {
        WorkQueue::create(self, name, options).await
    }
}

fn storage(s: Storage) -> StorageType {
    match s {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

impl WorkQueue {
    async fn create(
        nats: &Nats,
        name: &str,
        options: WorkQueueOptions,
    ) -> Result<Self, QueueError> {
        options.validate()?;
        let names = Names::new(nats.prefix(), name)?;
        match options.partitions {
            Some(_) => nats.require_server("2.11.0", "keyed work queues (pinned consumers)")?,
            None => nats.require_server("2.10.0", "work queues")?,
        }
        if let Some(message) = nats.jetstream_unusable().await {
            return Err(NatsError::Client {
                op: "open a work queue",
                message,
            }
            .into());
        }
        let js = nats.jetstream();
        let (subjects, transform) = match options.partitions {
            None => (vec![names.jobs()], None),
            Some(p) => (
                vec![names.keyed_wildcard()],
                Some(SubjectTransform {
                    source: names.keyed_wildcard(),
                    destination: names.partition_transform(p),
                }),
            ),
        };
        let work = StreamConfig {
            name: names.stream.clone(),
            subjects,
            subject_transform: transform,
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: jetstream_duration(options.duplicate_window),
            max_age: options.max_age.map_or(Duration::ZERO, jetstream_age),
            storage: storage(options.storage),
            allow_direct: true,
            ..Default::default()
        };
        let stream = get_or_create(js, work).await?;
        check_stream(&names, &options, stream.cached_info())?;
        let dead = get_or_create(
            js,
            StreamConfig {
                name: names.dead_stream.clone(),
                subjects: vec![names.dead()],
                retention: RetentionPolicy::Limits,
                max_age: jetstream_age(options.dead_letter_max_age),
                // Dead letters are published with ids too; the server allows no window
                // longer than the stream keeps messages.
                duplicate_window: jetstream_duration(
                    options.duplicate_window.min(options.dead_letter_max_age),
                ),
                storage: storage(options.storage),
                ..Default::default()
            },
        )
        .await?;
        check_dead_stream(&names, dead.cached_info())?;
        let base = consumer::pull::Config {
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            max_deliver: i64::from(options.max_deliver),
            max_ack_pending: i64::from(options.max_ack_pending),
            ..Default::default()
        };
        match options.partitions {
            None => {
                let config = consumer::pull::Config {
                    durable_name: Some(PLAIN_CONSUMER.to_owned()),
                    ..base
                };
                stream
                    .create_consumer(config)
                    .await
                    .map_err(|e| js_err("create the queue's consumer", &e))?;
            }
            Some(p) => {
                for n in 0..p {
                    let config = consumer::pull::Config {
                        durable_name: Some(Names::partition_consumer(n)),
                        filter_subject: names.partition_filter(n),
                        priority_policy: PriorityPolicy::PinnedClient,
                        priority_groups: vec![GROUP.to_owned()],
                        priority_timeout: options.pin_timeout,
                        ..base.clone()
                    };
                    stream
                        .create_consumer(config)
                        .await
                        .map_err(|e| js_err("create a partition consumer", &e))?;
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                nats: nats.clone(),
                names,
                options,
                stream,
                dead,
            }),
        })
    }

    /// The queue's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.names.queue
    }

    /// The work stream's name (`<PREFIX>_WQ_<name>`).
    #[must_use]
    pub fn stream_name(&self) -> &str {
        &self.inner.names.stream
    }

    /// The dead-letter stream's name (`<PREFIX>_WQ_<name>_DEAD`).
    #[must_use]
    pub fn dead_stream_name(&self) -> &str {
        &self.inner.names.dead_stream
    }

    /// The number of partitions of a keyed queue; `None` for a plain one.
    #[must_use]
    pub fn partitions(&self) -> Option<u16> {
        self.inner.options.partitions
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &WorkQueueOptions {
        &self.inner.options
    }

    /// Queues a job under `id` on a plain queue.
    ///
    /// **Ids.** 1 to 1024 bytes, no control characters, and no whitespace at either end:
    /// the id travels as a NATS header, whose value the server and clients trim (` a` would
    /// be taken for a duplicate of `a`, `a ` delivered as `a`), so such an id is refused
    /// with [`QueueError::BadId`] rather than changed. Whitespace inside (`order 7`) is kept.
    ///
    /// **Size.** Every job must fit its dead letter too (the payload with headers saying
    /// why it failed), or a job failing on its last delivery could never leave the work
    /// stream. So a payload may take the server's `max_payload` less 1,269 bytes, the id,
    /// the work stream's name and the job's subject: 1,048,576 − 1,309 − the id's length
    /// for the queue `orders` under the default prefix. The dead letter's error text is cut
    /// to 1024 bytes for that reason.
    ///
    /// # Errors
    ///
    /// [`QueueError::BadId`], [`QueueError::WrongKind`] on a keyed queue,
    /// [`QueueError::JobTooLarge`] (with the largest payload that fits), or
    /// [`QueueError::PushUnconfirmed`] when the server did not confirm within
    /// `push_timeout` (the job may be queued anyway: push it again with the same id).
    pub async fn push(&self, id: &str, payload: impl Into<Bytes>) -> Result<Pushed, QueueError> {
        if self.inner.options.partitions.is_some() {
            return Err(QueueError::WrongKind {
                queue: self.name().to_owned(),
                problem: "is keyed: push jobs with push_keyed",
            });
        }
        self.publish(self.inner.names.jobs(), id, payload.into())
            .await
    }

    /// Queues a job under `id` and `key` on a keyed queue: jobs of one key run one at a time
    /// in push order, across every node.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push), [`QueueError::BadKey`], and [`QueueError::WrongKind`] on a
    /// plain queue.
    pub async fn push_keyed(
        &self,
        key: &str,
        id: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Pushed, QueueError> {
        if self.inner.options.partitions.is_none() {
            return Err(QueueError::WrongKind {
                queue: self.name().to_owned(),
                problem: "is not keyed: create it with WorkQueueOptions::partitions to push keyed jobs",
            });
        }
        let token = names::encode_key(key)?;
        self.publish(self.inner.names.keyed(&token), id, payload.into())
            .await
    }

    /// [`push`](Self::push) with `value` as JSON (read it back with [`Job::json`]).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push), and [`QueueError::Encode`] for a value serde_json cannot
    /// encode.
    pub async fn push_json<T: serde::Serialize + ?Sized>(
        &self,
        id: &str,
        value: &T,
    ) -> Result<Pushed, QueueError> {
        let payload = encode(id, value)?;
        self.push(id, payload).await
    }

    /// [`push_keyed`](Self::push_keyed) with `value` as JSON.
    ///
    /// # Errors
    ///
    /// As [`push_keyed`](Self::push_keyed), and [`QueueError::Encode`].
    pub async fn push_keyed_json<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        id: &str,
        value: &T,
    ) -> Result<Pushed, QueueError> {
        let payload = encode(id, value)?;
        self.push_keyed(key, id, payload).await
    }

    async fn publish(
        &self,
        subject: String,
        id: &str,
        payload: Bytes,
    ) -> Result<Pushed, QueueError> {
        names::check_id(id)?;
        // A job that fails on its last delivery is copied, with why, to the dead-letter
        // stream; the server counts those headers against its max_payload too. A job whose
        // dead letter would not fit could never be dead-lettered, and would stay in the work
        // stream for ever, undelivered: so the room for them is kept now.
        let too_large = || {
            let max_payload = self.inner.nats.max_payload();
            let overhead = dead::overhead(
                id,
                &self.inner.names.stream,
                self.inner.names.stored_len(&subject),
            );
            let max = max_payload.saturating_sub(overhead);
            (payload.len() > max).then(|| QueueError::JobTooLarge {
                queue: self.name().to_owned(),
                id: super::error::shorten(id),
                len: payload.len(),
                max,
                max_payload,
                overhead,
            })
        };
        if let Some(error) = too_large() {
            return Err(error);
        }
        let js = self.inner.nats.jetstream();
        let deadline = tokio::time::Instant::now() + self.inner.options.push_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let publish = Publish::build().payload(payload.clone()).message_id(id);
            let attempt = async {
                let ack = js.send_publish(subject.clone(), publish).await?;
                ack.await
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let per_try = left.min(Duration::from_secs(2));
            let failure = match tokio::time::timeout(per_try, attempt).await {
                Ok(Ok(ack)) => {
                    return Ok(Pushed {
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Ok(Err(e)) => {
                    use async_nats::jetstream::context::PublishErrorKind as K;
                    match e.kind() {
                        // The server's max_payload changed meanwhile (a reconnect to another).
                        K::MaxPayloadExceeded => {
                            return Err(
                                too_large().unwrap_or_else(|| jetstream("push a job", &e).into())
                            );
                        }
                        // No answer (a restart, a leader election): the same id again is safe.
                        K::TimedOut | K::BrokenPipe | K::StreamNotFound | K::MaxAckPending => {
                            jetstream("push a job", &e)
                        }
                        _ => return Err(jetstream("push a job", &e).into()),
                    }
                }
                Err(_) => NatsError::Timeout {
                    topic: format!("job {}", super::error::shorten(id)),
                    after: per_try,
                },
            };
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(QueueError::PushUnconfirmed {
                    queue: self.name().to_owned(),
                    id: super::error::shorten(id),
                    after: self.inner.options.push_timeout,
                    last: Box::new(failure),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The queue's counters on the server.
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut work = self.inner.stream.clone();
        let mut dead = self.inner.dead.clone();
        let messages = work
            .info()
            .await
            .map_err(|e| jetstream("read queue stats", &e))?
            .state
            .messages;
        let dead = dead
            .info()
            .await
            .map_err(|e| jetstream("read queue stats", &e))?
            .state
            .messages;
        let mut stats = QueueStats {
            messages,
            dead,
            ..QueueStats::default()
        };
        let consumers: Vec<String> = match self.inner.options.partitions {
            None => vec![PLAIN_CONSUMER.to_owned()],
            Some(p) => (0..p).map(Names::partition_consumer).collect(),
        };
        for name in consumers {
            let info = work
                .consumer_info(&name)
                .await
                .map_err(|e| js_err("read queue stats", &e))?;
            stats.queued += info.num_pending;
            stats.held += info.num_ack_pending as u64;
            stats.redelivered += info.num_redelivered as u64;
            stats.waiting_pulls += info.num_waiting as u64;
        }
        Ok(stats)
    }

    /// The dead letters kept now, oldest first.
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn dead_letters(&self) -> Result<DeadLetters, QueueError> {
        DeadLetters::read(self.inner.names.clone(), self.inner.dead.clone()).await
    }

    /// Removes one dead letter (by its [`DeadLetter::sequence`](super::DeadLetter::sequence));
    /// false if it was not there.
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn remove_dead_letter(&self, sequence: u64) -> Result<bool, QueueError> {
        match self.inner.dead.delete_message(sequence).await {
            Ok(deleted) => Ok(deleted),
            Err(e) if js_code(&e) == Some(NO_MESSAGE_FOUND) => Ok(false),
            Err(e) => Err(js_err("remove a dead letter", &e).into()),
        }
    }

    /// The idempotency claims of this queue's jobs, each kept for `ttl` (a KV bucket
    /// `<PREFIX>_WQ_<name>_CLAIMS`, created on first use with that time to live, which
    /// every node then uses). See [`Claims`].
    ///
    /// # Errors
    ///
    /// A zero `ttl`, [`QueueError::Incompatible`] when the bucket exists with another
    /// time to live (naming it), or the server's refusal.
    pub async fn claims(&self, ttl: Duration) -> Result<Claims, QueueError> {
        Claims::open(
            self.inner.nats.jetstream(),
            self.inner.names.claims_bucket(),
            ttl,
            storage(self.inner.options.storage),
        )
        .await
    }

    /// A work coordinator fed from this (plain) queue, and the guard of its intake.
    ///
    /// `body` runs once per delivery of a job. The coordinator is an ordinary
    /// [`EphemeralWorkCoordinator`]: its queries, signal rules and `cancel_operation` work
    /// as usual, and each job is settled with the server by its operation's terminal state.
    /// The queue sets the options' `on_finalized` to do that; give your own to
    /// [`IntakeOptions::on_finalized`].
    ///
    /// # Errors
    ///
    /// [`QueueError::WrongKind`] on a keyed queue, bad options, or no runtime.
    pub async fn work_coordinator<F, Fut, E>(
        &self,
        body: F,
        options: EphemeralOptions,
        intake: IntakeOptions,
    ) -> Result<(EphemeralWorkCoordinator<Job>, Intake), QueueError>
    where
        F: Fn(Job, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        self.work_coordinator_with_admission(body, options, Vec::new(), intake)
            .await
    }

    /// [`work_coordinator`](Self::work_coordinator) with [`Admission`] hooks.
    ///
    /// The queue asks one hook of its own after these, right before a body starts: a job
    /// whose lease ran out while it waited (the node stalled past `ack_wait`, so the server
    /// may have given it to another node) ends `Cancelled(Admission(..))` without running,
    /// and nothing is sent for it.
    ///
    /// # Errors
    ///
    /// As [`work_coordinator`](Self::work_coordinator).
    pub async fn work_coordinator_with_admission<F, Fut, E>(
        &self,
        body: F,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
        intake: IntakeOptions,
    ) -> Result<(EphemeralWorkCoordinator<Job>, Intake), QueueError>
    where
        F: Fn(Job, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        if self.inner.options.partitions.is_some() {
            return Err(QueueError::WrongKind {
                queue: self.name().to_owned(),
                problem: "is keyed: drain it with keyed_coordinator",
            });
        }
        let (parts, options) = self.prepare(&intake, options)?;
        let hooks = with_lease_check(hooks, &parts.core);
        let core = Arc::clone(&parts.core);
        let wrapped = move |job: Job, ctx: OperationContext| start_body(&core, &body, job, ctx);
        let coordinator = EphemeralWorkCoordinator::with_admission(wrapped, options, hooks)?;
        self.start(parts, coordinator, intake, None).await
    }

    /// A keyed coordinator fed from this keyed queue (keys as `Arc<str>`), and the guard of
    /// its intake. Jobs of one key start in push order, one at a time, across every node;
    /// see the [module docs](super) for how ownership moves when a node dies.
    ///
    /// # Errors
    ///
    /// [`QueueError::WrongKind`] on a plain queue, bad options, or no runtime.
    pub async fn keyed_coordinator<F, Fut, E>(
        &self,
        body: F,
        options: EphemeralOptions,
        intake: IntakeOptions,
    ) -> Result<(EphemeralKeyedWorkCoordinator<Arc<str>, Job>, Intake), QueueError>
    where
        F: Fn(Job, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        self.keyed_coordinator_with_admission(body, options, Vec::new(), intake)
            .await
    }

    /// [`keyed_coordinator`](Self::keyed_coordinator) with [`Admission`] hooks (and the
    /// queue's lease check after them, as in
    /// [`work_coordinator_with_admission`](Self::work_coordinator_with_admission)).
    ///
    /// # Errors
    ///
    /// As [`keyed_coordinator`](Self::keyed_coordinator).
    pub async fn keyed_coordinator_with_admission<F, Fut, E>(
        &self,
        body: F,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
        intake: IntakeOptions,
    ) -> Result<(EphemeralKeyedWorkCoordinator<Arc<str>, Job>, Intake), QueueError>
    where
        F: Fn(Job, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        let Some(partitions) = self.inner.options.partitions else {
            return Err(QueueError::WrongKind {
                queue: self.name().to_owned(),
                problem: "is not keyed: drain it with work_coordinator",
            });
        };
        let (parts, options) = self.prepare(&intake, options)?;
        let hooks = with_lease_check(hooks, &parts.core);
        let core = Arc::clone(&parts.core);
        let wrapped = move |job: Job, ctx: OperationContext| start_body(&core, &body, job, ctx);
        let coordinator = EphemeralKeyedWorkCoordinator::with_admission(wrapped, options, hooks)?;
        self.start(parts, coordinator, intake, Some(partitions))
            .await
    }

    /// Builds the shared state and sets the coordinator's `on_finalized` and defer rule.
    fn prepare(
        &self,
        intake: &IntakeOptions,
        options: EphemeralOptions,
    ) -> Result<(Prepared, EphemeralOptions), QueueError> {
        intake.validate()?;
        let q = &self.inner.options;
        let mut options = options;
        if let Some(defer) = &intake.defer_on {
            // The coordinator has one defer rule: one set on its options too is kept by
            // deferring while either holds (they cannot be merged with a resume rule).
            let combined = match options.defer_on_setting() {
                Some(own) if own != defer => {
                    if options.resume_on_setting().is_some() || intake.resume_on.is_some() {
                        return Err(QueueError::Options {
                            option: "defer_on",
                            rule: "given once when a resume_on is set: the coordinator's options and the intake both have a defer rule; give both patterns to IntakeOptions::defer_on, separated by a comma, and one resume_on",
                        });
                    }
                    format!("{own},{defer}")
                }
                _ => defer.clone(),
            };
            options = options.defer_on(&combined);
        }
        if let Some(resume) = &intake.resume_on {
            options = options.resume_on(resume);
        }
        // The coordinator's sink: the one given, or a private one made here so that the
        // queue can raise its signals into it.
        let sink = sink_of(&options);
        let options = options.signals(sink.clone());
        let core = Arc::new(Core::new(CoreConfig {
            nats: self.inner.nats.clone(),
            names: self.inner.names.clone(),
            stream: self.inner.stream.clone(),
            rules: Rules {
                max_deliver: q.max_deliver,
                backoff: q.backoff.clone(),
                cancel_delay: intake.cancel_delay.unwrap_or(Duration::from_secs(5)),
            },
            ack_wait: q.ack_wait,
            ack_mode: intake.ack_mode,
            max_hold: intake.max_hold.unwrap_or(q.ack_wait * 5),
            pull_expiry: intake.pull_expiry.unwrap_or(Duration::from_secs(1)),
            sink,
            on_settled: intake.on_settled.clone(),
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let finalizer = Finalizer {
            core: Arc::clone(&core),
            tx: tx.clone(),
            user: intake.on_finalized.clone(),
        };
        let options = options.on_finalized(move |snapshot| finalizer.on_finalized(snapshot));
        Ok((Prepared { core, tx, rx }, options))
    }

    async fn start<T: Target + Clone>(
        &self,
        parts: Prepared,
        coordinator: T,
        intake: IntakeOptions,
        partitions: Option<u16>,
    ) -> Result<(T, Intake), QueueError> {
        let Prepared { core, tx, rx } = parts;
        let janitor = super::janitor::start(Arc::clone(&core)).await?;
        tokio::spawn(super::acker::run(Arc::clone(&core), rx));
        let (stop_tx, stop_rx) = oneshot::channel();
        let defer = intake.defer_on.as_deref().map(|defer| DeferRule {
            defer: Pattern::new(defer),
            resume: intake.resume_on.as_deref().map(Pattern::new),
        });
        let l = Loop {
            core: Arc::clone(&core),
            target: coordinator.clone(),
            tx,
            prefetch: intake.prefetch,
            defer,
            stop: stop_rx,
            stopped: false,
        };
        let task = match partitions {
            None => tokio::spawn(run_plain(l)),
            Some(p) => {
                let node = intake.node.clone().unwrap_or_else(|| {
                    let inbox = self.inner.nats.client().new_inbox();
                    inbox.rsplit('.').next().unwrap_or("node").to_owned()
                });
                let q = &self.inner.options;
                tokio::spawn(run_keyed(l, p, node, q.member_ttl, q.pin_timeout))
            }
        };
        Ok((
            coordinator,
            Intake {
                core,
                stop: Some(stop_tx),
                task: Some(task),
                janitor: Some(janitor),
            },
        ))
    }
}

/// `value` as JSON for job `id`.
fn encode<T: serde::Serialize + ?Sized>(id: &str, value: &T) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(|source| QueueError::Encode {
        id: super::error::shorten(id),
        source,
    })
}

/// The caller's hooks, then the lease check (last, so it runs right before the body).
fn with_lease_check(
    mut hooks: Vec<Arc<dyn Admission>>,
    core: &Arc<Core>,
) -> Vec<Arc<dyn Admission>> {
    hooks.push(Arc::new(LeaseCheck(Arc::clone(core))));
    hooks
}

struct Prepared {
    core: Arc<Core>,
    tx: mpsc::UnboundedSender<super::state::Settle>,
    rx: mpsc::UnboundedReceiver<super::state::Settle>,
}

/// The sink the options name, or a fresh one.
fn sink_of(options: &EphemeralOptions) -> ephemeral::SignalSink {
    // The options keep their sink private; a throwaway coordinator tells which one it is.
    let probe = EphemeralWorkCoordinator::new(
        |(): (), _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
        options.clone().on_finalized(|_| {}),
    );
    match probe {
        Ok(probe) => {
            let sink = probe.sink().clone();
            probe.cancel();
            sink
        }
        Err(_) => ephemeral::SignalSink::default(),
    }
}

async fn get_or_create(
    js: &async_nats::jetstream::Context,
    config: StreamConfig,
) -> Result<stream::Stream, QueueError> {
    for _ in 0..3 {
        match js.get_stream(&config.name).await {
            Ok(stream) => return Ok(stream),
            Err(e) if js_code(&e) == Some(STREAM_NOT_FOUND) => {}
            Err(e) => return Err(js_err("look up a queue stream", &e).into()),
        }
        match js.create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            // Another node created it first: bind to it.
            Err(e) if js_code(&e) == Some(STREAM_NAME_IN_USE) => {}
            Err(e) => return Err(js_err("create a queue stream", &e).into()),
        }
    }
    Err(NatsError::Client {
        op: "create a queue stream",
        message: format!("stream {} kept appearing and vanishing", config.name),
    }
    .into())
}

fn check_stream(
    names: &Names,
    options: &WorkQueueOptions,
    info: &stream::Info,
) -> Result<(), QueueError> {
    let incompatible = |problem: String| {
        Err(QueueError::Incompatible {
            stream: names.stream.clone(),
            problem,
        })
    };
    if info.config.retention != RetentionPolicy::WorkQueue {
        return incompatible("it is not a work-queue stream".to_owned());
    }
    let subjects = &info.config.subjects;
    let (plain, keyed) = ([names.jobs()], [names.keyed_wildcard()]);
    if subjects != &plain && subjects != &keyed {
        return incompatible(format!(
            "it is not this queue's (its subjects are {subjects:?}, not `{}` or `{}`)",
            plain[0], keyed[0]
        ));
    }
    match options.partitions {
        None if subjects != &plain => {
            incompatible("it is not a plain work queue (it was created keyed)".to_owned())
        }
        Some(_) if subjects != &keyed => {
            incompatible("it is a plain work queue, not keyed".to_owned())
        }
        Some(p) => {
            let want = names.partition_transform(p);
            match &info.config.subject_transform {
                Some(t) if t.destination == want => Ok(()),
                Some(t) => incompatible(format!(
                    "it was created with another partition count ({})",
                    t.destination
                )),
                None => incompatible("it is a plain work queue, not keyed".to_owned()),
            }
        }
        None => Ok(()),
    }
}

/// Checks that the dead-letter stream is this queue's: a limits stream on the queue's
/// dead-letter subject, and nothing else (a stream of that name made for anything else would
/// take in this queue's dead letters, or hand its own messages out as dead letters).
fn check_dead_stream(names: &Names, info: &stream::Info) -> Result<(), QueueError> {
    let config = &info.config;
    let problem = if config.retention != RetentionPolicy::Limits {
        format!(
            "it is not a dead-letter stream ({:?} retention, not limits)",
            config.retention
        )
    } else if config.subjects != [names.dead()] {
        format!(
            "it is not this queue's dead-letter stream (its subjects are {:?}, not `{}`)",
            config.subjects,
            names.dead()
        )
    } else {
        return Ok(());
    };
    Err(QueueError::Incompatible {
        stream: names.dead_stream.clone(),
        problem,
    })
}

impl fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("name", &self.inner.names.queue)
            .field("stream", &self.inner.names.stream)
            .field("partitions", &self.inner.options.partitions)
            .finish()
    }
}
