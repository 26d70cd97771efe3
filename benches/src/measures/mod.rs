//! The measurements of DESIGN §4, one file per area.
//!
//! Each measurement is a [`Spec`]: a name and a function that runs both sides in alternating
//! turns and returns a [`Measurement`]. Where our side needs a part of `ephemeral` that is not
//! written yet (coordinators, `Channel<T>`, the bus), it is a separate `ours_*` function at the
//! top of its file that returns `None`; the measurement then prints `"ours": null`.

use std::time::Duration;

use tokio::runtime::Runtime;

use crate::report::Measurement;
use crate::turns::MIN_TURNS;

pub mod bus;
pub mod channel;
pub mod coordinator;
pub mod defer;
pub mod memory;
pub mod nats;
pub mod nats_intake;
pub mod sink;
pub mod store;
pub mod top;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// Smaller workloads so the whole run finishes in under a minute.
    pub quick: bool,
}

impl Config {
    /// `full` normally, `quick` under `--quick`.
    #[must_use]
    pub fn pick(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }

    /// Measured turns per side.
    #[must_use]
    pub fn turns(&self) -> usize {
        MIN_TURNS
    }
}

/// One named measurement.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The name printed in the JSON line.
    pub name: &'static str,
    /// Runs it.
    pub run: fn(&Config) -> Measurement,
}

/// Every measurement, in DESIGN §4's order (plus the RSS growth companion line and the
/// coordinator with tracking off).
#[must_use]
pub fn all() -> Vec<Spec> {
    vec![
        Spec {
            name: "coord_noop_vs_pool16",
            run: coordinator::noop_vs_pool16,
        },
        Spec {
            name: "coord_noop_untracked_vs_pool16",
            run: coordinator::noop_untracked_vs_pool16,
        },
        Spec {
            name: "coord_noop_vs_spawn",
            run: coordinator::noop_vs_spawn,
        },
        Spec {
            name: "coord_noop_vs_tower",
            run: coordinator::noop_vs_tower,
        },
        Spec {
            name: "coord_service_vs_tower",
            run: coordinator::service_vs_tower,
        },
        Spec {
            name: "keyed_1000_vs_pool16",
            run: coordinator::keyed_1000_vs_pool16,
        },
        Spec {
            name: "raise_1t_vs_mutex_vecdeque",
            run: sink::raise_1t,
        },
        Spec {
            name: "raise_2t_vs_mutex_vecdeque",
            run: sink::raise_2t,
        },
        Spec {
            name: "has_signal_100k_vs_scan",
            run: sink::has_signal_100k_vs_scan,
        },
        Spec {
            name: "has_signal_1k_vs_100k",
            run: sink::has_signal_1k_vs_100k,
        },
        Spec {
            name: "fanout4_vs_broadcast",
            run: sink::fanout4_vs_broadcast,
        },
        Spec {
            name: "channel_fanout4_vs_broadcast",
            run: channel::fanout4_vs_broadcast,
        },
        Spec {
            name: "defer_resume_p99",
            run: defer::resume_p99,
        },
        Spec {
            name: "rss_10m_items",
            run: memory::rss_10m_items,
        },
        Spec {
            name: "rss_growth_1m_to_10m",
            run: memory::rss_growth,
        },
        Spec {
            name: "bus_throughput",
            run: bus::throughput,
        },
        Spec {
            name: "bus_latency_p99",
            run: bus::latency_p99,
        },
        Spec {
            name: "store_set_vs_raw",
            run: store::set_vs_raw,
        },
        Spec {
            name: "store_get_vs_raw",
            run: store::get_vs_raw,
        },
        Spec {
            name: "nats_intake_1w_vs_pull",
            run: nats_intake::intake_1w,
        },
        Spec {
            name: "nats_intake_2w_vs_pull",
            run: nats_intake::intake_2w,
        },
        Spec {
            name: "nats_intake_4w_vs_pull",
            run: nats_intake::intake_4w,
        },
        Spec {
            name: "nats_intake_confirmed_2w_vs_pull",
            run: nats_intake::intake_confirmed_2w,
        },
        Spec {
            name: "nats_bridge_latency_p99",
            run: nats::bridge_latency_p99,
        },
        Spec {
            name: "top_publish_overhead",
            run: top::publish_overhead,
        },
    ]
}

/// The runtime every async measurement uses: multi-threaded with two workers (the machine's
/// two cores); the measuring code itself runs in `block_on` on the calling thread.
///
/// # Panics
///
/// When the OS refuses to start the runtime's threads; `compare` cannot do anything then.
#[must_use]
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a tokio runtime")
}

/// A measurement whose baseline is a fixed reference number, not measured in this run; set
/// `ours` and `note` with struct update syntax.
pub(crate) fn reference(
    name: &'static str,
    unit: &'static str,
    baseline: &str,
    value: f64,
    higher_is_better: bool,
    target: f64,
) -> Measurement {
    Measurement {
        name,
        unit,
        ours: None,
        baseline: baseline.to_owned(),
        baseline_value: Some(value),
        higher_is_better,
        target,
        same_run: false,
        note: None,
    }
}

/// A measurement from alternating turns measured in this run.
pub(crate) fn measured(
    name: &'static str,
    unit: &'static str,
    baseline: &str,
    turns: &crate::turns::Turns,
    higher_is_better: bool,
    target: f64,
) -> Measurement {
    Measurement {
        name,
        unit,
        ours: turns.ours_median(),
        baseline: baseline.to_owned(),
        baseline_value: turns.baseline_median(),
        higher_is_better,
        target,
        same_run: true,
        note: None,
    }
}

/// A duration in microseconds.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
