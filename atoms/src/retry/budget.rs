//! A retry budget shared by many calls, so that retries cannot multiply an outage.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Caps retries as a share of calls, plus a small steady allowance.
///
/// Each call deposits `ratio` tokens (a [`Retry`](super::Retry) call as it makes its first
/// attempt: one cancelled before it deposits nothing), time adds `min_per_second` tokens per
/// second, and each retry spends one (a [`Retry`](super::Retry) takes it before the wait and
/// gives it back if the wait is cancelled, so only retries actually made spend). A new budget
/// starts with one second's allowance (`min_per_second` tokens), so the first failures after
/// start-up can retry; a retry that finds less than one token is refused and the call ends
/// with [`RetryError::BudgetExhausted`](super::RetryError::BudgetExhausted). The balance never
/// exceeds `max_balance`, so a quiet hour does not buy a retry storm. With the default
/// `ratio` of 0.2, retries add at most about 20 % load on top of first attempts, however bad
/// the downstream is. A clone shares the same balance; the memory is constant.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let budget = RetryBudget::new(0.5, 0.0, 10.0);
/// budget.deposit(); // one call: half a retry
/// assert!(!budget.try_withdraw());
/// budget.deposit(); // two calls: one retry
/// assert!(budget.try_withdraw());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Mutex<State>>,
    ratio: f64,
    min_per_second: f64,
    max_balance: f64,
}

#[derive(Debug)]
struct State {
    balance: f64,
    refilled_at: Instant,
}

impl Default for RetryBudget {
    /// 20 % of calls may retry, plus one retry per second, up to a balance of 100.
    fn default() -> Self {
        Self::new(0.2, 1.0, 100.0)
    }
}

impl RetryBudget {
    /// A budget of `ratio` retries per call plus `min_per_second` per second, holding at most
    /// `max_balance` (negative, NaN or infinite values count as 0; `max_balance` at least 1).
    #[must_use]
    pub fn new(ratio: f64, min_per_second: f64, max_balance: f64) -> Self {
        let clean = |v: f64| if v.is_finite() && v > 0.0 { v } else { 0.0 };
        let max_balance = clean(max_balance).max(1.0);
        Self {
            inner: Arc::new(Mutex::new(State {
                balance: clean(min_per_second).min(max_balance),
                refilled_at: Instant::now(),
            })),
            ratio: clean(ratio),
            min_per_second: clean(min_per_second),
            max_balance,
        }
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // The state is two numbers updated together; a panic elsewhere cannot leave them torn.
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.refilled_at);
        state.refilled_at = now;
        state.balance =
            (state.balance + elapsed.as_secs_f64() * self.min_per_second).min(self.max_balance);
        f(&mut state)
    }

    /// Records a call (a first attempt).
    pub fn deposit(&self) {
        let (ratio, max) = (self.ratio, self.max_balance);
        self.with_state(|s| s.balance = (s.balance + ratio).min(max));
    }

    /// Takes one retry from the budget; `false` when there is less than one.
    #[must_use]
    pub fn try_withdraw(&self) -> bool {
        self.with_state(|s| {
            if s.balance >= 1.0 {
                s.balance -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Takes one retry for a retry about to be made, or `None` when there is less than one.
    /// The token comes back if the guard is dropped without [`Withdrawal::spend`], so a retry
    /// whose wait is cancelled (or whose call is dropped) spends nothing.
    pub(crate) fn withdraw(&self) -> Option<Withdrawal<'_>> {
        // `then`, not `then_some`: a guard built eagerly and dropped would give back a token
        // that was never taken.
        self.try_withdraw()
            .then(|| Withdrawal { budget: Some(self) })
    }

    fn give_back(&self) {
        let max = self.max_balance;
        self.with_state(|s| s.balance = (s.balance + 1.0).min(max));
    }

    /// The retries available now (fractional).
    #[must_use]
    pub fn balance(&self) -> f64 {
        self.with_state(|s| s.balance)
    }

    /// How long until the steady allowance alone grants one more retry (`None` if it never
    /// will, because `min_per_second` is 0; [`Duration::MAX`] for a wait longer than that,
    /// from a tiny positive `min_per_second`).
    #[must_use]
    pub fn time_to_next(&self) -> Option<Duration> {
        let rate = self.min_per_second;
        self.with_state(|s| {
            if s.balance >= 1.0 {
                Some(Duration::ZERO)
            } else if rate > 0.0 {
                // A tiny rate can need more seconds than a Duration holds (or +∞): it
                // still grants a retry some day, so the wait saturates rather than vanishing.
                Some(Duration::try_from_secs_f64((1.0 - s.balance) / rate).unwrap_or(Duration::MAX))
            } else {
                None
            }
        })
    }
}

/// One retry taken from a [`RetryBudget`] for a retry not made yet; dropped unspent, it gives
/// the token back, because only a retry actually made spends one.
#[derive(Debug)]
#[must_use]
pub(crate) struct Withdrawal<'a> {
    budget: Option<&'a RetryBudget>,
}

impl Withdrawal<'_> {
    /// The retry is being made: the token stays spent.
    pub(crate) fn spend(mut self) {
        self.budget = None;
    }
}

impl Drop for Withdrawal<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.give_back();
        }
    }
}
