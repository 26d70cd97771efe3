//! Adaptive rate limiting: slow intake when the downstream says so, recover gradually.
//!
//! # When to use it
//!
//! When a downstream tells you to back off — an API answering 429 with `Retry-After`, a
//! database raising `rate-limit:5s` — and you want every producer sharing the sink to slow
//! down, not just the one that got the answer. [`AdaptiveRate`] listens to the sink:
//!
//! * a command signal `rate-limit:<duration>` (at a segment boundary, so
//!   `payments.rate-limit:2s` counts too), or
//! * any matching signal with a `retry-after` header (seconds as a number, or a duration
//!   string such as `1m 30s`): the `http` pattern's `http.error.<status>` carries the
//!   response's `Retry-After` this way, so a 429 through that layer reaches a limiter that
//!   listens to `http.*`
//!
//! pauses intake for that duration (at most 30 years: a `Duration::MAX` pause, or a number
//! of seconds past what a `Duration` holds, such as `retry-after: 1e20`, `"inf"` or
//! `rate-limit:1e20`, holds for 30 years, for ever in practice) and cuts the rate by the
//! decrease factor (halved by default, never below the minimum). After the pause, the rate grows back by the recovery
//! factor every recovery interval until it reaches the base rate again.
//!
//! The limiter is the `ephemeral-atoms` GCRA (`GcraLimiter`), retuned with `set_rate` on
//! every throttle and recovery step. It is itself one of atoms' limiters
//! (`ephemeral_atoms::rate_limit::RateLimiter` and `Tunable`): its waiters queue in atoms'
//! `Waiters` (in order, one on the clock), its admission hook is atoms' `RateLimitAdmission`
//! over it, its rate reads as the current one, and `set_rate` moves the base rate (so atoms'
//! `control()` steers it with `rate.limit.set:<n>`).
//!
//! Differences from the .NET original: there the adaptive limiter never slowed anything
//! (inert); here the rate demonstrably drops on a signal and recovers, as the tests show.
//!
//! Not for: a fixed rate with no feedback (a plain rate limiter is simpler).

mod limiter;
mod rate_limiter;

pub use limiter::{AdaptiveRate, AdaptiveRateError, AdaptiveRateOptions};
