//! The pending-item queues the engine schedules from: FIFO, keyed and laned.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::{Name, OperationId, SignalSink};

/// One accepted item waiting to start.
#[derive(Debug)]
pub(crate) struct Job<T, Q> {
    pub(crate) id: OperationId,
    pub(crate) item: T,
    pub(crate) route: Q,
    pub(crate) key: Option<Arc<str>>,
    /// Set by the queue at `pop` when a route-level cancel rule matched (the signal's name).
    pub(crate) cancel: Option<Name>,
}

/// A scheduling policy over pending jobs. All calls happen under the engine's lock, so a
/// queue is plain single-threaded data.
pub(crate) trait Queue<T>: Send + 'static {
    /// What the policy orders by (a key, a lane, nothing).
    type Route: Send + 'static;

    /// Pending jobs (not popped).
    fn len(&self) -> usize;

    /// Whether a new job on `route` must be refused: `(lane, reason)`.
    fn refuse(&self, _route: &Self::Route) -> Option<(Arc<str>, Arc<str>)> {
        None
    }

    /// Adds a newly accepted job.
    fn push(&mut self, job: Job<T, Self::Route>);

    /// The next job allowed to start now, if any. `sink` answers route-level rules.
    fn pop(&mut self, sink: &SignalSink) -> Option<Job<T, Self::Route>>;

    /// Undoes a `pop` (the job was deferred by an admission hook): it goes back first in
    /// line for its route.
    fn requeue(&mut self, job: Job<T, Self::Route>);

    /// A popped job of `route` ended (or was parked for good).
    fn finished(&mut self, route: &Self::Route);

    /// Removes a pending job.
    fn remove(&mut self, id: OperationId) -> Option<Job<T, Self::Route>>;

    /// Removes every pending job, in order.
    fn take_all(&mut self) -> Vec<Job<T, Self::Route>>;
}

/// First in, first out.
#[derive(Debug)]
pub(crate) struct Fifo<T> {
    jobs: VecDeque<Job<T, ()>>,
}

impl<T> Fifo<T> {
    pub(crate) fn new() -> Self {
        Self {
            jobs: VecDeque::new(),
        }
    }
}

impl<T: Send + 'static> Queue<T> for Fifo<T> {
    type Route = ();

    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn push(&mut self, job: Job<T, ()>) {
        self.jobs.push_back(job);
    }

    fn pop(&mut self, _sink: &SignalSink) -> Option<Job<T, ()>> {
        self.jobs.pop_front()
    }

    fn requeue(&mut self, job: Job<T, ()>) {
        self.jobs.push_front(job);
    }

    fn finished(&mut self, _route: &()) {}

    fn remove(&mut self, id: OperationId) -> Option<Job<T, ()>> {
        let index = self.jobs.iter().position(|j| j.id == id)?;
        self.jobs.remove(index)
    }

    fn take_all(&mut self) -> Vec<Job<T, ()>> {
        self.jobs.drain(..).collect()
    }
}
