//! Rate limiting: GCRA grants (10 per second, burst 5), a per-customer limiter, and live
//! control through command signals.
//!
//! Run with `cargo run -p ephemeral-examples --bin rate_limit`.

use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::rate_limit::{
    GcraLimiter, KeyedRateLimiter, RateLimiter, TokenBucket, Tunable, control,
};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let limiter = GcraLimiter::new(10.0, 5)?;
    let _control = control(&sink, "rate.limit", limiter.clone())?;

    println!("10 per second, burst 5:");
    let start = Instant::now();
    for request in 1..=8 {
        limiter.acquire().await;
        println!(
            "  request {request} granted at {:>4?}",
            start.elapsed().round_ms()
        );
    }
    match limiter.try_acquire() {
        Ok(()) => println!("  (a permit was free)"),
        Err(limited) => println!("  try_acquire: {limited}"),
    }

    sink.raise("rate.limit.set:50")?;
    sink.raise("rate.limit.burst:1")?;
    for applied in sink.sense("rate.limit.applied") {
        println!(
            "applied {}: rate {}, burst {}",
            header(&applied, "command"),
            header(&applied, "rate"),
            header(&applied, "burst")
        );
    }
    sink.raise("rate.limit.decrease:100")?;
    if let Some(rejected) = sink.latest("rate.limit.rejected") {
        println!(
            "rejected {}: {}",
            header(&rejected, "command"),
            header(&rejected, "reason")
        );
    }
    let start = Instant::now();
    for _ in 0..5 {
        limiter.acquire().await;
    }
    println!(
        "after the change ({} per second, burst {}): 5 permits in {:?}",
        limiter.rate(),
        limiter.burst(),
        start.elapsed().round_ms()
    );

    println!("per customer, 2 per second, burst 2, at most 10,000 customers tracked:");
    let per_customer = KeyedRateLimiter::new(2.0, 2, 10_000)?;
    for customer in ["acme", "acme", "acme", "globex"] {
        match per_customer.try_acquire(&customer) {
            Ok(()) => println!("  {customer}: granted"),
            Err(limited) => println!("  {customer}: {limited}"),
        }
    }

    let bucket = TokenBucket::new(10.0, 5)?;
    bucket.try_acquire()?;
    println!("token bucket: {} tokens left", bucket.available().floor());
    Ok(())
}

fn header(signal: &ephemeral::Signal, key: &str) -> String {
    signal
        .header(key)
        .map(ToString::to_string)
        .unwrap_or_default()
}

trait RoundMs {
    fn round_ms(self) -> Duration;
}

impl RoundMs for Duration {
    /// Real clocks overshoot by a little; the grants are on 100 ms boundaries.
    fn round_ms(self) -> Duration {
        Duration::from_millis(((self.as_secs_f64() * 100.0).round() * 10.0) as u64)
    }
}
