//! How a finished operation's job is settled with the server, decided from its terminal
//! state; and what the caller is told afterwards ([`Settled`]).

use std::sync::Arc;
use std::time::Duration;

use ephemeral::{CancelReason, OperationId, OperationState};

use super::job::{Delivery, Mark};

/// How a job this node held was settled with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Completed and acknowledged: the server removed the job. With
    /// [`AckMode::Confirmed`](super::AckMode::Confirmed) the server confirmed it (by its
    /// reply, or because the job is gone from the stream); with
    /// [`AckMode::Fire`](super::AckMode::Fire) the ack was sent.
    Acked,
    /// Completed, but the ack was never confirmed (the server stayed out of reach): the job
    /// may run again somewhere.
    AckUnconfirmed,
    /// Handed back to run again: after a failure (the queue's backoff), a cancellation, a
    /// hand-back or a shutdown (`None`: at once).
    Nacked(Option<Duration>),
    /// Terminated: cancelled explicitly (`cancel_operation`), so it is not run again.
    Terminated,
    /// Moved to the dead-letter stream (it did not complete on its last delivery) and
    /// terminated.
    DeadLettered,
    /// Nothing was sent: this node lost its lease (no ping reached the server within
    /// `ack_wait`), so the server may have given the job to another node, and a late
    /// failure ack would land on that node's delivery.
    Abandoned,
}

/// How one job held by this node was settled, given to
/// [`IntakeOptions::on_settled`](super::IntakeOptions::on_settled).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settled {
    /// The job id.
    pub id: Arc<str>,
    /// The job key, on a keyed queue.
    pub key: Option<Arc<str>>,
    /// The job's sequence number in the work stream.
    pub stream_sequence: u64,
    /// Its delivery count, this delivery included.
    pub delivered: u32,
    /// The operation that ran it (`None` for a job handed back before it was enqueued).
    pub operation: Option<OperationId>,
    /// What was done.
    pub outcome: Outcome,
}

/// What to send for a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Ack,
    Nak(Option<Duration>),
    /// Terminate: the job was dropped on purpose.
    Term,
    /// Dead-letter with this reason and error, then terminate.
    Dead {
        reason: &'static str,
        error: String,
    },
    /// Send nothing (the lease is lost).
    Abandon,
}

/// What the decision needs from the queue's settings.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) max_deliver: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) cancel_delay: Duration,
}

impl Rules {
    fn backoff_for(&self, delivered: u32) -> Option<Duration> {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or_else(|| self.backoff.last())
            .copied()
            .filter(|d| !d.is_zero())
    }
}

/// The action for a delivery whose operation ended in `state`.
///
/// `signal_left` is the remaining time to live of the signal that cancelled it, if any (a
/// cancel-nak waits at least that long, so the job does not come straight back into the
/// same cancel).
pub(crate) fn decide(
    delivery: &Delivery,
    state: &OperationState,
    error: Option<&str>,
    signal_left: Option<Duration>,
    rules: &Rules,
) -> Action {
    let last = delivery.delivered >= rules.max_deliver;
    if let (Some(mark), OperationState::Cancelled(CancelReason::Explicit)) =
        (delivery.mark(), state)
    {
        return match mark {
            Mark::Lost => Action::Abandon,
            Mark::HandBack(_) if last => Action::Dead {
                reason: "handed back",
                error: "handed back on its last delivery".to_owned(),
            },
            Mark::HandBack(delay) => Action::Nak(delay),
        };
    }
    let retry = |reason: &'static str, error: String, delay: Option<Duration>| {
        if last {
            Action::Dead { reason, error }
        } else {
            Action::Nak(delay)
        }
    };
    let cancel_delay =
        Some(signal_left.map_or(rules.cancel_delay, |left| left.max(rules.cancel_delay)));
    match state {
        OperationState::Completed => Action::Ack,
        OperationState::Failed => retry(
            "failed",
            error.unwrap_or("failed").to_owned(),
            rules.backoff_for(delivery.delivered),
        ),
        OperationState::Cancelled(CancelReason::Explicit) => Action::Term,
        OperationState::Cancelled(CancelReason::Aborted) => retry(
            "failed",
            "aborted: the body ignored its cancellation for the whole grace period".to_owned(),
            rules.backoff_for(delivery.delivered),
        ),
        OperationState::Cancelled(CancelReason::Shutdown) => retry(
            "shutdown",
            "the coordinator shut down on its last delivery".to_owned(),
            None,
        ),
        OperationState::Cancelled(reason) => retry(
            "cancelled",
            format!("cancelled on its last delivery: {reason}"),
            cancel_delay,
        ),
        // Not terminal, or a state added later: hand it back rather than guess.
        _ => retry(
            "cancelled",
            "ended in an unknown state on its last delivery".to_owned(),
            cancel_delay,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ephemeral::Name;

    fn delivery(delivered: u32) -> Delivery {
        let now = tokio::time::Instant::now();
        Delivery {
            local: 1,
            reply: "$JS.ACK.S.c.1.1.1.0.0".into(),
            stream_seq: 1,
            delivered,
            max_deliver: 3,
            partition: None,
            id: Arc::from("job"),
            key: None,
            received: now,
            started: Default::default(),
            op: Default::default(),
            mark: Default::default(),
            lease: std::sync::Mutex::new(super::super::job::Lease {
                deadline: now,
                renewed: now,
                pinging: false,
                lost: false,
            }),
            settling: Default::default(),
        }
    }

    fn rules() -> Rules {
        Rules {
            max_deliver: 3,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            cancel_delay: Duration::from_secs(2),
        }
    }

    #[test]
    fn terminal_states_map_to_server_actions() {
        let r = rules();
        let d = delivery(1);
        assert_eq!(
            decide(&d, &OperationState::Completed, None, None, &r),
            Action::Ack
        );
        assert_eq!(
            decide(&d, &OperationState::Failed, Some("boom"), None, &r),
            Action::Nak(Some(Duration::from_secs(1)))
        );
        assert_eq!(
            decide(
                &delivery(2),
                &OperationState::Failed,
                Some("boom"),
                None,
                &r
            ),
            Action::Nak(Some(Duration::from_secs(5)))
        );
        assert_eq!(
            decide(
                &delivery(3),
                &OperationState::Failed,
                Some("boom"),
                None,
                &r
            ),
            Action::Dead {
                reason: "failed",
                error: "boom".to_owned()
            }
        );
        assert_eq!(
            decide(
                &d,
                &OperationState::Cancelled(CancelReason::Shutdown),
                None,
                None,
                &r
            ),
            Action::Nak(None)
        );
        assert_eq!(
            decide(
                &d,
                &OperationState::Cancelled(CancelReason::Explicit),
                None,
                None,
                &r
            ),
            Action::Term
        );
        let signal =
            OperationState::Cancelled(CancelReason::Signal(Name::new("circuit.open").unwrap()));
        assert_eq!(
            decide(&d, &signal, None, Some(Duration::from_secs(9)), &r),
            Action::Nak(Some(Duration::from_secs(9)))
        );
        assert_eq!(
            decide(&d, &signal, None, Some(Duration::from_millis(10)), &r),
            Action::Nak(Some(Duration::from_secs(2)))
        );
        assert!(matches!(
            decide(&delivery(3), &signal, None, None, &r),
            Action::Dead {
                reason: "cancelled",
                ..
            }
        ));
    }

    #[test]
    fn marks_turn_an_explicit_cancel_into_a_hand_back() {
        let r = rules();
        let explicit = OperationState::Cancelled(CancelReason::Explicit);
        let d = delivery(1);
        d.set_mark(Mark::HandBack(None));
        assert_eq!(decide(&d, &explicit, None, None, &r), Action::Nak(None));
        d.set_mark(Mark::Lost);
        assert_eq!(decide(&d, &explicit, None, None, &r), Action::Abandon);
        // A mark does not hide a real outcome.
        assert_eq!(
            decide(&d, &OperationState::Completed, None, None, &r),
            Action::Ack
        );
    }
}
