//! Rate limiting: GCRA, token bucket, per-key limits, and live control by signals.
//!
//! | type | state | use |
//! |---|---|---|
//! | [`GcraLimiter`] | one timestamp | the default: exact, tiny |
//! | [`TokenBucket`] | a token count | when you want to read [`available`](TokenBucket::available) tokens |
//! | [`KeyedRateLimiter`] | one timestamp per busy key, bounded; a queue per key waited on | per customer / IP / tenant |
//!
//! The two single limiters share the [`RateLimiter`] trait (`try_acquire`,
//! `try_acquire_waited`, `check`, `acquire`, `admit`, and a [`Waiters`] queue that serves
//! waiters in order, at the rate asked for past 1,000 per second too), and all three
//! share [`Tunable`] (rate and burst at run time), which [`control()`] uses to steer a
//! limiter from `rate.limit.set:<n>`-style command signals.
//!
//! With rate 10 per second and burst 5: five permits at once, then one every 100 ms. A
//! refused [`try_acquire`](RateLimiter::try_acquire) returns [`RateLimited`] with the exact
//! `retry_after`. Everything runs on tokio's clock.
//!
//! # As a coordinator admission hook
//!
//! [`RateLimitAdmission`] makes any [`RateLimiter`] a coordinator `Admission` hook: an item
//! starts when a permit is free, and is otherwise deferred (holding no slot) behind the
//! limiter's other waiters, in order; only the first of them waits on the clock, and each
//! item takes its permit when it is asked again, so starts keep the rate and burst.
//! [`RateLimiter::admit`] (and [`KeyedRateLimiter::admit`]) are the awaiting form for your
//! own hooks.

mod admission;
mod control;
mod gcra;
mod keyed;
mod limiter;
mod token_bucket;
mod waiters;

pub use admission::RateLimitAdmission;
pub use control::{ControlError, control};
pub use gcra::GcraLimiter;
pub use keyed::KeyedRateLimiter;
pub use limiter::{LimitReason, RateConfigError, RateLimited, RateLimiter, Tunable};
pub use token_bucket::TokenBucket;
pub use waiters::Waiters;
