//! A circuit breaker driven by failure signals on a sink.
//!
//! # When to use it
//!
//! Put a breaker in front of a dependency that fails in bursts (a database that falls over,
//! a rate-limited API). Operations report failures by raising a signal (`failure` by default,
//! or any pattern you choose); after N of them within a window, or N in a row, the breaker
//! opens and *holds* `circuit.open` on the sink. Coordinators react through their ordinary
//! options: `cancel_on("circuit.open")` ends new items `Cancelled`, `defer_on("circuit.open")`
//! parks them until the breaker lets go. After the open period (which may grow by a backoff
//! factor each time the breaker reopens) it raises `circuit.half_open` and admits a bounded
//! number of probes; enough successes close it and raise `circuit.closed`, a failure reopens
//! it.
//!
//! Differences from the .NET original: there the breaker never saw a failure (bodies could not
//! raise signals); here any body, listener or caller can, and the breaker sees each one
//! synchronously. Reading [`CircuitBreaker::state`] never changes it.
//!
//! Only the breaker's own gates bound the probes: [`CircuitBreaker::admission`] (a
//! coordinator's hook, paired with [`CircuitBreaker::observe`] in its `on_finalized`) and
//! [`CircuitBreaker::try_acquire`]. With `cancel_on` or `defer_on` alone, the hold's release
//! lets every item through at once, none of them is a probe, and so `observe` never closes
//! the breaker: it stays half-open (where a single failure reopens it, with backoff) until a
//! success is reported some other way — a signal matching
//! [`success_on`](CircuitBreakerOptions::success_on), or
//! [`record_success`](CircuitBreaker::record_success).
//!
//! Calls that are not coordinator operations (a client middleware, a hand-written loop) ask
//! with [`CircuitBreaker::try_acquire`] and report through the [`BreakerPermit`] it grants.
//!
//! Not for: slowing down rather than stopping (use adaptive rate limiting), or pausing while a
//! condition you already know about holds (a plain `defer_on` on that condition does it).

mod admission;
mod breaker;
mod options;
mod permit;

pub use admission::BreakerAdmission;
pub use breaker::{CircuitBreaker, CircuitState, ProbeDecision};
pub use options::{BreakerConfigError, CircuitBreakerOptions, DEFAULT_MAX_OPEN, Trip};
pub use permit::{BreakerPermit, CircuitOpen};
