//! The laned queue of the priority coordinator: highest non-deferred lane first.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::job::{Job, PopCx, Select, Visit, VisitMut};
use super::policy::Queue;
use crate::coordinator::defer::{defer_active, defer_started};
use crate::coordinator::lane::Lane;
use crate::{OperationId, SignalSink};

impl Lane {
    /// Whether the lane's defer rule holds now.
    fn deferred(&self, sink: &SignalSink) -> bool {
        let Some(defer) = &self.defer_on else {
            return false;
        };
        defer_active(sink, defer, self.resume_on.as_ref())
    }
}

/// One lane's waiting jobs.
#[derive(Debug)]
struct LaneJobs<T> {
    lane: Lane,
    jobs: VecDeque<Job<T, usize>>,
    /// Whether the lane's defer rule held when last evaluated: its jobs are held (their
    /// `max_defer` clocks run), and jobs pushed meanwhile are held at once.
    deferred: bool,
    /// Its jobs an admission hook put aside: they still wait in the lane (its depth counts
    /// them), and come back to its front.
    aside: usize,
    /// The sink's sequence when the lane's defer rule was last seen not holding: a deferral
    /// noticed later began after it.
    lifted: Option<u64>,
}

impl<T> LaneJobs<T> {
    /// Evaluates the lane's defer rule, holding or releasing its jobs on a change.
    /// A deferral that began is dated as the coordinator-wide one is (see the engine's
    /// `refresh_deferral`): from the raise of the defer signal raised since the rule was last
    /// seen lifted, else (a newer resume left meanwhile) from now.
    fn observe(&mut self, cx: &mut PopCx<'_>) -> bool {
        // Read first: a signal with a higher sequence was raised after this look began.
        let sequence = cx.sink.sequence();
        let deferred = self.lane.deferred(cx.sink);
        if deferred && !self.deferred {
            let by = self
                .lane
                .defer_on
                .as_ref()
                .and_then(|defer| defer_started(cx.sink, defer, self.lane.resume_on.as_ref()));
            let since = match (by, self.lifted) {
                (Some(by), Some(lifted)) if by.sequence() <= lifted => cx.now,
                (Some(by), _) => by.timestamp().min(cx.now),
                (None, _) => cx.now,
            };
            for job in &mut self.jobs {
                cx.held |= job.hold(since);
            }
        } else if !deferred {
            self.lifted = Some(sequence);
            if self.deferred && !cx.global {
                for job in &mut self.jobs {
                    job.unhold(cx.now);
                }
            }
        }
        self.deferred = deferred;
        deferred
    }
}

#[derive(Debug)]
pub(crate) struct LaneQueue<T> {
    /// Sorted by priority, highest first.
    lanes: Vec<LaneJobs<T>>,
    len: usize,
}

impl<T> LaneQueue<T> {
    /// `lanes` must already be sorted highest first; routes index into that order.
    pub(crate) fn new(lanes: Vec<Lane>) -> Self {
        Self {
            lanes: lanes
                .into_iter()
                .map(|lane| LaneJobs {
                    lane,
                    jobs: VecDeque::new(),
                    deferred: false,
                    aside: 0,
                    lifted: None,
                })
                .collect(),
            len: 0,
        }
    }

    /// The items waiting in lane `lane`, those an admission hook put aside included.
    pub(crate) fn depth(&self, lane: usize) -> usize {
        self.lanes.get(lane).map_or(0, |l| l.jobs.len() + l.aside)
    }
}

impl<T: Send + 'static> Queue<T> for LaneQueue<T> {
    type Route = usize;

    fn len(&self) -> usize {
        self.len
    }

    fn refuse(&self, route: &usize) -> Option<(Arc<str>, Arc<str>)> {
        let LaneJobs {
            lane, jobs, aside, ..
        } = self.lanes.get(*route)?;
        let max = lane.max_depth?;
        (jobs.len() + aside >= max).then(|| {
            (
                lane.name.clone(),
                Arc::from(format!(
                    "the lane already holds its max depth of {max} waiting items: retry later or raise max_depth"
                )),
            )
        })
    }

    fn push(&mut self, mut job: Job<T, usize>) -> bool {
        let Some(lane) = self.lanes.get_mut(job.route) else {
            return false;
        };
        let held = lane.deferred && job.hold(Instant::now());
        lane.jobs.push_back(job);
        self.len += 1;
        held
    }

    fn pop(&mut self, cx: &mut PopCx<'_>) -> Option<Job<T, usize>> {
        // The startable lane of the highest priority; among lanes of equal priority, the one
        // whose first job was accepted first (ids are handed out in acceptance order), so a
        // tie shares the slots by arrival instead of always going to the lane listed first.
        let mut best: Option<(usize, i32, OperationId)> = None;
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            if best.is_some_and(|(_, priority, _)| lane.lane.priority < priority) {
                break;
            }
            let Some(front) = lane.jobs.front().map(|job| job.id) else {
                continue;
            };
            // While the lane's own or the coordinator-wide deferral holds, only a job past
            // `max_defer` under `DeferPolicy::Run` still starts; such jobs sit at the front,
            // as the lane's jobs were held together, oldest first. (`observe` first: it
            // must see every change of the lane's rule.)
            if (lane.observe(cx) || cx.global) && !lane.jobs.front().is_some_and(Job::is_overdue) {
                continue;
            }
            if best.is_none_or(|(_, _, first)| front < first) {
                best = Some((index, lane.lane.priority, front));
            }
        }
        let (index, ..) = best?;
        let lane = &mut self.lanes[index];
        let mut job = lane.jobs.pop_front()?;
        self.len -= 1;
        job.cancel = lane
            .lane
            .cancel_on
            .as_ref()
            .and_then(|p| cx.sink.latest(p.as_str()))
            .map(|s| s.name().clone());
        Some(job)
    }

    fn requeue(&mut self, mut job: Job<T, usize>) {
        if let Some(lane) = self.lanes.get_mut(job.route) {
            if lane.deferred {
                job.hold(Instant::now());
            }
            lane.jobs.push_front(job);
            self.len += 1;
        }
    }

    fn set_aside(&mut self, route: &usize) {
        if let Some(lane) = self.lanes.get_mut(*route) {
            lane.aside += 1;
        }
    }

    fn back_from_aside(&mut self, route: &usize) {
        if let Some(lane) = self.lanes.get_mut(*route) {
            lane.aside = lane.aside.saturating_sub(1);
        }
    }

    fn finished(&mut self, _route: &usize) {}

    fn remove(&mut self, id: OperationId) -> Option<Job<T, usize>> {
        for lane in &mut self.lanes {
            if let Some(index) = lane.jobs.iter().position(|j| j.id == id) {
                self.len -= 1;
                return lane.jobs.remove(index);
            }
        }
        None
    }

    fn take_all(&mut self) -> Vec<Job<T, usize>> {
        let mut jobs: Vec<_> = self
            .lanes
            .iter_mut()
            .flat_map(|l| l.jobs.drain(..))
            .collect();
        jobs.sort_by_key(|j| j.id);
        self.len = 0;
        jobs
    }

    fn remove_where(&mut self, remove: &mut Select<'_, T, usize>) -> Vec<Job<T, usize>> {
        let mut out = Vec::new();
        for lane in &mut self.lanes {
            let (gone, keep): (VecDeque<_>, VecDeque<_>) =
                lane.jobs.drain(..).partition(|j| remove(j));
            lane.jobs = keep;
            out.extend(gone);
        }
        self.len -= out.len();
        out.sort_by_key(|j| j.id);
        out
    }

    fn for_each(&self, f: &mut Visit<'_, T, usize>) {
        self.lanes.iter().flat_map(|l| &l.jobs).for_each(f);
    }

    fn for_each_mut(&mut self, f: &mut VisitMut<'_, T, usize>) {
        self.lanes.iter_mut().flat_map(|l| &mut l.jobs).for_each(f);
    }

    fn unhold(&mut self, now: Instant) {
        for lane in self.lanes.iter_mut().filter(|l| !l.deferred) {
            lane.jobs.iter_mut().for_each(|job| job.unhold(now));
        }
    }

    fn refresh_routes(&mut self, cx: &mut PopCx<'_>) {
        for lane in &mut self.lanes {
            if lane.lane.defer_on.is_some() {
                lane.observe(cx);
            }
        }
    }

    fn has_route_deferral(&self) -> bool {
        self.lanes.iter().any(|l| l.lane.defer_on.is_some())
    }
}
