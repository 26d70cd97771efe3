//! The laned queue of the priority coordinator: highest non-deferred lane first.

use std::collections::VecDeque;
use std::sync::Arc;

use super::queue::{Job, Queue};
use crate::{OperationId, Pattern, SignalSink};

/// One named lane of a [`PriorityWorkCoordinator`](super::PriorityWorkCoordinator).
///
/// # Examples
///
/// ```
/// use ephemeral::Lane;
///
/// let lanes = [
///     Lane::new("interactive", 10).max_depth(100),
///     Lane::new("batch", 1).defer_on("backpressure.*").resume_on("backpressure.cleared"),
/// ];
/// assert_eq!(lanes[0].name(), "interactive");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Lane {
    pub(crate) name: Arc<str>,
    pub(crate) priority: i32,
    pub(crate) max_depth: Option<usize>,
    pub(crate) cancel_on: Option<Pattern>,
    pub(crate) defer_on: Option<Pattern>,
    pub(crate) resume_on: Option<Pattern>,
}

impl Lane {
    /// A lane named `name`; higher `priority` starts first.
    pub fn new(name: &str, priority: i32) -> Self {
        Self {
            name: Arc::from(name),
            priority,
            max_depth: None,
            cancel_on: None,
            defer_on: None,
            resume_on: None,
        }
    }

    /// At most `depth` items wait in this lane; more are refused with a reason.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = Some(depth);
        self
    }

    /// This lane's items reaching admission while `pattern` matches end cancelled.
    pub fn cancel_on(mut self, pattern: &str) -> Self {
        self.cancel_on = Some(Pattern::new(pattern));
        self
    }

    /// This lane starts nothing while `pattern` matches (the other lanes go on).
    pub fn defer_on(mut self, pattern: &str) -> Self {
        self.defer_on = Some(Pattern::new(pattern));
        self
    }

    /// A signal matching `pattern` newer than the latest defer match ends the lane's deferral.
    pub fn resume_on(mut self, pattern: &str) -> Self {
        self.resume_on = Some(Pattern::new(pattern));
        self
    }

    /// The lane's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn deferred(&self, sink: &SignalSink) -> bool {
        let Some(defer) = &self.defer_on else {
            return false;
        };
        super::steer::defer_active(sink, defer, self.resume_on.as_ref())
    }
}

#[derive(Debug)]
pub(crate) struct LaneQueue<T> {
    /// Sorted by priority, highest first.
    lanes: Vec<(Lane, VecDeque<Job<T, usize>>)>,
    len: usize,
}

impl<T> LaneQueue<T> {
    /// `lanes` must already be sorted highest first; routes index into that order.
    pub(crate) fn new(lanes: Vec<Lane>) -> Self {
        Self {
            lanes: lanes.into_iter().map(|l| (l, VecDeque::new())).collect(),
            len: 0,
        }
    }

    pub(crate) fn depth(&self, lane: usize) -> usize {
        self.lanes.get(lane).map_or(0, |(_, q)| q.len())
    }
}

impl<T: Send + 'static> Queue<T> for LaneQueue<T> {
    type Route = usize;

    fn len(&self) -> usize {
        self.len
    }

    fn refuse(&self, route: &usize) -> Option<(Arc<str>, Arc<str>)> {
        let (lane, queue) = self.lanes.get(*route)?;
        let max = lane.max_depth?;
        (queue.len() >= max).then(|| {
            (
                lane.name.clone(),
                Arc::from(format!(
                    "the lane already holds its max depth of {max} waiting items: retry later or raise max_depth"
                )),
            )
        })
    }

    fn push(&mut self, job: Job<T, usize>) {
        if let Some((_, queue)) = self.lanes.get_mut(job.route) {
            queue.push_back(job);
            self.len += 1;
        }
    }

    fn pop(&mut self, sink: &SignalSink) -> Option<Job<T, usize>> {
        for (lane, queue) in &mut self.lanes {
            if queue.is_empty() || lane.deferred(sink) {
                continue;
            }
            let mut job = queue.pop_front()?;
            self.len -= 1;
            job.cancel = lane
                .cancel_on
                .as_ref()
                .and_then(|p| sink.latest(p.as_str()))
                .map(|s| s.name().clone());
            return Some(job);
        }
        None
    }

    fn requeue(&mut self, job: Job<T, usize>) {
        if let Some((_, queue)) = self.lanes.get_mut(job.route) {
            queue.push_front(job);
            self.len += 1;
        }
    }

    fn finished(&mut self, _route: &usize) {}

    fn remove(&mut self, id: OperationId) -> Option<Job<T, usize>> {
        for (_, queue) in &mut self.lanes {
            if let Some(index) = queue.iter().position(|j| j.id == id) {
                self.len -= 1;
                return queue.remove(index);
            }
        }
        None
    }

    fn take_all(&mut self) -> Vec<Job<T, usize>> {
        let mut jobs: Vec<_> = self
            .lanes
            .iter_mut()
            .flat_map(|(_, q)| q.drain(..))
            .collect();
        jobs.sort_by_key(|j| j.id);
        self.len = 0;
        jobs
    }
}
