//! One accepted item waiting to start, and what a queue's visitors and `pop` see.

use std::time::Duration;

use tokio::time::Instant;

use crate::coordinator::key_label::KeyLabel;
use crate::{Name, OperationId, SignalSink};

/// One accepted item waiting to start.
#[derive(Debug)]
pub(crate) struct Job<T, Q> {
    pub(crate) id: OperationId,
    pub(crate) item: T,
    pub(crate) route: Q,
    pub(crate) key: Option<KeyLabel>,
    /// Set by the queue at `pop` when a route-level cancel rule matched (the signal's name).
    pub(crate) cancel: Option<Name>,
    /// Its deferrals, once it was first held back (boxed: most jobs are never deferred, and
    /// a small job moves cheaply through the queue).
    defer: Option<Box<Deferral>>,
    /// The operation's span, opened at acceptance when `debug` spans are on, following
    /// from the span that enqueued the item (boxed: without a subscriber it is `None`, and
    /// a small job moves cheaply through the queue).
    pub(crate) span: Option<Box<tracing::Span>>,
}

/// A job's deferrals so far.
#[derive(Debug, Default)]
struct Deferral {
    /// Since when a defer rule or an admission hook holds the job back, while one does.
    since: Option<Instant>,
    /// How long earlier deferrals held it back: `max_defer` bounds this plus the current
    /// deferral, so the clock does not restart with each deferral.
    total: Duration,
    /// Its deferrals reached `max_defer` under `DeferPolicy::Run`: defer rules and hooks'
    /// `Defer` no longer hold it.
    overdue: bool,
}

impl<T, Q> Job<T, Q> {
    pub(crate) fn new(id: OperationId, item: T, route: Q, key: Option<KeyLabel>) -> Self {
        Self {
            id,
            item,
            route,
            key,
            cancel: None,
            defer: None,
            span: None,
        }
    }

    /// The job is held back from `now` on (its `max_defer` clock runs); returns whether it
    /// was not held before.
    pub(crate) fn hold(&mut self, now: Instant) -> bool {
        let defer = self.defer.get_or_insert_with(Box::default);
        if defer.since.is_some() {
            return false;
        }
        defer.since = Some(now);
        true
    }

    /// The job is no longer held back: the deferral's time is added to its total.
    pub(crate) fn unhold(&mut self, now: Instant) {
        if let Some(defer) = &mut self.defer
            && let Some(since) = defer.since.take()
        {
            defer.total += now.saturating_duration_since(since);
        }
    }

    /// Whether a defer rule or an admission hook holds it back now.
    pub(crate) fn is_held(&self) -> bool {
        self.defer.as_ref().is_some_and(|d| d.since.is_some())
    }

    /// Whether its deferrals reached `max_defer` under `DeferPolicy::Run`.
    pub(crate) fn is_overdue(&self) -> bool {
        self.defer.as_ref().is_some_and(|d| d.overdue)
    }

    /// Marks it overdue (see [`is_overdue`](Self::is_overdue)).
    pub(crate) fn set_overdue(&mut self) {
        self.defer.get_or_insert_with(Box::default).overdue = true;
    }

    /// When its total deferral reaches `max`, if it is held back now.
    pub(crate) fn defer_deadline(&self, max: Duration) -> Option<Instant> {
        let defer = self.defer.as_ref()?;
        defer.since?.checked_add(max.saturating_sub(defer.total))
    }
}

/// Visits queued jobs.
pub(crate) type Visit<'a, T, R> = dyn FnMut(&Job<T, R>) + 'a;
/// Visits queued jobs, mutably.
pub(crate) type VisitMut<'a, T, R> = dyn FnMut(&mut Job<T, R>) + 'a;
/// Selects queued jobs.
pub(crate) type Select<'a, T, R> = dyn FnMut(&Job<T, R>) -> bool + 'a;

/// What `pop` gets besides the queue, and what it reports back.
pub(crate) struct PopCx<'a> {
    /// Answers route-level rules.
    pub(crate) sink: &'a SignalSink,
    pub(crate) now: Instant,
    /// Whether the coordinator-wide defer rule holds now (its jobs stay held when a
    /// route-level deferral ends).
    pub(crate) global: bool,
    /// Set when a route-level deferral began holding jobs back (their `max_defer` clocks
    /// started).
    pub(crate) held: bool,
}
