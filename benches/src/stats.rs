//! Small statistics: median, percentiles, rates and the orientation of ratios.

use std::time::Duration;

/// The median of `samples`, or `None` when there are none (or any is NaN).
///
/// For an even count it is the mean of the two middle values.
#[must_use]
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The `p`-th percentile (`0.0..=100.0`) of `samples` by the nearest-rank method, or `None`
/// when there are no samples or `p` is out of range.
#[must_use]
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() || !(0.0..=100.0).contains(&p) || samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `ours` compared with `baseline`, oriented so that a result above 1 means ours is better:
/// `ours / baseline` when higher is better (a throughput), `baseline / ours` when lower is
/// better (a latency, a size). `None` when the result would not be a finite number.
///
/// # Examples
///
/// ```
/// use ephemeral_benches::stats::ratio;
///
/// assert_eq!(ratio(2.0e6, 1.0e6, true), Some(2.0)); // twice the throughput
/// assert_eq!(ratio(50.0, 100.0, false), Some(2.0)); // half the latency
/// assert_eq!(ratio(0.0, 100.0, false), None);
/// ```
#[must_use]
pub fn ratio(ours: f64, baseline: f64, higher_is_better: bool) -> Option<f64> {
    let r = if higher_is_better {
        ours / baseline
    } else {
        baseline / ours
    };
    (r.is_finite() && r >= 0.0).then_some(r)
}

/// `count` operations in `elapsed`, as operations per second.
#[must_use]
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `elapsed` spread over `count` operations, in nanoseconds per operation.
#[must_use]
pub fn nanos_per_op(count: usize, elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / count.max(1) as f64
}
