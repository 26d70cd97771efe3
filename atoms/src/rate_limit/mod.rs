//! Rate limiting: GCRA, token bucket, per-key limits, and live control by signals.
//!
//! | type | state | use |
//! |---|---|---|
//! | [`GcraLimiter`] | one timestamp | the default: exact, tiny |
//! | [`TokenBucket`] | a token count | when you want to read [`available`](TokenBucket::available) tokens |
//! | [`KeyedRateLimiter`] | one timestamp per busy key, bounded | per customer / IP / tenant |
//!
//! The two single limiters share the [`RateLimiter`] trait (`try_acquire`, `acquire`,
//! `admit`), and all three share [`Tunable`] (rate and burst at run time), which
//! [`control`] uses to steer a limiter from `rate.limit.set:<n>`-style command signals.
//!
//! With rate 10 per second and burst 5: five permits at once, then one every 100 ms. A
//! refused [`try_acquire`](RateLimiter::try_acquire) returns [`RateLimited`] with the exact
//! `retry_after`. Everything runs on tokio's clock.
//!
//! # As a coordinator admission hook
//!
//! [`RateLimiter::admit`] (and [`KeyedRateLimiter::admit`]) resolve when an item may start,
//! having taken its permit: an `Admission` hook awaits it and admits. To defer instead of
//! waiting inside the hook, call `try_acquire` and defer for `retry_after`.

mod control;
mod gcra;
mod keyed;
mod limiter;
mod token_bucket;

pub use control::control;
pub use gcra::GcraLimiter;
pub use keyed::KeyedRateLimiter;
pub use limiter::{LimitReason, RateConfigError, RateLimited, RateLimiter, Tunable};
pub use token_bucket::TokenBucket;
