//! Backpressure between coordinators: a held `backpressure.<name>` condition with hysteresis.
//!
//! # When to use it
//!
//! When one stage feeds another (an importer feeding a database writer) and the downstream
//! backlog must not grow without bound. The downstream side reports its pending count to a
//! [`Backpressure`]; while the count is above the high watermark the sink holds
//! `backpressure.<name>`, and it is released only once the count falls below the low
//! watermark, so the upstream does not flap. Upstream coordinators simply use
//! `defer_on("backpressure.<name>")`: their items wait, holding no slot, and start the moment
//! the hold is released (the coordinator learns it from a sink watch, with no polling).
//!
//! With coordinators: give the downstream coordinator the hook from
//! [`Backpressure::admission`], start a [`BackpressureMonitor`] on it with
//! [`Backpressure::monitor`], and call [`Backpressure::report`] right after enqueueing
//! into it. Upstream coordinators use `defer_on("backpressure.<name>")`, or the hook from
//! [`Backpressure::throttle`], which waits on the reporter's own state rather than on the
//! sink's hold: use it where the sink may refuse the hold (its `max_holds` reached), since
//! `defer_on` then sees nothing to wait for. A refused hold is asked for again on every
//! report while the count stays high.
//!
//! Not for: bounding a single coordinator's own intake (its `max_pending` does that: `enqueue`
//! waits for room).

mod monitor;
mod throttle;
mod watermark;

pub use monitor::{BackpressureMonitor, RECHECK_WHILE_HELD};
pub use watermark::{Backpressure, BackpressureError};
