//! Work across machines: coordinators on any number of nodes draining one JetStream work
//! queue, nothing lost when a node dies.
//!
//! # Overview
//!
//! A [`WorkQueue`] is a JetStream stream with work-queue retention (a job is removed once
//! acknowledged), its dead-letter stream, and its consumers. Producers
//! [`push`](WorkQueue::push) jobs under an id (a second push of the same id is a duplicate,
//! not a second job). Each node runs an ordinary coordinator fed from the queue
//! ([`WorkQueue::work_coordinator`], [`WorkQueue::keyed_coordinator`]): every query, signal
//! rule and admission hook works as on one machine, and each job is settled with the server
//! by the terminal state of the operation that ran it.
//!
//! | terminal state | sent to the server |
//! |---|---|
//! | `Completed` | `+ACK`, confirmed by default ([`AckMode`]) |
//! | `Failed` (error, panic, or aborted after its grace period) | `-NAK` with the queue's backoff; on the last delivery (`max_deliver`): a dead letter, then `+TERM` |
//! | `Cancelled` by a signal, an admission hook or `max_defer` | `-NAK` after [`IntakeOptions::cancel_delay`] (at least the signal's remaining time to live): the cluster keeps the job |
//! | `Cancelled(Shutdown)` | `-NAK` at once: another node takes it |
//! | `Cancelled(Explicit)` (`cancel_operation`) | `+TERM`, and the signal `nats.job.dropped` (key: the job id) |
//! | anything but `Completed` or `Cancelled(Explicit)` on the last delivery (each return uses a delivery) | a dead letter, then `+TERM` (the server would otherwise keep the job for ever, undelivered) |
//! | lease lost (below) | `+ACK` if it completed; otherwise nothing |
//!
//! # Delivery is at least once
//!
//! A job whose node dies (or stays out of touch with the server for longer than
//! `ack_wait`) before it is acknowledged runs again on another node. This is counted, not
//! hidden: [`Job::delivered`] is the delivery count, [`IntakeStats::redelivered`] counts
//! the redeliveries a node pulled (for good), [`QueueStats::redelivered`] those held
//! unacknowledged now (0 once they are done), and a job that never completes within
//! `max_deliver` deliveries ends in the dead-letter stream ([`WorkQueue::dead_letters`]).
//! For side effects that must not repeat, [`Claims`] claims a job id across nodes.
//!
//! # Job sizes
//!
//! A job must fit the server's `max_payload` (1 MiB by default) twice over: pushed, and
//! as its dead letter, which carries the payload with headers saying why (the error text
//! cut to 1024 bytes). [`WorkQueue::push`] keeps that room: a payload may take
//! `max_payload` less 1,269 bytes, the id, the work stream's name and the job's subject
//! (about 1.3 KB in all); a larger one is [`QueueError::JobTooLarge`], naming the limit.
//!
//! # What a node holds
//!
//! * **Never more than it has room for.** A node asks the server for no more jobs than
//!   `max_concurrency + prefetch − held` (each pull request names its own credit, so the
//!   count is exact), and `max_ack_pending` bounds all nodes together. A keyed node with
//!   no room keeps its partitions' pins with keep-alives that cannot deliver a job; only
//!   while it catches up on a partition that came to it (its old owner's jobs come back
//!   only to a pull) it takes one job of that partition at a time past the bound, at most
//!   one per 100 ms, until caught up (see the `keyed` pull loop's "Bounds").
//! * **Kept alive.** Every held job, waiting or running, gets a confirmed `+WPI` ping once
//!   a third of `ack_wait` has passed since its last one, so a long body is not delivered
//!   to another node while it runs.
//! * **Leases.** A node counts a job as its own until `ack_wait` (a tenth short) after its
//!   last confirmed ping. Past that the server may have given it to another node, and a
//!   late `-NAK` or `+TERM` would land on that node's delivery: the node then sends no
//!   failure ack for the job, only `+ACK` if it completes, raises `nats.lease.lost` (key:
//!   the job id) in the coordinator's sink, and gives up a lost job that has not started
//!   (checked again right before a body starts, so a node waking from a stall longer than
//!   `ack_wait` does not start what it held: such a job ends `Cancelled(Admission(..))`).
//! * **Deferral.** While the defer rule of [`IntakeOptions::defer_on`] holds, the node
//!   pulls nothing, acknowledges nothing, keeps what it holds alive, and hands back what
//!   waited longer than [`IntakeOptions::max_hold`]; the moment the rule stops holding it
//!   pulls again (the sink is watched, not polled).
//! * **Stopping.** Dropping the [`Intake`] (or [`Intake::shutdown`]) stops pulling and
//!   hands back at once what has not started; running jobs finish and are settled. A
//!   coordinator that closes (`complete`, `cancel`, a drain rule) stops its intake the
//!   same way within a housekeeping tick (at most 250 ms): it pulls no job it could not
//!   run. Only what its requests still open bring is taken and handed back.
//!
//! # A server restart
//!
//! Nothing is lost, and some jobs run twice: while it shuts down (about 100 ms), nats-server
//! 2.15.1 still delivers jobs whose acks its consumers no longer answer, and delivers them
//! again after the restart. A node repeats at most what it holds (`max_concurrency +
//! prefetch`; a keyed node catching up on a partition may hold one more job per 100 ms
//! spent catching up). Keyed nodes used to pull on while their acks went unanswered (a
//! probe: 58 to 193 of 400 jobs ran twice per restart; a like one 0 to 54, and 0 to 3 since
//! a full keyed node only keeps its pins). Rarely the server also keeps a
//! job it counts as acknowledged in the stream, where no consumer delivers it again: after
//! every reconnect (and when it starts) an intake moves such jobs to the dead letters with
//! the reason [`ORPHAN_REASON`] (they most likely ran), counted in
//! [`IntakeStats::orphaned`], so the queue drains.
//!
//! # Per-key order across nodes
//!
//! A keyed queue ([`WorkQueueOptions::partitions`]) stores each job under its key's
//! partition, and each partition has one owner at a time (a pinned consumer; the owners are
//! spread by rendezvous hashing over the live nodes). Job n + 1 of a key never starts before
//! job n has started, on any node, also when an owner dies: a new owner starts nothing of a
//! partition until every job the old owner held is back or settled, and then starts them
//! in push order. A failed job that is retried later runs after the key's newer jobs that
//! were already held (a retry does not block its key). See the `keyed` notes in
//! [`WorkQueue::keyed_coordinator`].
//!
//! # Server objects
//!
//! For queue `orders` under the prefix `ephemeral`: stream `EPHEMERAL_WQ_orders` (subject
//! `ephemeral.wq.orders.j`, or `….k.<key>` stored as `….p.<partition>.<key>` when keyed),
//! consumer `work` (or `part-0` … `part-<P−1>`), dead-letter stream
//! `EPHEMERAL_WQ_orders_DEAD` (`ephemeral.wq.orders.dead`), claims bucket
//! `EPHEMERAL_WQ_orders_CLAIMS`. A plain queue needs nats-server 2.10, a keyed one 2.11.

mod acker;
mod claims;
mod dead;
pub(crate) mod error;
mod intake;
mod janitor;
mod job;
mod keyed;
mod lease;
mod names;
mod options;
mod orphans;
mod pull;
#[allow(clippy::module_inception)]
mod queue;
mod settle;
mod state;

pub use claims::Claims;
pub use dead::{
    DEAD_DELIVERIES, DEAD_ERROR, DEAD_REASON, DEAD_SEQUENCE, DEAD_SUBJECT, DeadLetter, DeadLetters,
    JOB_ID,
};
pub use error::QueueError;
pub use intake::{Intake, IntakeStats};
pub use job::Job;
pub use options::{
    AckMode, FinalizedCallback, IntakeOptions, SettledCallback, Storage, WorkQueueOptions,
};
pub use orphans::ORPHAN_REASON;
pub use queue::{Pushed, QueueStats, WorkQueue};
pub use settle::{Outcome, Settled};
pub use state::{JOB_DROPPED_SIGNAL, LEASE_LOST_SIGNAL};
