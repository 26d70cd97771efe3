//! When a defer rule holds: the one rule behind `defer_on` and a lane's `defer_on`.

use crate::{Pattern, Signal, SignalSink};

/// Whether a defer rule holds now: some live signal matches `defer` (a signal that also
/// matches `resume` does not count as a defer match), and no `resume` match is newer than the
/// latest defer match.
pub(crate) fn defer_active(sink: &SignalSink, defer: &Pattern, resume: Option<&Pattern>) -> bool {
    let Some(latest) = sink.latest(defer.as_str()) else {
        return false;
    };
    let Some(resume) = resume else {
        return true;
    };
    let latest_defer = if resume.matches(latest.name().as_str()) {
        // Rare: the newest defer match is itself a resume signal; look past it.
        sink.sense(defer.as_str())
            .into_iter()
            .rev()
            .find(|s| !resume.matches(s.name().as_str()))
    } else {
        Some(latest)
    };
    let Some(latest_defer) = latest_defer else {
        return false;
    };
    sink.latest(resume.as_str())
        .is_none_or(|r| r.sequence() <= latest_defer.sequence())
}

/// The signal a defer rule holds by: the oldest live defer match newer than every live
/// `resume` match. The rule has held since its raise unless a newer resume match was live in
/// between and left (the caller knows when it last saw the rule lifted). `None` when the
/// rule does not hold now.
///
/// A coordinator learns of a deferral when it next looks (a worker about to start a job, the
/// steering task woken by the signal); under a clock that jumps (tokio's `advance`) that can
/// be well after the signal was raised, and a `max_defer` clock started then would run late.
pub(crate) fn defer_started(
    sink: &SignalSink,
    defer: &Pattern,
    resume: Option<&Pattern>,
) -> Option<Signal> {
    if !defer_active(sink, defer, resume) {
        return None;
    }
    let after = resume
        .and_then(|r| sink.latest(r.as_str()))
        .map_or(0, |r| r.sequence());
    sink.sense(defer.as_str())
        .into_iter()
        .find(|s| s.sequence() > after && resume.is_none_or(|r| !r.matches(s.name().as_str())))
}
