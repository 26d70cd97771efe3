//! `WorkQueueOptions` (the queue on the server) and `IntakeOptions` (one node's intake).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::settle::Settled;
use crate::durations::STREAM_DURATION_FLOOR;

/// How a completed job is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AckMode {
    /// The ack waits for the server's confirmation, and is retried (then checked against the
    /// stream) until it is confirmed. A completed job is reported
    /// [`Outcome::Acked`](super::Outcome::Acked) only once the server has it. The default:
    /// an ack lost in a reconnect would otherwise run the job again without anyone knowing.
    #[default]
    Confirmed,
    /// The ack is sent and not waited for: faster, and an ack lost around a reconnect makes
    /// the server deliver the job again after `ack_wait` (at least once still holds; the extra
    /// run is counted in the delivery count).
    Fire,
}

/// Where the queue's streams keep their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Storage {
    /// On disk: jobs survive a server restart (the default).
    #[default]
    File,
    /// In memory: faster, lost when the server stops.
    Memory,
}

/// How a work queue is set up on the server: its stream, its dead-letter stream and its
/// consumers. Applied when the queue is created; a queue that already exists is bound as it
/// is, and its consumers are updated to these values (so every node should use the same).
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`partitions`](Self::partitions) | none: a plain queue | a keyed queue with this many partitions (per-key order across nodes, server 2.11+) |
/// | [`ack_wait`](Self::ack_wait) | 30 s | a held job not pinged or settled within it is delivered again (to any node) |
/// | [`max_deliver`](Self::max_deliver) | 5 | deliveries of one job, then it is dead-lettered |
/// | [`backoff`](Self::backoff) | 1 s, 5 s, 30 s, 2 min | the delay before a failed job's next delivery (the last value repeats) |
/// | [`max_ack_pending`](Self::max_ack_pending) | 1024 | jobs held by all nodes together (per partition on a keyed queue) |
/// | [`duplicate_window`](Self::duplicate_window) | 2 min | how long a job id is remembered: a second push within it is a duplicate (at least 100 ms) |
/// | [`max_age`](Self::max_age) | none | jobs older than this are dropped unprocessed |
/// | [`dead_letter_max_age`](Self::dead_letter_max_age) | 7 days | how long dead letters are kept (at least 100 ms) |
/// | [`storage`](Self::storage) | file | where both streams keep their messages |
/// | [`pin_timeout`](Self::pin_timeout) | 5 s | keyed: how long a silent owner keeps its partition |
/// | [`member_ttl`](Self::member_ttl) | 3 s | keyed: a node not heard from for this long no longer owns partitions |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_nats::queue::WorkQueueOptions;
///
/// let options = WorkQueueOptions::default()
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(3)
///     .backoff([Duration::from_millis(500), Duration::from_secs(5)]);
/// assert!(options.validate().is_ok());
/// assert!(WorkQueueOptions::default().max_deliver(0).validate().is_err());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct WorkQueueOptions {
    pub(crate) partitions: Option<u16>,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) max_ack_pending: u32,
    pub(crate) duplicate_window: Duration,
    pub(crate) max_age: Option<Duration>,
    pub(crate) dead_letter_max_age: Duration,
    pub(crate) storage: Storage,
    pub(crate) pin_timeout: Duration,
    pub(crate) member_ttl: Duration,
    pub(crate) push_timeout: Duration,
}

impl Default for WorkQueueOptions {
    fn default() -> Self {
        Self {
            partitions: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            max_ack_pending: 1024,
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            dead_letter_max_age: Duration::from_secs(7 * 24 * 3600),
            storage: Storage::File,
            pin_timeout: Duration::from_secs(5),
            member_ttl: Duration::from_secs(3),
            push_timeout: Duration::from_secs(5),
        }
    }
}

/// The smallest `ack_wait` accepted: pings go out every third of it, and a lease is cut a
/// tenth short, so much less leaves no room for a round trip.
pub(crate) const MIN_ACK_WAIT: Duration = Duration::from_millis(300);

/// The longest `ack_wait`, `pin_timeout`, `member_ttl` and `push_timeout` accepted: the
/// intake adds them to instants and multiplies them (a job's lease, `max_hold` = 5 ×
/// `ack_wait`), which must not overflow; a held job is kept alive by pings every third of
/// `ack_wait`, so a long job never needs a long one.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// The longest `pull_expiry` accepted: a pull is asked again as soon as it ends, so a longer
/// one gains nothing, and a stopping intake waits for its open pulls.
pub(crate) const MAX_PULL_EXPIRY: Duration = Duration::from_secs(3600);

impl WorkQueueOptions {
    /// A keyed queue with `n` partitions (1..=1024): jobs pushed with
    /// [`push_keyed`](super::WorkQueue::push_keyed) keep their order per key across every
    /// node. Fixed when the queue is created. Needs nats-server 2.11 or later.
    pub fn partitions(mut self, n: u16) -> Self {
        self.partitions = Some(n);
        self
    }

    /// How long the server waits for a held job to be pinged or settled before it delivers
    /// it again (at least 300 ms, at most 24 h).
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many times one job is delivered at most (at least 1); a job that has not
    /// completed after the last one goes to the dead-letter stream.
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = n;
        self
    }

    /// The delay before a failed job is delivered again: the first value after the first
    /// failure, and so on; the last value repeats. Empty means at once.
    pub fn backoff(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.backoff = delays.into_iter().collect();
        self
    }

    /// How many jobs all nodes together may hold unsettled (per partition on a keyed
    /// queue): cluster-wide backpressure (at least 1).
    pub fn max_ack_pending(mut self, n: u32) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// How long the server remembers a job id to refuse a second push of it (at least
    /// 100 ms, the server's minimum; one past what JetStream can express, about 292 years,
    /// is cut to that).
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Jobs older than `age` are dropped by the server, processed or not. At least the
    /// [`duplicate_window`](Self::duplicate_window) (the server remembers no id longer
    /// than it keeps jobs); an age past what JetStream can express (about 292 years) keeps
    /// jobs for ever.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How long dead letters are kept (at least 100 ms, the server's minimum; an age past
    /// what JetStream can express, about 292 years, keeps them for ever).
    pub fn dead_letter_max_age(mut self, age: Duration) -> Self {
        self.dead_letter_max_age = age;
        self
    }

    /// Where both streams keep their messages.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Keyed queues: how long a partition stays with an owner that stopped pulling (it
    /// died, or hangs) before another node may take it (at least 1 s, at most 24 h). Order
    /// does not depend on it: a new owner starts nothing until every job the old one held is
    /// back or settled.
    pub fn pin_timeout(mut self, timeout: Duration) -> Self {
        self.pin_timeout = timeout;
        self
    }

    /// Keyed queues: a node not heard from for this long loses its share of the partitions
    /// to the others (at least 300 ms, at most 24 h). Nodes announce themselves every third
    /// of it.
    pub fn member_ttl(mut self, ttl: Duration) -> Self {
        self.member_ttl = ttl;
        self
    }

    /// How long a push keeps retrying (with the same id, so never twice) while the server
    /// does not answer, say during a restart (at most 24 h).
    pub fn push_timeout(mut self, timeout: Duration) -> Self {
        self.push_timeout = timeout;
        self
    }

    /// Checks every value against what the library and the server accept (the server's
    /// 100 ms minimum for `duplicate_window` and `dead_letter_max_age` included): options
    /// that pass are not refused by the server when the queue is opened.
    ///
    /// # Errors
    ///
    /// [`QueueError::Options`](super::QueueError::Options) naming the first bad option.
    pub fn validate(&self) -> Result<(), super::QueueError> {
        let bad = |option: &'static str, rule: &'static str| {
            Err(super::QueueError::Options { option, rule })
        };
        if self.partitions.is_some_and(|p| p == 0 || p > 1024) {
            return bad("partitions", "between 1 and 1024");
        }
        if self.ack_wait < MIN_ACK_WAIT || self.ack_wait > MAX_WAIT {
            return bad("ack_wait", "between 300 ms and 24 h");
        }
        if self.max_deliver == 0 {
            return bad("max_deliver", "at least 1");
        }
        if self.max_ack_pending == 0 {
            return bad("max_ack_pending", "at least 1");
        }
        if self.duplicate_window < STREAM_DURATION_FLOOR {
            return bad("duplicate_window", "at least 100 ms (the server's minimum)");
        }
        if self.max_age.is_some_and(|a| a.is_zero()) {
            return bad("max_age", "a positive duration");
        }
        if self.max_age.is_some_and(|a| a < self.duplicate_window) {
            // The server keeps no id longer than the jobs themselves.
            return bad(
                "max_age",
                "at least the duplicate_window (2 min by default): shorten the window too",
            );
        }
        if self.dead_letter_max_age < STREAM_DURATION_FLOOR {
            return bad(
                "dead_letter_max_age",
                "at least 100 ms (the server's minimum)",
            );
        }
        if self.pin_timeout < Duration::from_secs(1) || self.pin_timeout > MAX_WAIT {
            return bad("pin_timeout", "between 1 s and 24 h");
        }
        if self.member_ttl < MIN_ACK_WAIT || self.member_ttl > MAX_WAIT {
            return bad("member_ttl", "between 300 ms and 24 h");
        }
        if self.push_timeout.is_zero() || self.push_timeout > MAX_WAIT {
            return bad("push_timeout", "a positive duration of at most 24 h");
        }
        Ok(())
    }
}

/// A callback told how each job this node held was settled (outside every lock).
pub type SettledCallback = Arc<dyn Fn(&Settled) + Send + Sync>;

/// A callback given each finished operation's snapshot.
pub type FinalizedCallback = Arc<dyn Fn(&ephemeral::OperationSnapshot) + Send + Sync>;

/// How one node takes jobs from a queue into its coordinator.
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`prefetch`](Self::prefetch) | the coordinator's `max_concurrency` | jobs held waiting on top of the running ones |
/// | [`ack_mode`](Self::ack_mode) | [`AckMode::Confirmed`] | how completed jobs are acknowledged |
/// | [`max_hold`](Self::max_hold) | 5 × `ack_wait` | a job that waited this long without starting is handed back |
/// | [`cancel_delay`](Self::cancel_delay) | 5 s | how soon a job cancelled by a signal or an admission hook is offered again |
/// | [`pull_expiry`](Self::pull_expiry) | 1 s | how long one pull request waits on the server |
/// | [`defer_on`](Self::defer_on) / [`resume_on`](Self::resume_on) | none | a defer rule that stops pulling while it holds |
///
/// This node holds at most `max_concurrency + prefetch` jobs (read live, so
/// `set_max_concurrency` moves it), and asks the server for no more than it has room for.
/// A keyed intake with no room keeps its partitions' pins without taking jobs; only while
/// it catches up on a partition that came to it does it take one job of it at a time past
/// that bound, at most one per 100 ms ("What a node holds" in the [`queue`](super) module
/// docs).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_nats::queue::{AckMode, IntakeOptions};
///
/// let intake = IntakeOptions::default()
///     .prefetch(4)
///     .ack_mode(AckMode::Fire)
///     .cancel_delay(Duration::from_secs(2))
///     .on_settled(|settled| println!("{} {:?}", settled.id, settled.outcome));
/// assert_eq!(intake.get_prefetch(), Some(4));
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct IntakeOptions {
    pub(crate) prefetch: Option<usize>,
    pub(crate) ack_mode: AckMode,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) cancel_delay: Option<Duration>,
    pub(crate) pull_expiry: Option<Duration>,
    pub(crate) on_settled: Option<SettledCallback>,
    pub(crate) on_finalized: Option<FinalizedCallback>,
    pub(crate) node: Option<String>,
    pub(crate) defer_on: Option<String>,
    pub(crate) resume_on: Option<String>,
}

impl IntakeOptions {
    /// Jobs held waiting to start, on top of the running ones (default: the coordinator's
    /// `max_concurrency`). 0 pulls only for free slots.
    ///
    /// A node never asks for more than it can hold, so it takes at most about
    /// `(max_concurrency + prefetch)` jobs per pull round trip;
    /// [`IntakeStats::mean_pull_wait`](super::IntakeStats::mean_pull_wait) tells whether
    /// that, rather than the bodies, limits it.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n);
        self
    }

    /// The prefetch set, if any.
    #[must_use]
    pub fn get_prefetch(&self) -> Option<usize> {
        self.prefetch
    }

    /// How completed jobs are acknowledged (default [`AckMode::Confirmed`]).
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// A held job that has not started after `max_hold` (say, because a defer rule holds)
    /// is handed back to the queue, so another node can run it (default 5 × `ack_wait`).
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// How soon a job cancelled by a signal, an admission hook or `max_defer` is offered
    /// again (default 5 s; at least the cancelling signal's remaining time to live). A
    /// delay past what JetStream carries (about 292 years) is clamped to it.
    ///
    /// Each such return uses one of the job's `max_deliver` deliveries: a job cancelled
    /// on its last one is dead-lettered (reason `cancelled`) though it never failed. To wait
    /// out an outage that may outlast `max_deliver × cancel_delay`, use
    /// [`defer_on`](Self::defer_on), which pulls nothing, rather than a `cancel_on` rule.
    pub fn cancel_delay(mut self, delay: Duration) -> Self {
        self.cancel_delay = Some(delay);
        self
    }

    /// How long one pull request waits on the server for jobs (default 1 s, at least
    /// 100 ms, at most 1 h). A stopped intake takes no new job after it.
    pub fn pull_expiry(mut self, expiry: Duration) -> Self {
        self.pull_expiry = Some(expiry);
        self
    }

    /// Called once for every job this node held, with how it was settled.
    pub fn on_settled(mut self, f: impl Fn(&Settled) + Send + Sync + 'static) -> Self {
        self.on_settled = Some(Arc::new(f));
        self
    }

    /// Called with the snapshot of every finished operation, after the queue has decided
    /// how to settle its job. The queue sets the coordinator's own
    /// [`on_finalized`](ephemeral::EphemeralOptions::on_finalized) to settle jobs, which
    /// replaces one set on the options passed in: give yours here instead.
    pub fn on_finalized(
        mut self,
        f: impl Fn(&ephemeral::OperationSnapshot) + Send + Sync + 'static,
    ) -> Self {
        self.on_finalized = Some(Arc::new(f));
        self
    }

    /// While a signal matching `pattern` is live in the coordinator's sink, pull nothing:
    /// the held jobs are kept alive (and handed back after [`max_hold`](Self::max_hold)),
    /// nothing is acknowledged, and pulling resumes the moment the rule stops holding (the
    /// sink is watched, never polled). Also set as the coordinator's
    /// [`defer_on`](ephemeral::EphemeralOptions::defer_on), so jobs already held wait too;
    /// a `defer_on` the coordinator's options have already is kept (its jobs wait while
    /// either rule holds), except with a `resume_on` on either side, where two rules cannot
    /// be told apart: that is [`QueueError::Options`](super::QueueError::Options).
    ///
    /// A `defer_on` given only to the coordinator's options also stops this node's jobs
    /// from starting, but the intake cannot see it: it keeps pulling until it holds
    /// `max_concurrency + prefetch` jobs, and then pulls nothing more.
    pub fn defer_on(mut self, pattern: &str) -> Self {
        self.defer_on = Some(pattern.to_owned());
        self
    }

    /// A signal matching `pattern` raised after the latest defer match ends the deferral
    /// (see [`defer_on`](Self::defer_on)); also set as the coordinator's
    /// [`resume_on`](ephemeral::EphemeralOptions::resume_on).
    pub fn resume_on(mut self, pattern: &str) -> Self {
        self.resume_on = Some(pattern.to_owned());
        self
    }

    /// This node's name among the members of a keyed queue (default: a fresh unique id).
    pub fn node(mut self, name: &str) -> Self {
        self.node = Some(name.to_owned());
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    ///
    /// [`QueueError::Options`](super::QueueError::Options) naming the first bad option.
    pub fn validate(&self) -> Result<(), super::QueueError> {
        let bad = |option: &'static str, rule: &'static str| {
            Err(super::QueueError::Options { option, rule })
        };
        if self.max_hold.is_some_and(|d| d.is_zero()) {
            return bad("max_hold", "a positive duration");
        }
        if self
            .pull_expiry
            .is_some_and(|d| d < Duration::from_millis(100) || d > MAX_PULL_EXPIRY)
        {
            return bad("pull_expiry", "between 100 ms and 1 h");
        }
        if self
            .node
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad("node", "a non-empty name without whitespace");
        }
        Ok(())
    }
}

impl fmt::Debug for IntakeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeOptions")
            .field("prefetch", &self.prefetch)
            .field("ack_mode", &self.ack_mode)
            .field("max_hold", &self.max_hold)
            .field("cancel_delay", &self.cancel_delay)
            .field("pull_expiry", &self.pull_expiry)
            .field("on_settled", &self.on_settled.is_some())
            .field("on_finalized", &self.on_finalized.is_some())
            .field("node", &self.node)
            .field("defer_on", &self.defer_on)
            .field("resume_on", &self.resume_on)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_option() {
        for (options, option) in [
            (WorkQueueOptions::default().partitions(0), "partitions"),
            (
                WorkQueueOptions::default().ack_wait(Duration::from_millis(10)),
                "ack_wait",
            ),
            (
                WorkQueueOptions::default().ack_wait(Duration::MAX),
                "ack_wait",
            ),
            (
                WorkQueueOptions::default().pin_timeout(Duration::MAX),
                "pin_timeout",
            ),
            (
                WorkQueueOptions::default().member_ttl(Duration::MAX),
                "member_ttl",
            ),
            (
                WorkQueueOptions::default().push_timeout(Duration::MAX),
                "push_timeout",
            ),
            (WorkQueueOptions::default().max_deliver(0), "max_deliver"),
            // Shorter than the default two-minute duplicate window: the server would refuse it.
            (
                WorkQueueOptions::default().max_age(Duration::from_secs(10)),
                "max_age",
            ),
            (
                WorkQueueOptions::default().max_ack_pending(0),
                "max_ack_pending",
            ),
            // Below the server's 100 ms floor for a stream's age and duplicate window.
            (
                WorkQueueOptions::default().duplicate_window(Duration::from_millis(99)),
                "duplicate_window",
            ),
            (
                WorkQueueOptions::default().dead_letter_max_age(Duration::from_millis(50)),
                "dead_letter_max_age",
            ),
        ] {
            let error = options.validate().unwrap_err();
            assert!(error.to_string().contains(option), "{error}");
        }
        assert!(IntakeOptions::default().node("a b").validate().is_err());
        for expiry in [Duration::from_millis(99), Duration::MAX] {
            let error = IntakeOptions::default()
                .pull_expiry(expiry)
                .validate()
                .unwrap_err();
            assert!(error.to_string().contains("pull_expiry"), "{error}");
        }
        // The bounds themselves are accepted.
        assert!(
            WorkQueueOptions::default()
                .ack_wait(MAX_WAIT)
                .pin_timeout(MAX_WAIT)
                .member_ttl(MAX_WAIT)
                .push_timeout(MAX_WAIT)
                .validate()
                .is_ok()
        );
        assert!(
            IntakeOptions::default()
                .pull_expiry(MAX_PULL_EXPIRY)
                .validate()
                .is_ok()
        );
    }
}
