//! Alternating turns: ours, baseline, ours, baseline, ... and the median of each side.

use crate::stats::median;

/// The fewest measured turns per side; DESIGN §4 asks for the median of at least five.
pub const MIN_TURNS: usize = 5;

/// The per-turn samples of both sides and their medians.
#[derive(Debug, Clone, PartialEq)]
pub struct Turns {
    /// Ours, one value per measured turn; empty when ours is not available.
    pub ours: Vec<f64>,
    /// The baseline, one value per measured turn.
    pub baseline: Vec<f64>,
}

impl Turns {
    /// The median of our turns, `None` when ours did not run.
    #[must_use]
    pub fn ours_median(&self) -> Option<f64> {
        median(&self.ours)
    }

    /// The median of the baseline's turns.
    #[must_use]
    pub fn baseline_median(&self) -> Option<f64> {
        median(&self.baseline)
    }
}

/// Runs one unmeasured warm-up turn of each side, then `turns` (at least [`MIN_TURNS`])
/// measured turns alternating ours first, baseline second.
///
/// `ours` returns `None` when our side is not available; it is then not called again and only
/// the baseline runs. Each call returns the turn's value (a rate, a time per operation, ...).
///
/// # Examples
///
/// ```
/// use ephemeral_benches::turns::{MIN_TURNS, alternate};
///
/// let mut n = 0.0;
/// let turns = alternate(MIN_TURNS, || { n += 1.0; Some(n) }, || 10.0);
/// assert_eq!(turns.ours, [2.0, 3.0, 4.0, 5.0, 6.0]); // the warm-up (1.0) is not kept
/// assert_eq!(turns.ours_median(), Some(4.0));
/// assert_eq!(turns.baseline_median(), Some(10.0));
///
/// let missing = alternate(MIN_TURNS, || None, || 10.0);
/// assert_eq!(missing.ours_median(), None);
/// ```
pub fn alternate(
    turns: usize,
    mut ours: impl FnMut() -> Option<f64>,
    mut baseline: impl FnMut() -> f64,
) -> Turns {
    let turns = turns.max(MIN_TURNS);
    let mut have_ours = ours().is_some();
    baseline();
    let mut out = Turns {
        ours: Vec::with_capacity(turns),
        baseline: Vec::with_capacity(turns),
    };
    for _ in 0..turns {
        if have_ours {
            match ours() {
                Some(v) => out.ours.push(v),
                None => {
                    have_ours = false;
                    out.ours.clear();
                }
            }
        }
        out.baseline.push(baseline());
    }
    out
}

/// Runs `turns` (at least [`MIN_TURNS`]) measured turns of one function after a warm-up, for
/// a measurement that compares ours with ours (such as a query at two window sizes); the two
/// closures still alternate.
pub fn alternate_both(turns: usize, a: impl FnMut() -> f64, b: impl FnMut() -> f64) -> Turns {
    let mut a = a;
    alternate(turns, move || Some(a()), b)
}
