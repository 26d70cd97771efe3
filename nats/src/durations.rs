//! Durations in JetStream's configuration: nanoseconds in an `i64`, about 292 years.

use std::time::Duration;

/// The longest duration JetStream's configuration carries (nanoseconds in an `i64`).
pub(crate) const MAX_JETSTREAM_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// The server's floor for a stream's `max_age` and `duplicate_window`: it refuses anything
/// shorter (and zero means "no limit" for an age).
pub(crate) const STREAM_DURATION_FLOOR: Duration = Duration::from_millis(100);

/// `duration`, clamped to what JetStream can carry.
pub(crate) fn jetstream_duration(duration: Duration) -> Duration {
    duration.min(MAX_JETSTREAM_DURATION)
}

/// A stream's `max_age` for `age`: 0 (no limit) for an age JetStream cannot carry, which
/// no message could reach anyway (`Duration::MAX`, 300 years).
pub(crate) fn jetstream_age(age: Duration) -> Duration {
    if age <= MAX_JETSTREAM_DURATION {
        age
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_past_what_jetstream_carries_are_no_limit() {
        assert_eq!(
            jetstream_age(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            jetstream_age(MAX_JETSTREAM_DURATION),
            MAX_JETSTREAM_DURATION
        );
        assert_eq!(jetstream_age(Duration::MAX), Duration::ZERO);
        assert_eq!(jetstream_duration(Duration::MAX), MAX_JETSTREAM_DURATION);
    }
}
