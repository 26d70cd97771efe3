//! The cross-process bus against fixed targets: 2,000,000 msg/s and a 500 µs p99.
//!
//! Both baselines are fixed reference numbers. Our side is [`ours_throughput`] and
//! [`ours_latency_p99`], which return `None` until `ephemeral-bus` is on main. Both need a second
//! process: re-exec this binary with the hidden `--child` flag, as [`super::memory`] does.

use super::{Config, reference};
use crate::report::Measurement;

// ---------------------------------------------------------------------------------------------
// Ours: fill these in when the bus lands.
// ---------------------------------------------------------------------------------------------

/// Our side: 64-byte messages per second from one publisher process to one subscriber process.
/// `None` while the bus does not exist.
pub fn ours_throughput(cfg: &Config) -> Option<f64> {
    let _ = cfg;
    None
}

/// Our side: p99 one-way latency in µs with a blocking receiver, paced at 10,000 msg/s. `None`
/// while the bus does not exist.
pub fn ours_latency_p99(cfg: &Config) -> Option<f64> {
    let _ = cfg;
    None
}

// ---------------------------------------------------------------------------------------------

const NOT_YET: &str = "ours: ephemeral-bus is not on main yet (fill in measures/bus.rs)";

/// Bus throughput versus 2,000,000 msg/s.
pub fn throughput(cfg: &Config) -> Measurement {
    let ours = ours_throughput(cfg);
    Measurement {
        ours,
        note: ours.is_none().then(|| NOT_YET.into()),
        ..reference(
            "bus_throughput",
            "msg/s",
            "fixed target: 2,000,000 msg/s of 64 bytes, process to process",
            2_000_000.0,
            true,
            1.0,
        )
    }
}

/// Bus p99 one-way latency versus 500 µs.
pub fn latency_p99(cfg: &Config) -> Measurement {
    let ours = ours_latency_p99(cfg);
    Measurement {
        ours,
        note: ours.is_none().then(|| NOT_YET.into()),
        ..reference(
            "bus_latency_p99",
            "us",
            "fixed target: 500 us p99 one-way at 10k msg/s",
            500.0,
            false,
            1.0,
        )
    }
}
