//! `Job`: one delivered job, as a body sees it; `Delivery`: what this node knows about it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use ephemeral::{OperationContext, OperationId};
use futures::TryFutureExt;
use futures::future::Either;
use tokio::time::Instant;

use super::error::QueueError;
use super::state::{Core, Counters};

/// One job delivered to this node: its id, key, payload and headers, and how many times it
/// has been delivered (this delivery included).
///
/// Delivery is **at least once**: a job whose node died, or lost touch with the server for
/// longer than `ack_wait`, is delivered again and runs again. [`delivered`](Self::delivered)
/// says how many times it has been delivered; a body with side effects can guard them with
/// [`Claims`](super::Claims).
///
/// A `Job` is only made by the queue's intake; it is not `Clone`, so it stands for exactly
/// one delivery.
pub struct Job {
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) payload: Bytes,
    pub(crate) headers: Option<HeaderMap>,
}

impl Job {
    /// The job id given to `push` (its `Nats-Msg-Id`).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.delivery.id
    }

    /// The key given to `push_keyed`, on a keyed queue.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.delivery.key.as_deref()
    }

    /// The payload.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, decoded from JSON (as pushed by
    /// [`push_json`](super::WorkQueue::push_json)).
    ///
    /// # Errors
    ///
    /// [`QueueError::Json`] when the payload is not a `T` in JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, QueueError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

    /// The headers it was pushed with (`Nats-Msg-Id` among them).
    #[must_use]
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_ref()
    }

    /// How many times the job has been delivered, this delivery included: 1 the first
    /// time, more after a failure, a hand-back or a node's death.
    #[must_use]
    pub fn delivered(&self) -> u32 {
        self.delivery.delivered
    }

    /// Whether this is the job's last delivery (`delivered == max_deliver`): if it does not
    /// complete now, it goes to the dead-letter stream.
    #[must_use]
    pub fn is_last_delivery(&self) -> bool {
        self.delivery.delivered >= self.delivery.max_deliver
    }

    /// The job's sequence number in the work stream (unique per queue, in push order).
    #[must_use]
    pub fn stream_sequence(&self) -> u64 {
        self.delivery.stream_seq
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id())
            .field("key", &self.key())
            .field("delivered", &self.delivered())
            .field("stream_sequence", &self.stream_sequence())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// [`Delivery::started`]: neither started nor given up.
pub(crate) const WAITING: u8 = 0;
/// [`Delivery::started`]: its body started.
pub(crate) const STARTED: u8 = 1;
/// [`Delivery::started`]: given up before its body started; it never starts here.
pub(crate) const GIVEN_UP: u8 = 2;

/// What makes this node settle a job some other way than its terminal state says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Handed back (waited too long, the intake stopped, the partition moved): nak with
    /// this delay.
    HandBack(Option<Duration>),
    /// The lease was lost before it started: send nothing, another node has it.
    Lost,
}

/// One delivery held by this node, from its arrival until it is settled.
pub(crate) struct Delivery {
    /// A number unique on this node (a stream sequence can be delivered to us twice).
    pub(crate) local: u64,
    /// The ack subject (`$JS.ACK…`).
    pub(crate) reply: Subject,
    pub(crate) stream_seq: u64,
    pub(crate) delivered: u32,
    pub(crate) max_deliver: u32,
    pub(crate) partition: Option<u16>,
    pub(crate) id: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) received: Instant,
    /// Whether its body started or it was given up before ([`WAITING`], [`STARTED`] or
    /// [`GIVEN_UP`]): the body wrapper and a hand-back (or a lost lease) race for a waiting
    /// job, and exactly one of them wins it.
    pub(crate) started: AtomicU8,
    /// The operation, once enqueued.
    pub(crate) op: OnceLock<OperationId>,
    pub(crate) mark: Mutex<Option<Mark>>,
    pub(crate) lease: Mutex<Lease>,
    /// Set when the settle action is chosen: no more pings, no second settle.
    pub(crate) settling: AtomicBool,
}

/// When the server may give the job to someone else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    /// Before this instant the server has not redelivered it (a tenth of `ack_wait` short,
    /// for the trip and clocks).
    pub(crate) deadline: Instant,
    /// When the last ping (or the delivery) renewed it.
    pub(crate) renewed: Instant,
    /// A ping is on its way.
    pub(crate) pinging: bool,
    /// The deadline passed (reported once).
    pub(crate) lost: bool,
}

impl Lease {
    /// A ping sent at `sent` was confirmed: the lease runs to `deadline` — unless it was
    /// lost. Loss is final: a late `+WPI` applies to the server's *current* delivery of the
    /// job, which may be another node's by then, so its confirmation proves nothing about
    /// this node's copy; only a success ack is ever sent for it afterwards.
    pub(crate) fn renew(&mut self, sent: Instant, deadline: Instant) {
        self.pinging = false;
        if !self.lost {
            self.renewed = sent;
            self.deadline = deadline;
        }
    }

    /// Whether it holds at `now`.
    pub(crate) fn holds(&self, now: Instant) -> bool {
        !self.lost && now < self.deadline
    }
}

impl Delivery {
    /// Whether its body started (a job given up before it started never does).
    pub(crate) fn is_started(&self) -> bool {
        // Acquire: pairs with the winning exchange in `try_start`.
        self.started.load(Ordering::Acquire) == STARTED
    }

    /// Claims the job for its body: false when it was given up first (handed back, or its
    /// lease lost), and then its body must not run.
    pub(crate) fn try_start(&self) -> bool {
        // AcqRel on the one exchange that decides between the body and a give-up, so the
        // loser sees everything the winner did before (the give-up's mark).
        self.started
            .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Claims a job that has not started for giving it up: false when its body started
    /// first (it then runs, and is settled by its outcome).
    pub(crate) fn try_give_up(&self) -> bool {
        // AcqRel: see `try_start`.
        self.started
            .compare_exchange(WAITING, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn mark(&self) -> Option<Mark> {
        *self
            .mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_mark(&self, mark: Mark) {
        *self
            .mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(mark);
    }

    pub(crate) fn lease(&self) -> Lease {
        *self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn with_lease<R>(&self, f: impl FnOnce(&mut Lease) -> R) -> R {
        f(&mut self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether the lease still holds now.
    pub(crate) fn lease_held(&self) -> bool {
        self.lease().holds(Instant::now())
    }

    /// Claims the right to settle; false if it was claimed already.
    pub(crate) fn begin_settling(&self) -> bool {
        // AcqRel: exactly one caller wins, and sees everything the others wrote before.
        !self.settling.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_settling(&self) -> bool {
        self.settling.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("stream_seq", &self.stream_seq)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// What a delivery's ack subject tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckInfo<'a> {
    pub(crate) consumer: &'a str,
    pub(crate) delivered: u32,
    pub(crate) stream_seq: u64,
}

/// The delivery info carried in a `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
/// <consumer seq>.<timestamp>.<pending>` reply subject (or its form with domain and account
/// hash in front).
pub(crate) fn ack_info(reply: &str) -> Option<AckInfo<'_>> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.split('.').collect();
    let at = match tokens.len() {
        7 => 1,
        n if n >= 9 => 3,
        _ => return None,
    };
    Some(AckInfo {
        consumer: tokens[at],
        delivered: tokens[at + 1].parse().ok()?,
        stream_seq: tokens[at + 2].parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lease_stays_lost_whatever_a_late_ping_says() {
        let now = Instant::now();
        let second = std::time::Duration::from_secs(1);
        let mut lease = Lease {
            deadline: now + second,
            renewed: now,
            pinging: true,
            lost: false,
        };
        lease.renew(now + second / 2, now + 2 * second);
        assert!(lease.holds(now + second) && !lease.pinging);
        // The deadline passed: the server may have given the job to another node, and a
        // ping confirmed now may have renewed that node's copy, not this one.
        lease.lost = true;
        lease.pinging = true;
        lease.renew(now + 3 * second, now + 10 * second);
        assert!(!lease.holds(now + 3 * second));
        assert!(!lease.pinging);
    }

    #[test]
    fn ack_subjects_parse_in_both_forms() {
        let info = |c, d, s| {
            Some(AckInfo {
                consumer: c,
                delivered: d,
                stream_seq: s,
            })
        };
        assert_eq!(
            ack_info("$JS.ACK.WQ.p.2.6.4.1796408360183390474.3"),
            info("p", 2, 6)
        );
        assert_eq!(
            ack_info("$JS.ACK._.ACCHASH.WQ.part-3.3.17.4.1796408360183390474.3.tok"),
            info("part-3", 3, 17)
        );
        assert_eq!(ack_info("_INBOX.x"), None);
        assert_eq!(ack_info("$JS.ACK.WQ.p.x.6.4.1.3"), None);
    }
}

/// What a queue's coordinator runs for a job: the caller's body, once the job is claimed
/// for it ([`Delivery::try_start`]); counted in [`IntakeStats::started`](super::IntakeStats::started).
///
/// A job given up first (handed back or its lease lost, by another task an instant
/// before) does not run: its operation is being cancelled, so this waits for that and
/// ends it cancelled, and the job is settled by its give-up mark.
pub(crate) fn start_body<F, Fut, E>(
    core: &Core,
    body: &F,
    job: Job,
    ctx: OperationContext,
) -> impl Future<Output = Result<(), BodyError<E>>> + Send + use<F, Fut, E>
where
    F: Fn(Job, OperationContext) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + Sync + 'static,
{
    if job.delivery.try_start() {
        Counters::bump(&core.counters.started);
        core.room.notify_one();
        Either::Left(body(job, ctx).map_err(BodyError::Body))
    } else {
        // The give-up cancels the operation right after its claim.
        let cancelled = ctx.cancelled();
        Either::Right(async move {
            cancelled.await;
            Err(BodyError::GivenUp)
        })
    }
}

/// The error of [`start_body`]: the body's, or the job was given up before it started
/// (the operation then ends cancelled, so this text is never shown).
#[derive(Debug)]
pub(crate) enum BodyError<E> {
    Body(E),
    GivenUp,
}

impl<E: fmt::Display> fmt::Display for BodyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Body(e) => e.fmt(f),
            BodyError::GivenUp => f.write_str("given up before it started"),
        }
    }
}
