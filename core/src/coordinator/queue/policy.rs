//! The `Queue` trait: what a scheduling policy does with pending jobs.

use std::sync::Arc;

use tokio::time::Instant;

use super::job::{Job, PopCx, Select, Visit, VisitMut};
use crate::OperationId;

/// A scheduling policy over pending jobs. All calls happen under the engine's lock, so a
/// queue is plain single-threaded data.
pub(crate) trait Queue<T>: Send + 'static {
    /// What the policy orders by (a key, a lane, nothing).
    type Route: Send + 'static;

    /// Whether every new job is accepted as it comes: `refuse` is always `None` and `push`
    /// always returns `false` (no lane refuses or holds it). Such a queue can take items
    /// through the engine's inbox, without the lock.
    const ALWAYS_ACCEPTS: bool = false;

    /// Pending jobs (not popped).
    fn len(&self) -> usize;

    /// Whether a new job on `route` must be refused: `(lane, reason)`.
    fn refuse(&self, _route: &Self::Route) -> Option<(Arc<str>, Arc<str>)> {
        None
    }

    /// Adds a newly accepted job. Returns whether a route-level deferral holds it back from
    /// the start (its `max_defer` clock started).
    fn push(&mut self, job: Job<T, Self::Route>) -> bool;

    /// The next job allowed to start now, if any.
    fn pop(&mut self, cx: &mut PopCx<'_>) -> Option<Job<T, Self::Route>>;

    /// Undoes a `pop` (the job was deferred by an admission hook): it goes back first in
    /// line for its route.
    fn requeue(&mut self, job: Job<T, Self::Route>);

    /// A popped job of `route` was put aside by an admission hook: it still waits to start
    /// (a lane counts it against its depth).
    fn set_aside(&mut self, _route: &Self::Route) {}

    /// A job of `route` put aside came back (before its `requeue`, or as it ends unstarted).
    fn back_from_aside(&mut self, _route: &Self::Route) {}

    /// A popped job of `route` ended (or was parked for good).
    fn finished(&mut self, route: &Self::Route);

    /// Removes a pending job.
    fn remove(&mut self, id: OperationId) -> Option<Job<T, Self::Route>>;

    /// Removes every pending job, in order.
    fn take_all(&mut self) -> Vec<Job<T, Self::Route>>;

    /// Removes the pending jobs `remove` selects.
    fn remove_where(&mut self, remove: &mut Select<'_, T, Self::Route>)
    -> Vec<Job<T, Self::Route>>;

    /// Visits every pending job.
    fn for_each(&self, f: &mut Visit<'_, T, Self::Route>);

    /// Visits every pending job, mutably.
    fn for_each_mut(&mut self, f: &mut VisitMut<'_, T, Self::Route>);

    /// The coordinator-wide deferral ended at `now`: every job no route-level rule holds is
    /// released.
    fn unhold(&mut self, now: Instant) {
        self.for_each_mut(&mut |job| job.unhold(now));
    }

    /// Re-evaluates the route-level defer rules at `now` (holding or releasing their jobs);
    /// returns whether some job became held.
    fn refresh_routes(&mut self, _cx: &mut PopCx<'_>) {}

    /// Whether route-level defer rules exist at all.
    fn has_route_deferral(&self) -> bool {
        false
    }
}
