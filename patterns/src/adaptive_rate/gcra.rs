//! A minimal GCRA: one "theoretical arrival time" and a tolerance for bursts.

use std::time::Duration;

use tokio::time::Instant;

/// Generic cell rate algorithm over a changeable emission interval.
#[derive(Debug, Clone)]
pub(crate) struct Gcra {
    /// When the next cell would be due if cells arrived exactly at the rate.
    tat: Option<Instant>,
}

impl Gcra {
    pub(crate) fn new() -> Self {
        Self { tat: None }
    }

    /// Takes a cell at `now` if allowed, or returns how long until one is.
    ///
    /// `interval` is the emission interval (one cell per interval); `burst` cells may go at
    /// once (tolerance `interval × (burst − 1)`).
    pub(crate) fn try_take(
        &mut self,
        now: Instant,
        interval: Duration,
        burst: u32,
    ) -> Result<(), Duration> {
        let tat = self.tat.map_or(now, |tat| tat.max(now));
        let tolerance = interval.saturating_mul(burst.saturating_sub(1));
        let allowed_at = tat.checked_sub(tolerance).unwrap_or(now);
        if allowed_at > now {
            return Err(allowed_at - now);
        }
        // Checked: an interval that does not fit the clock leaves the time where it is rather
        // than panicking (validation keeps intervals far below that).
        self.tat = Some(tat.checked_add(interval).unwrap_or(tat));
        Ok(())
    }
}
