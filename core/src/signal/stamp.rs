//! `Stamp`: a signal's timestamp in 8 bytes, so that a `Signal` fits one cache line.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// An instant on tokio's clock, as signed nanoseconds from one anchor instant taken once per
/// process.
///
/// The conversion is exact both ways (instants have nanosecond resolution) for instants within
/// ±292 years of the anchor, which covers every instant a process can see, the paused clock
/// advanced by the longest max age (100 years) included; anything beyond saturates. Stamps
/// order like the instants they stand for, and a max age subtracts in one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(i64);

/// The instant every stamp counts from: the first time a stamp was needed.
fn anchor() -> std::time::Instant {
    static ANCHOR: OnceLock<std::time::Instant> = OnceLock::new();
    *ANCHOR.get_or_init(std::time::Instant::now)
}

/// `d` in nanoseconds, saturated to what an `i64` holds (in 64-bit arithmetic: this runs on
/// every raise).
#[inline]
fn nanos(d: Duration) -> i64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(i64::MAX)
}

impl Stamp {
    /// Before every stamp.
    pub(crate) const MIN: Stamp = Stamp(i64::MIN);

    /// The stamp of `at`.
    #[inline]
    pub(crate) fn of(at: Instant) -> Self {
        let at = at.into_std();
        let anchor = anchor();
        match at.checked_duration_since(anchor) {
            Some(after) => Stamp(nanos(after)),
            None => Stamp(-nanos(anchor.duration_since(at))),
        }
    }

    /// The instant this stamp stands for.
    pub(crate) fn instant(self) -> Instant {
        let anchor = anchor();
        let offset = Duration::from_nanos(self.0.unsigned_abs());
        let at = if self.0 >= 0 {
            anchor.checked_add(offset)
        } else {
            anchor.checked_sub(offset)
        };
        // Every stamp came from a real instant, so the sum exists; saturating at the anchor
        // would only matter for a stamp that was itself saturated.
        Instant::from_std(at.unwrap_or(anchor))
    }

    /// This stamp moved back by `age` (saturating): a signal stamped at or before
    /// `now.minus(max_age)` has reached its max age at `now`.
    #[inline]
    pub(crate) fn minus(self, age: Duration) -> Self {
        Stamp(self.0.saturating_sub(nanos(age)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly_both_ways_and_orders_like_instants() {
        let now = Instant::now();
        for at in [
            now,
            now + Duration::from_nanos(1),
            now + Duration::from_secs(86_400 * 365 * 100),
            now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
        ] {
            assert_eq!(Stamp::of(at).instant(), at);
        }
        let later = now + Duration::from_nanos(1);
        assert!(Stamp::of(now) < Stamp::of(later));
        assert_eq!(nanos(Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
        assert_eq!(nanos(Duration::from_nanos(i64::MAX as u64 + 1)), i64::MAX);
        assert_eq!(
            Stamp::of(later).minus(Duration::from_nanos(1)),
            Stamp::of(now)
        );
    }
}
