//! The wall clock of retained state.
//!
//! Times to live cross processes, so they are wall-clock times (milliseconds since the Unix
//! epoch) in the database. Tests want tokio's paused clock, though, and a paused clock does
//! not move `SystemTime`. So "now" is the wall clock shifted by how far tokio's clock is from
//! the real monotonic clock: with a running clock the shift is nil (both read the same
//! monotonic source) and this is the wall clock; with a paused clock it is the wall clock at
//! the pause plus every `advance` since.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a thread reuses its reading of the wall clock, extended by tokio's clock.
const RESYNC: Duration = Duration::from_millis(250);

thread_local! {
    /// This thread's last full reading: (tokio's clock, the wall clock then).
    static BASE: std::cell::Cell<Option<(std::time::Instant, SystemTime)>> =
        const { std::cell::Cell::new(None) };
}

/// Now, on the wall clock as tokio's clock moves it.
///
/// One clock read on the hot path: each thread reads the wall clock (and the skew of
/// tokio's clock) at most every 250 ms of tokio's clock and extends that reading by
/// tokio's clock in between, so a running clock's answer is within the drift of the two
/// clocks over 250 ms (microseconds) of the wall clock's.
pub(crate) fn now() -> SystemTime {
    let tokio_now = tokio::time::Instant::now().into_std();
    BASE.with(|base| {
        if let Some((at, wall)) = base.get()
            && let Some(since) = tokio_now.checked_duration_since(at)
            && since < RESYNC
        {
            return wall.checked_add(since).unwrap_or(wall);
        }
        let wall = read(tokio_now);
        base.set(Some((tokio_now, wall)));
        wall
    })
}

/// The wall clock shifted by how far `tokio_now` is from the real monotonic clock.
fn read(tokio_now: std::time::Instant) -> SystemTime {
    let real_now = std::time::Instant::now();
    let wall = SystemTime::now();
    if tokio_now >= real_now {
        wall.checked_add(tokio_now - real_now).unwrap_or(wall)
    } else {
        wall.checked_sub(real_now - tokio_now).unwrap_or(wall)
    }
}

/// [`now`] in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    to_ms(now())
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `SystemTime` of `ms` milliseconds since the Unix epoch.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// The expiry, in milliseconds since the epoch, of something living `ttl` from `now_ms`;
/// `0` (never) for no time to live or one too long to represent. A time to live below a
/// millisecond counts as one millisecond: expiry is never earlier than asked.
pub(crate) fn expiry_ms(now_ms: u64, ttl: Option<Duration>) -> u64 {
    let Some(ttl) = ttl else { return 0 };
    let ms = ttl.as_millis().max(1);
    u64::try_from(ms)
        .ok()
        .and_then(|ms| now_ms.checked_add(ms))
        .unwrap_or(0)
}

/// Whether something with expiry `expires_ms` (0 = never) is expired at `now_ms`.
pub(crate) fn expired(expires_ms: u64, now_ms: u64) -> bool {
    expires_ms != 0 && expires_ms <= now_ms
}

/// How long until `ms` on the wall clock (zero if it has passed), for tokio timers.
pub(crate) fn until_ms(ms: u64) -> Duration {
    Duration::from_millis(ms.saturating_sub(now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_never_early_and_never_overflows() {
        assert_eq!(expiry_ms(1000, None), 0);
        assert_eq!(expiry_ms(1000, Some(Duration::from_micros(10))), 1001);
        assert_eq!(expiry_ms(1000, Some(Duration::from_millis(1500))), 2500);
        assert_eq!(expiry_ms(1000, Some(Duration::MAX)), 0);
        assert!(!expired(0, u64::MAX));
        assert!(expired(2500, 2500));
        assert!(!expired(2500, 2499));
    }

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_clock() {
        let before = now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let after = now_ms();
        assert!(after >= before + 3_600_000, "{before} -> {after}");
        assert!(after < before + 3_600_000 + 60_000, "{before} -> {after}");
        // Small steps too (within one reading's reuse).
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(now_ms(), after + 5);
    }

    #[test]
    fn follows_the_wall_clock() {
        let wall = to_ms(SystemTime::now());
        let ours = now_ms();
        assert!(ours.abs_diff(wall) < 1_000, "{ours} vs {wall}");
    }
}
