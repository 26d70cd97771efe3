//! When a defer rule holds: the one rule behind `defer_on` and a lane's `defer_on`.

use crate::{Pattern, SignalSink};

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
