//! Adaptive rate: a client slows down when a rate-limited API answers 429 with
//! `Retry-After`, then recovers gradually.
//!
//! The "API" accepts at most 20 requests per 100 ms window; the client starts at 400 per
//! second. Each 429 is raised on the sink as `http.429` with a `retry-after` header, and the
//! adaptive limiter pauses and halves its rate, then grows back ×1.5 every 250 ms. Runs about
//! three seconds.

use std::time::Duration;

use ephemeral::{Signal, SignalSink};
use ephemeral_patterns::adaptive_rate::{AdaptiveRate, AdaptiveRateOptions};
use tokio::time::Instant;

/// A fixed-window server-side limit: `limit` requests per `window`.
struct Api {
    window_start: Instant,
    used: u32,
    limit: u32,
    window: Duration,
}

impl Api {
    fn call(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= self.window {
            self.window_start = now;
            self.used = 0;
        }
        if self.used < self.limit {
            self.used += 1;
            Ok(())
        } else {
            Err(self.window - now.duration_since(self.window_start))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let limiter = AdaptiveRate::new(
        &sink,
        AdaptiveRateOptions::default()
            .rate_per_second(400.0)
            .listen_on("http.429")
            .decrease(0.5, 10.0)
            .recovery(1.5, Duration::from_millis(250)),
    )?;
    let mut api = Api {
        window_start: Instant::now(),
        used: 0,
        limit: 20,
        window: Duration::from_millis(100),
    };

    let start = Instant::now();
    let (mut ok, mut refused) = (0u32, 0u32);
    let mut next_report = Duration::from_millis(500);
    let mut slowest = limiter.current_rate();
    while start.elapsed() < Duration::from_secs(3) {
        limiter.acquire().await;
        slowest = slowest.min(limiter.current_rate());
        match api.call() {
            Ok(()) => ok += 1,
            Err(retry_after) => {
                refused += 1;
                let millis = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
                sink.raise_with(
                    Signal::build("http.429")?
                        .header("retry-after", format!("{millis}ms").as_str()),
                )?;
            }
        }
        if start.elapsed() >= next_report {
            println!(
                "t={:>4} ms  accepted {ok:>4}  refused {refused:>3}  client rate {:>6.1}/s",
                start.elapsed().as_millis(),
                limiter.current_rate()
            );
            next_report += Duration::from_millis(500);
        }
    }
    println!(
        "done: {ok} accepted, {refused} refused with 429 ({} throttles applied); \
         without the limiter the client would have sent ~1200 requests into a 600-request budget",
        limiter.throttles()
    );
    // What this example shows, checked (CI runs it with its output discarded): the API did
    // answer 429, the limiter throttled on it and slowed below its starting 400/s, and so most
    // requests got through (at 400/s into a 200/s budget, about half would be refused).
    if refused == 0 || limiter.throttles() == 0 || slowest >= 400.0 || refused * 4 >= ok {
        return Err(format!(
            "expected 429s that slowed the client below 400/s and kept refusals under a fifth; \
             saw {ok} accepted, {refused} refused, {} throttles, slowest rate {slowest:.1}/s",
            limiter.throttles()
        )
        .into());
    }
    Ok(())
}
