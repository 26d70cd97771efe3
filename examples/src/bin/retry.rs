//! Retry a flaky downstream: exponential backoff with jitter, a `when` predicate, a server's
//! Retry-After, a shared budget, cancellation, and the signals it leaves behind.
//!
//! Run with `cargo run -p ephemeral-examples --bin retry`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::retry::{Backoff, Jitter, Retry, RetryBudget, RetryError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the downstream answers.
#[derive(Debug, Clone, PartialEq)]
enum HttpError {
    Unavailable,
    TooManyRequests { retry_after: Duration },
    NotFound,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable => write!(f, "503 service unavailable"),
            Self::TooManyRequests { retry_after } => {
                write!(f, "429 too many requests, retry after {retry_after:?}")
            }
            Self::NotFound => write!(f, "404 not found"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let budget = RetryBudget::new(0.5, 5.0, 10.0);
    let retry = Retry::new(
        Backoff::exponential(Duration::from_millis(20))
            .jitter(Jitter::Equal)
            .max_delay(Duration::from_millis(200)),
    )
    .max_attempts(4)
    .expect("4 attempts is a valid setting")
    .when(|e: &HttpError| !matches!(e, HttpError::NotFound))
    .adjust(|e, planned| match e {
        HttpError::TooManyRequests { retry_after } => *retry_after,
        _ => planned,
    })
    .budget(budget.clone())
    .signals(sink.clone())
    .name("inventory");

    let start = Instant::now();
    let calls = Arc::new(AtomicU32::new(0));

    // 1. Fails twice with 503, then answers.
    let c = calls.clone();
    let stock = retry
        .run(|attempt| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                println!("  [{:>4?}] attempt {attempt}", start.elapsed());
                if attempt < 3 {
                    Err(HttpError::Unavailable)
                } else {
                    Ok(42)
                }
            }
        })
        .await;
    println!("flaky call: {stock:?}");
    let flaky_calls = calls.load(Ordering::Relaxed);

    // 2. A 429 with Retry-After: the hook waits what the server asked.
    let t = Instant::now();
    let ok = retry
        .run(|attempt| async move {
            if attempt == 1 {
                Err(HttpError::TooManyRequests {
                    retry_after: Duration::from_millis(150),
                })
            } else {
                Ok("done")
            }
        })
        .await;
    let rate_limited_wait = t.elapsed();
    println!("rate-limited call: {ok:?} after {rate_limited_wait:?}");

    // 3. A 404 is not worth retrying.
    let missing: Result<u32, _> = retry.run(|_| async { Err(HttpError::NotFound) }).await;
    match &missing {
        Err(e) => println!("missing item: {e}"),
        Ok(n) => println!("missing item: unexpectedly found {n}"),
    }

    // 4. A downstream that is down for good: gives up after 4 attempts.
    let down: Result<u32, _> = retry.run(|_| async { Err(HttpError::Unavailable) }).await;
    let gave_up = match &down {
        Err(e @ (RetryError::Exhausted { .. } | RetryError::BudgetExhausted { .. })) => {
            println!("down for good: {e}");
            true
        }
        other => {
            println!("unexpected: {other:?}");
            false
        }
    };

    // 5. Shutting down cancels a long wait at once.
    let token = CancellationToken::new();
    let slow = Retry::new(Backoff::constant(Duration::from_secs(60)))
        .max_attempts(3)
        .expect("3 attempts is a valid setting");
    let canceller = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let t = Instant::now();
    let cancelled: Result<(), _> = slow
        .run_with_cancel(&token, |_| async { Err(HttpError::Unavailable) })
        .await;
    let cancel_wait = t.elapsed();
    match &cancelled {
        Err(e) => println!("cancelled during a 60 s backoff after {cancel_wait:?}: {e}"),
        Ok(()) => println!("unexpected: the call succeeded"),
    }

    println!(
        "signals: {} retry.attempt, {} retry.exhausted; budget left {:.1}",
        sink.count("retry.attempt"),
        sink.count("retry.exhausted"),
        budget.balance()
    );
    // What this example shows, checked (CI runs it with its output discarded): the flaky
    // call succeeded on its 3rd attempt; the 429 call waited at least the 150 ms the server
    // asked for; the 404 was not retried; the dead downstream made the retry give up; and the
    // cancel ended the 60 s backoff long before it ran out (30 s is a generous bound).
    let mut wrong = Vec::new();
    if stock != Ok(42) || flaky_calls != 3 {
        wrong.push(format!(
            "flaky call: {stock:?} after {flaky_calls} attempts"
        ));
    }
    if ok != Ok("done") || rate_limited_wait < Duration::from_millis(150) {
        wrong.push(format!("429 call: {ok:?} after {rate_limited_wait:?}"));
    }
    if !matches!(missing, Err(RetryError::NotRetryable { attempts: 1, .. })) {
        wrong.push(format!("404 call: {missing:?}"));
    }
    if !gave_up {
        wrong.push(format!("dead downstream: {down:?}"));
    }
    if !matches!(cancelled, Err(RetryError::Cancelled { .. }))
        || cancel_wait > Duration::from_secs(30)
    {
        wrong.push(format!(
            "cancelled call: {cancelled:?} after {cancel_wait:?}"
        ));
    }
    if !wrong.is_empty() {
        return Err(format!("the retries did not behave as shown: {}", wrong.join("; ")).into());
    }
    Ok(())
}
