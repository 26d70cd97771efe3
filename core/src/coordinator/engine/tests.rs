//! Unit tests of [`Core`] sections that the public API cannot reach one at a time.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::super::context::ContextShared;
use super::super::options::{DeferPolicy, EphemeralOptions};
use super::super::queue::{Fifo, Job};
use super::super::snapshot::{CancelReason, OperationState};
use super::rules::DeferRules;
use super::slot::Slot;
use super::state::{Core, Effect};
use super::window::Window;
use crate::{OperationId, SignalSink};

/// A cancel that reaches a job through its worker's slot after its admission hooks' last
/// look, but before the worker parks it (a hook's `Defer`), is kept: the wait ends at once
/// and the job ends cancelled for that reason. (The park used to forget it: the job waited,
/// went back in line and started, although `cancel_operation` had returned `true`; 5 jobs
/// in 2,000 races on a multi-threaded runtime.)
#[test]
fn a_cancel_landing_just_before_a_park_is_kept() {
    let sink = SignalSink::default();
    let ctx = Arc::new(ContextShared::new(sink.clone()));
    let options = EphemeralOptions::default();
    let defer = DeferRules {
        defer_on: None,
        resume_on: None,
        max_defer: None,
        policy: DeferPolicy::Run,
    };
    let mut core: Core<u32, (), Fifo<u32>> = Core::new(
        Fifo::new(),
        Window::new(&options, ctx.clone()),
        defer,
        1,
        false,
        true,
    );
    let slot = Arc::new(Slot::new(ctx));
    core.register(slot.clone());
    let now = Instant::now();
    let id = OperationId::from_raw(u64::MAX - 1);
    let _accepted = core
        .accept(Job::new(id, 7, (), None), None, &sink, now, false)
        .expect("accepted");
    let mut fx = Effect::default();
    let job = core.try_start(&mut fx, &sink, &slot, now).expect("started");
    // Its hooks decided `Defer` and checked for a cancel; one lands now.
    assert!(core.cancel_one(&mut fx, id, CancelReason::Explicit, now));
    let (wake, mut woken) = oneshot::channel();
    core.park(id, &job.route, &slot, wake);
    assert_eq!(woken.try_recv(), Ok(()), "the wait ends at once");
    // The parked task then unparks it (woken, with no end of its own).
    core.unpark(&mut fx, job, None, now);
    assert_eq!(
        core.record(id).map(|r| r.state.clone()),
        Some(OperationState::Cancelled(CancelReason::Explicit))
    );
    let stats = core.stats();
    assert_eq!((stats.pending, stats.running, stats.cancelled), (0, 0, 1));
}
