//! Presets: the coordinators with sensible defaults, under the names people look for.
//!
//! Each preset is a thin wrapper around a core coordinator; [`inner`](FixedWork::inner) hands
//! out the coordinator itself, so anything the preset does not expose is one call away.
//!
//! * [`FixedWork`] — a FIFO [`EphemeralWorkCoordinator`](ephemeral::EphemeralWorkCoordinator)
//!   with a set number of workers (changed only through its `inner()` coordinator).
//! * [`KeyedSequential`] — an
//!   [`EphemeralKeyedWorkCoordinator`](ephemeral::EphemeralKeyedWorkCoordinator) running
//!   strictly one item at a time per key.
//! * [`SignalAware`] — a FIFO coordinator whose intake is refused ([`refuse_on`]) or deferred
//!   ([`defer_on`] / [`resume_on`]) while ambient signals are live.
//!
//! Use a preset when its defaults are what you want; reach for the coordinator directly when
//! you need admission hooks, priority lanes, results or options a preset does not pass on.
//!
//! [`refuse_on`]: SignalAwareBuilder::refuse_on
//! [`defer_on`]: SignalAwareBuilder::defer_on
//! [`resume_on`]: SignalAwareBuilder::resume_on

mod error;
mod fixed;
mod keyed;
mod signal_aware;

pub use error::SignalAwareError;
pub use fixed::FixedWork;
pub use keyed::KeyedSequential;
pub use signal_aware::{SignalAware, SignalAwareBuilder};
