//! The retry policy: attempts, predicate, hook, budget, signals, cancellation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ephemeral::{Signal, SignalSink};
use tokio_util::sync::CancellationToken;

use super::{Backoff, RetryBudget, RetryConfigError, RetryError};

type When<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;
type Adjust<E> = Arc<dyn Fn(&E, Duration) -> Duration + Send + Sync>;

/// A retry policy: runs an async body until it succeeds or the policy gives up.
///
/// Build one, share it (a cheap clone), and call [`run`](Retry::run) (or
/// [`run_with_cancel`](Retry::run_with_cancel)) with a closure that makes one attempt. The
/// closure gets the attempt number, starting at 1.
///
/// * [`max_attempts`](Retry::max_attempts) counts *all* attempts, the first included (default 3).
/// * [`when`](Retry::when) chooses which errors are retried (default: all).
/// * [`adjust`](Retry::adjust) changes the planned delay from the error, for a server's
///   `Retry-After`. The adjusted delay is used as given (the max delay caps only the backoff
///   schedule), because retrying before the server asked to is pointless.
/// * [`budget`](Retry::budget) shares a [`RetryBudget`] across calls.
/// * [`signals`](Retry::signals) raises `retry.attempt` as each retry starts, after its
///   wait (headers `attempt`, the number starting, and `delay_ms`, the wait before it; a
///   call cancelled or dropped during the wait raises none for the attempt it never
///   started) and `retry.exhausted` when giving up after a retryable error (header
///   `attempts`), keyed by the policy's [`name`](Retry::name).
///
/// Waiting uses tokio's clock, so tests run with the paused clock. A delay past what the
/// clock can hold (an `adjust` returning `Duration::MAX`, or a schedule grown to it under
/// `max_delay(Duration::MAX)`) waits for ever: only the token of
/// [`run_with_cancel`](Retry::run_with_cancel) ends such a wait.
///
/// A panic in the body, in `when` or in `adjust` is not caught: it unwinds out of `run` like
/// a panic in any call (a budget token taken for the retry is given back on the way). Inside
/// a coordinator body, the coordinator records it as the operation's failure.
///
/// # Around a coordinator body
///
/// The retry runs *inside* the body, so **the operation keeps its concurrency slot while it
/// waits between attempts**: with concurrency 8 and eight operations backing off, nothing
/// else starts. That is usually right (a failing downstream should slow intake down); when
/// it is not, give up quickly (few attempts, short delays) and enqueue the item again
/// instead. Pass the operation's cancellation token to
/// [`run_with_cancel`](Retry::run_with_cancel) so that cancelling the operation stops the
/// wait at once:
///
/// ```text
/// let retry = Retry::new(Backoff::exponential(ms(100))).max_attempts(4)?.signals(sink.clone());
/// move |order: Order, ctx: OperationContext| {
///     let retry = retry.clone();
///     async move { retry.run_with_cancel(ctx.cancellation(), |_| charge(&order)).await }
/// }
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::retry::{Backoff, Retry, RetryError};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let retry = Retry::new(Backoff::constant(Duration::from_millis(100))).max_attempts(3)?;
///
/// // Fails twice, then succeeds.
/// let value = retry
///     .run(|attempt| async move { if attempt < 3 { Err("busy") } else { Ok(attempt) } })
///     .await;
/// assert_eq!(value, Ok(3));
///
/// // Never succeeds: the last error comes back.
/// let failed: Result<(), _> = retry.run(|_| async { Err("down") }).await;
/// assert_eq!(failed, Err(RetryError::Exhausted { attempts: 3, last: "down" }));
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct Retry<E> {
    backoff: Backoff,
    max_attempts: u32,
    when: Option<When<E>>,
    adjust: Option<Adjust<E>>,
    budget: Option<RetryBudget>,
    sink: Option<SignalSink>,
    name: Option<Arc<str>>,
}

impl<E> Clone for Retry<E> {
    fn clone(&self) -> Self {
        Self {
            backoff: self.backoff.clone(),
            max_attempts: self.max_attempts,
            when: self.when.clone(),
            adjust: self.adjust.clone(),
            budget: self.budget.clone(),
            sink: self.sink.clone(),
            name: self.name.clone(),
        }
    }
}

impl<E> fmt::Debug for Retry<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("when", &self.when.is_some())
            .field("adjust", &self.adjust.is_some())
            .field("budget", &self.budget)
            .field("signals", &self.sink.is_some())
            .field("name", &self.name)
            .finish()
    }
}

impl<E> Retry<E> {
    /// A policy with this backoff, 3 attempts, every error retried, no budget, no signals.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            max_attempts: 3,
            when: None,
            adjust: None,
            budget: None,
            sink: None,
            name: None,
        }
    }

    /// The most attempts, the first included (1 means no retries).
    ///
    /// # Errors
    ///
    /// [`RetryConfigError::ZeroAttempts`] for 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral_atoms::retry::{Backoff, Retry, RetryConfigError};
    ///
    /// let backoff = Backoff::constant(Duration::from_millis(100));
    /// assert!(Retry::<std::io::Error>::new(backoff.clone()).max_attempts(4).is_ok());
    /// assert_eq!(
    ///     Retry::<std::io::Error>::new(backoff).max_attempts(0).unwrap_err(),
    ///     RetryConfigError::ZeroAttempts,
    /// );
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Result<Self, RetryConfigError> {
        if attempts == 0 {
            return Err(RetryConfigError::ZeroAttempts);
        }
        self.max_attempts = attempts;
        Ok(self)
    }

    /// Retries only errors for which `predicate` returns `true`; others end the call with
    /// [`RetryError::NotRetryable`] at once.
    pub fn when(mut self, predicate: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.when = Some(Arc::new(predicate));
        self
    }

    /// Replaces the planned delay with `hook(error, planned)`, for instance a server's
    /// `Retry-After`.
    pub fn adjust(
        mut self,
        hook: impl Fn(&E, Duration) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.adjust = Some(Arc::new(hook));
        self
    }

    /// Spends one token of `budget` per retry (and deposits on every call that makes its
    /// first attempt; one cancelled before it deposits nothing). The token is taken before
    /// the wait, so an empty budget ends the call at once, and given back if the wait is
    /// cancelled or the call dropped.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Raises `retry.attempt` (as each retry starts, after its wait) and `retry.exhausted`
    /// into `sink`.
    pub fn signals(mut self, sink: SignalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Names this policy; its signals carry the name as their key.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(Arc::from(name));
        self
    }

    /// Runs `body` until it succeeds or the policy gives up.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] carrying the body's last error and the number of attempts.
    pub async fn run<T, F, Fut>(&self, body: F) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_inner(None, body).await
    }

    /// Like [`run`](Retry::run), but a cancelled `token` ends the call at once: before the
    /// first attempt, or in the middle of a wait. An attempt already running is not
    /// interrupted (give the body the token too if it should stop early); if it fails with a
    /// retryable error, no further attempt starts, even with a zero delay, and
    /// [`RetryError::Cancelled`] carries its error. A call that would have ended there
    /// anyway ends as it would have: [`Exhausted`](RetryError::Exhausted) after the last
    /// allowed attempt, [`BudgetExhausted`](RetryError::BudgetExhausted) when the budget has
    /// no retry left (both raise `retry.exhausted`), `NotRetryable` for an error `when`
    /// refuses.
    ///
    /// # Errors
    ///
    /// As [`run`](Retry::run), plus [`RetryError::Cancelled`].
    pub async fn run_with_cancel<T, F, Fut>(
        &self,
        token: &CancellationToken,
        body: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_inner(Some(token), body).await
    }

    async fn run_inner<T, F, Fut>(
        &self,
        token: Option<&CancellationToken>,
        mut body: F,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Only this check can end the call without an error to report: every later one is
        // the wait's, which holds the last attempt's error.
        if token.is_some_and(CancellationToken::is_cancelled) {
            return Err(RetryError::Cancelled {
                attempts: 0,
                last: None,
            });
        }
        // Deposited for the first attempt, so only after the check above: a call that makes
        // no attempt must not earn retries for the others.
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let mut delays = self.backoff.iter();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match body(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if self.when.as_ref().is_some_and(|when| !when(&error)) {
                return Err(RetryError::NotRetryable {
                    attempts: attempt,
                    error,
                });
            }
            if attempt >= self.max_attempts {
                self.raise_exhausted(attempt);
                return Err(RetryError::Exhausted {
                    attempts: attempt,
                    last: error,
                });
            }
            // Taken before the wait, so an empty budget ends the call without a useless wait;
            // dropped unspent (the wait cancelled, or this future dropped), it gives the token
            // back.
            let withdrawal = match &self.budget {
                Some(budget) => match budget.withdraw() {
                    Some(withdrawal) => Some(withdrawal),
                    None => {
                        self.raise_exhausted(attempt);
                        return Err(RetryError::BudgetExhausted {
                            attempts: attempt,
                            last: error,
                        });
                    }
                },
                None => None,
            };
            // The schedule never ends, so `next` always has a delay.
            let planned = delays.next().unwrap_or_default();
            let delay = match &self.adjust {
                Some(adjust) => adjust(&error, planned),
                None => planned,
            };
            let sleep = sleep_checked(delay);
            match token {
                Some(token) => {
                    // Biased, cancellation first: a token cancelled by the time the wait
                    // ends (during the attempt, or with a zero delay) stops the call rather
                    // than starting another attempt at random.
                    tokio::select! {
                        biased;
                        () = token.cancelled() => {
                            return Err(RetryError::Cancelled { attempts: attempt, last: Some(error) });
                        }
                        () = sleep => {}
                    }
                }
                None => sleep.await,
            }
            if let Some(withdrawal) = withdrawal {
                withdrawal.spend();
            }
            // Raised only now that the next attempt starts: a call cancelled (or dropped)
            // during the wait announces no attempt that never ran.
            self.raise_attempt(attempt + 1, delay);
        }
    }

    fn raise(&self, name: &str, headers: &[(&str, i64)]) {
        let Some(sink) = &self.sink else { return };
        let Ok(mut builder) = Signal::build(name) else {
            return;
        };
        if let Some(key) = &self.name {
            builder = builder.key(key.clone());
        }
        for (k, v) in headers {
            builder = builder.header(k, *v);
        }
        // A fixed valid name with two headers is within every sink's limits; a failure to
        // report must not turn into a failure of the call.
        let _ = sink.raise_with(builder);
    }

    fn raise_attempt(&self, attempt: u32, delay: Duration) {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.raise(
            "retry.attempt",
            &[("attempt", i64::from(attempt)), ("delay_ms", delay_ms)],
        );
    }

    fn raise_exhausted(&self, attempts: u32) {
        self.raise("retry.exhausted", &[("attempts", i64::from(attempts))]);
    }
}

/// Sleeps for `delay`, or effectively forever if the deadline would overflow the clock.
async fn sleep_checked(delay: Duration) {
    match tokio::time::Instant::now().checked_add(delay) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
