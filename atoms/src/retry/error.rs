//! How a retried call ended when it did not succeed.

use std::error::Error;
use std::fmt;

/// Why [`Retry::run`](super::Retry::run) gave up; carries the last error of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// Every allowed attempt failed.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
    /// The `when` predicate said this error is not worth retrying.
    NotRetryable {
        /// Attempts made.
        attempts: u32,
        /// The error that was not retried.
        error: E,
    },
    /// The shared [`RetryBudget`](super::RetryBudget) had no retry left.
    BudgetExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
    /// The cancellation token fired before or during a wait.
    Cancelled {
        /// Attempts made (0 when cancelled before the first).
        attempts: u32,
        /// The last attempt's error, if any attempt was made.
        last: Option<E>,
    },
}

impl<E> RetryError<E> {
    /// The number of attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::NotRetryable { attempts, .. }
            | Self::BudgetExhausted { attempts, .. }
            | Self::Cancelled { attempts, .. } => *attempts,
        }
    }

    /// The body's last error (`None` only when cancelled before the first attempt).
    pub fn into_last(self) -> Option<E> {
        match self {
            Self::Exhausted { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::NotRetryable { error: last, .. } => Some(last),
            Self::Cancelled { last, .. } => last,
        }
    }

    /// The body's last error, by reference.
    pub fn last(&self) -> Option<&E> {
        match self {
            Self::Exhausted { last, .. }
            | Self::BudgetExhausted { last, .. }
            | Self::NotRetryable { error: last, .. } => Some(last),
            Self::Cancelled { last, .. } => last.as_ref(),
        }
    }
}

/// `1 attempt`, `3 attempts`.
fn attempts(n: &u32) -> String {
    if *n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { attempts: n, last } => {
                write!(f, "gave up after {}, the most allowed: {last}", attempts(n))
            }
            Self::NotRetryable { attempts, error } => write!(
                f,
                "attempt {attempts} failed with an error the `when` predicate does not retry: {error}"
            ),
            Self::BudgetExhausted { attempts: n, last } => write!(
                f,
                "gave up after {} because the retry budget is spent (the downstream is probably failing for everyone): {last}",
                attempts(n)
            ),
            Self::Cancelled {
                attempts: n,
                last: Some(last),
            } => write!(f, "cancelled after {}: {last}", attempts(n)),
            Self::Cancelled { last: None, .. } => {
                write!(f, "cancelled before the first attempt")
            }
        }
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.last().map(|e| e as &(dyn Error + 'static))
    }
}

/// A retry policy option that makes no sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// `max_attempts(0)`: the count includes the first attempt, so at least 1 is needed.
    #[error(
        "max_attempts must be at least 1: it counts every attempt, the first included (use 1 for no retries)"
    )]
    ZeroAttempts,
}
