//! Properties of the limiters over random request times, rates and bursts.

use std::time::Duration;

use ephemeral_atoms::rate_limit::{
    GcraLimiter, KeyedRateLimiter, RateLimiter, TokenBucket, Tunable,
};
use proptest::prelude::*;

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// One step of a run: time passes, a permit is asked for, or the limiters are retuned.
#[derive(Debug, Clone)]
enum Step {
    Advance(Duration),
    Acquire,
    SetRate(f64),
    SetBurst(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u64..400_000_000).prop_map(|ns| Step::Advance(Duration::from_nanos(ns))),
        5 => Just(Step::Acquire),
        // 0.01 to 1000 per second, mostly with intervals that do not divide each other.
        1 => (1u32..100_000).prop_map(|r| Step::SetRate(f64::from(r) / 100.0)),
        1 => (1u32..8).prop_map(Step::SetBurst),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// GCRA, the token bucket and a single key of the keyed limiter make the same decision,
    /// with the same retry_after, at every request; and no window of length `w` ever sees more
    /// than `burst + w / emission` grants.
    #[test]
    fn limiters_agree_and_never_exceed_the_rate(
        rate in 1u32..1000,
        burst in 1u32..20,
        gaps in proptest::collection::vec(0u64..5_000_000, 1..200),
    ) {
        paused_runtime().block_on(async move {
            let rate = f64::from(rate);
            let gcra = GcraLimiter::new(rate, burst).unwrap();
            let bucket = TokenBucket::new(rate, burst).unwrap();
            let keyed = KeyedRateLimiter::new(rate, burst, 4).unwrap();
            let start = tokio::time::Instant::now();
            let mut grants: Vec<u128> = Vec::new();
            for gap in gaps {
                tokio::time::advance(Duration::from_nanos(gap)).await;
                let a = gcra.try_acquire();
                let b = bucket.try_acquire();
                let c = keyed.try_acquire(&0u8);
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, c);
                if a.is_ok() {
                    grants.push(start.elapsed().as_nanos());
                }
            }
            let emission = (1e9 / rate).round() as u128;
            for (i, &t0) in grants.iter().enumerate() {
                for (j, &t1) in grants.iter().enumerate().skip(i) {
                    let allowed = u128::from(burst) + (t1 - t0) / emission;
                    prop_assert!((j - i + 1) as u128 <= allowed,
                        "{} grants in {} ns with burst {burst}", j - i + 1, t1 - t0);
                }
            }
            Ok(())
        })?;
    }

    /// A refused permit is granted exactly at `retry_after`, not a nanosecond earlier.
    #[test]
    fn retry_after_is_exact(rate in 1u32..1000, burst in 1u32..10, extra in 1u32..10) {
        paused_runtime().block_on(async move {
            let gcra = GcraLimiter::new(f64::from(rate), burst).unwrap();
            for _ in 0..burst {
                gcra.try_acquire().unwrap();
            }
            for _ in 0..extra {
                let wait = gcra.try_acquire().unwrap_err().retry_after;
                prop_assert!(wait > Duration::ZERO);
                tokio::time::advance(wait - Duration::from_nanos(1)).await;
                prop_assert!(gcra.try_acquire().is_err());
                tokio::time::advance(Duration::from_nanos(1)).await;
                prop_assert!(gcra.try_acquire().is_ok());
            }
            Ok(())
        })?;
    }

    /// Retuning keeps them in step: after any mix of rate and burst changes, GCRA, the token
    /// bucket and a single key of the keyed limiter still make the same decision, with the
    /// same retry_after to the nanosecond.
    #[test]
    fn limiters_agree_after_rate_and_burst_changes(
        rate in 1u32..1000,
        burst in 1u32..8,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        paused_runtime().block_on(async move {
            let rate = f64::from(rate);
            let gcra = GcraLimiter::new(rate, burst).unwrap();
            let bucket = TokenBucket::new(rate, burst).unwrap();
            let keyed = KeyedRateLimiter::new(rate, burst, 4).unwrap();
            let limiters = [&gcra as &dyn Tunable, &bucket, &keyed];
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Advance(d) => tokio::time::advance(d).await,
                    Step::Acquire => {
                        let a = gcra.try_acquire();
                        prop_assert_eq!(a, bucket.try_acquire(), "step {}", i);
                        prop_assert_eq!(a, keyed.try_acquire(&0u8), "step {}", i);
                    }
                    Step::SetRate(r) => {
                        for limiter in limiters {
                            limiter.set_rate(r).unwrap();
                        }
                    }
                    Step::SetBurst(b) => {
                        for limiter in limiters {
                            limiter.set_burst(b).unwrap();
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}
