//! The last lease check: a held job whose lease ran out is never started.
//!
//! The keep-alive and housekeeping ticks notice a lost lease within a tick, but a node that
//! stalls (stopped, swapped out, a body blocking its runtime) loses every lease at once
//! and wakes with its workers first in line: the moment a running body ends, the next held
//! job would start, although the server may have given it to another node meanwhile. So
//! the queue adds this admission hook after the caller's own: it runs on the worker right
//! before the body would start, and cancels a job whose lease no longer holds.

use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::state::{Core, Slot};

/// The reason a job is given up at admission (`Cancelled(Admission(..))`).
pub(crate) const LEASE_LOST_REASON: &str = "lease lost before it started: no ping reached the server within ack_wait, \
     so another node may have the job; given up here, not run";

/// Cancels a job whose lease ran out before its body started.
#[derive(Debug)]
pub(crate) struct LeaseCheck(pub(crate) Arc<Core>);

impl Admission for LeaseCheck {
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        // A job not filed yet was enqueued an instant ago: its lease is fresh.
        let delivery = match self.0.ops.get(&request.id).as_deref() {
            Some(Slot::Held(delivery)) => Some(Arc::clone(delivery)),
            _ => None,
        };
        let now = Instant::now();
        let lost = delivery.and_then(|d| {
            d.with_lease(|lease| {
                if lease.holds(now) {
                    return None;
                }
                // Reported once, whoever notices first (here or the keep-alive tick).
                Some(!std::mem::replace(&mut lease.lost, true))
            })
            .map(|first| (d, first))
        });
        let decision = match lost {
            None => Decision::Admit,
            Some((delivery, first)) => {
                if first {
                    self.0.lease_lost(&delivery);
                }
                Decision::cancel(LEASE_LOST_REASON)
            }
        };
        Box::pin(std::future::ready(decision))
    }
}
