//! First in, first out: the work and result coordinators' policy.

use std::collections::VecDeque;

use super::job::{Job, PopCx, Select, Visit, VisitMut};
use super::policy::Queue;
use crate::OperationId;

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

    const ALWAYS_ACCEPTS: bool = true;

    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn push(&mut self, job: Job<T, ()>) -> bool {
        self.jobs.push_back(job);
        false
    }

    fn pop(&mut self, cx: &mut PopCx<'_>) -> Option<Job<T, ()>> {
        if cx.global {
            // The coordinator-wide deferral holds every job but those past `max_defer` under
            // `DeferPolicy::Run` (the engine pops only while one is): the first of them.
            let index = self.jobs.iter().position(Job::is_overdue)?;
            return self.jobs.remove(index);
        }
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

    fn remove_where(&mut self, remove: &mut Select<'_, T, ()>) -> Vec<Job<T, ()>> {
        let (out, keep): (VecDeque<_>, VecDeque<_>) = self.jobs.drain(..).partition(|j| remove(j));
        self.jobs = keep;
        out.into()
    }

    fn for_each(&self, f: &mut Visit<'_, T, ()>) {
        self.jobs.iter().for_each(f);
    }

    fn for_each_mut(&mut self, f: &mut VisitMut<'_, T, ()>) {
        self.jobs.iter_mut().for_each(f);
    }
}
