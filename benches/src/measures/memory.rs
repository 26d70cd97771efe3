//! Peak memory of a coordinator over 10 million no-op items, measured in a child process.
//!
//! `compare` re-executes itself with the hidden `--child <workload>` flag; the child runs the
//! workload and prints one `checkpoint <items> <VmHWM KiB>` line at each checkpoint (read from
//! `/proc/self/status`), or `unavailable <reason>`. A fresh process keeps the other
//! measurements' allocations out of the peak.
//!
//! The same flag runs [`CHILD_RAISE_LOOP`], [`CHILD_FANOUT_LOOP`],
//! [`CHILD_CHANNEL_FANOUT_LOOP`], [`CHILD_COORD_LOOP`], [`CHILD_COORD_UNTRACKED_LOOP`],
//! [`CHILD_KEYED_LOOP`],
//! [`CHILD_KEYED_TEXT_LOOP`] and [`CHILD_SERVICE_LOOP`], ours alone, and
//! [`CHILD_TOWER_LOOP`], the tower baseline alone, for profiling.
//!
//! Our workload is [`ours_rss_workload`].

use std::convert::Infallible;
use std::process::Command;
use std::sync::OnceLock;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};

use super::{Config, reference};
use crate::report::Measurement;

/// The child workload that runs our coordinator.
pub const CHILD_COORDINATOR: &str = "rss-coordinator";
/// A child workload that touches 64 MiB and reports: proves the machinery works.
pub const CHILD_PROBE: &str = "rss-probe";
/// A child workload that only raises on a sink, for a profiler (`perf record compare --child
/// raise-loop`): no baseline in the same process to blur the profile.
pub const CHILD_RAISE_LOOP: &str = "raise-loop";
/// The baseline of [`CHILD_RAISE_LOOP`] alone (`Mutex<VecDeque>`), for a profiler to count
/// against it.
pub const CHILD_WINDOW_LOOP: &str = "window-loop";
/// A child workload that only runs our 4-subscriber fan-out, for a profiler.
pub const CHILD_FANOUT_LOOP: &str = "fanout-loop";
/// The baseline of [`CHILD_FANOUT_LOOP`] alone (`tokio::sync::broadcast`), for a profiler to
/// count against it.
pub const CHILD_BROADCAST_LOOP: &str = "broadcast-loop";
/// A child workload that only runs our 4-subscriber `Channel<T>` fan-out, for a profiler.
pub const CHILD_CHANNEL_FANOUT_LOOP: &str = "channel-fanout-loop";
/// A child workload that only runs our no-op work coordinator (tracking on), for a profiler.
pub const CHILD_COORD_LOOP: &str = "coord-loop";
/// [`CHILD_COORD_LOOP`] with tracking off (finished operations not kept), for a profiler.
pub const CHILD_COORD_UNTRACKED_LOOP: &str = "coord-untracked-loop";
/// The baseline of [`CHILD_COORD_LOOP`] alone (16 tasks on a bounded channel), for a profiler
/// to count against it.
pub const CHILD_POOL_LOOP: &str = "pool-loop";
/// A child workload that only runs our keyed coordinator (1,000 keys), for a profiler.
pub const CHILD_KEYED_LOOP: &str = "keyed-loop";
/// A child workload that only runs our keyed coordinator with `String` keys (100 keys), for
/// a profiler: what a key that allocates costs the keyed queue.
pub const CHILD_KEYED_TEXT_LOOP: &str = "keyed-text-loop";
/// A child workload that only runs our coordinator as a tower service (16 clients), for a
/// profiler.
pub const CHILD_SERVICE_LOOP: &str = "service-loop";
/// A child workload that only runs the tower baseline of the service lines (`Buffer` +
/// `ConcurrencyLimit`, 16 clients), for a profiler to count against [`CHILD_SERVICE_LOOP`].
pub const CHILD_TOWER_LOOP: &str = "tower-loop";
/// The memory [`CHILD_PROBE`] touches.
pub const PROBE_BYTES: usize = 64 << 20;

/// Our workload: no-op items through an `EphemeralWorkCoordinator` with the default window and
/// concurrency 16, calling `checkpoint(items_done)` after each count in `checkpoints` has been
/// drained (enqueue up to the count, wait until that many completed, call it, carry on).
/// Returns `None` if the coordinator refused to start or lost an item.
pub fn ours_rss_workload(checkpoints: &[usize], checkpoint: &mut dyn FnMut(usize)) -> Option<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let c = EphemeralWorkCoordinator::new(
            |item: usize, _ctx| async move {
                std::hint::black_box(item);
                Ok::<_, Infallible>(())
            },
            EphemeralOptions::default().max_concurrency(16),
        )
        .ok()?;
        let mut done = 0usize;
        for &target in checkpoints {
            while done < target {
                c.enqueue(done).await.ok()?;
                done += 1;
            }
            while c.stats().completed < target as u64 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            checkpoint(target);
        }
        c.drain().await.ok()?;
        (c.stats().completed == done as u64).then_some(())
    })
}

// ---------------------------------------------------------------------------------------------

/// The checkpoints: 1M and 10M items (200k and 2M under `--quick`).
#[must_use]
pub fn checkpoints(quick: bool) -> [usize; 2] {
    if quick {
        [200_000, 2_000_000]
    } else {
        [1_000_000, 10_000_000]
    }
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/<pid>/status`.
#[must_use]
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

fn own_vm_hwm_kib() -> Option<u64> {
    vm_hwm_kib(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// Runs the child `workload` in this process and prints its protocol lines; returns the exit
/// code.
pub fn child_main(workload: &str, quick: bool) -> i32 {
    let mut report = |items: usize| match own_vm_hwm_kib() {
        Some(kib) => println!("checkpoint {items} {kib}"),
        None => println!("unavailable cannot read VmHWM from /proc/self/status"),
    };
    match workload {
        CHILD_PROBE => {
            let touched = vec![1u8; PROBE_BYTES];
            std::hint::black_box(&touched);
            report(0);
            0
        }
        CHILD_COORDINATOR => {
            if ours_rss_workload(&checkpoints(quick), &mut report).is_none() {
                println!("unavailable the coordinator refused to start or lost items");
            }
            0
        }
        CHILD_RAISE_LOOP => {
            super::sink::raise_loop(if quick { 2_000_000 } else { 20_000_000 });
            0
        }
        CHILD_WINDOW_LOOP => {
            super::sink::window_loop(if quick { 2_000_000 } else { 20_000_000 });
            0
        }
        CHILD_BROADCAST_LOOP => {
            super::sink::broadcast_loop(if quick { 200_000 } else { 2_000_000 });
            0
        }
        CHILD_FANOUT_LOOP => {
            super::sink::fanout_loop(if quick { 200_000 } else { 2_000_000 });
            0
        }
        CHILD_CHANNEL_FANOUT_LOOP => {
            super::channel::fanout_loop(if quick { 200_000 } else { 2_000_000 });
            0
        }
        CHILD_COORD_LOOP => {
            super::coordinator::coord_loop(if quick { 1_000_000 } else { 10_000_000 })
        }
        CHILD_COORD_UNTRACKED_LOOP => {
            super::coordinator::coord_untracked_loop(if quick { 1_000_000 } else { 10_000_000 })
        }
        CHILD_POOL_LOOP => {
            super::coordinator::pool_loop(if quick { 1_000_000 } else { 10_000_000 })
        }
        CHILD_KEYED_LOOP => super::coordinator::keyed_loop(if quick { 1_000 } else { 10_000 }),
        CHILD_KEYED_TEXT_LOOP => {
            super::coordinator::keyed_text_loop(if quick { 10_000 } else { 100_000 })
        }
        CHILD_SERVICE_LOOP => {
            super::coordinator::service_loop(if quick { 1_000_000 } else { 10_000_000 })
        }
        CHILD_TOWER_LOOP => {
            super::coordinator::tower_loop(if quick { 1_000_000 } else { 10_000_000 })
        }
        other => {
            eprintln!(
                "unknown child workload {other:?}: use {CHILD_PROBE}, {CHILD_COORDINATOR}, {CHILD_RAISE_LOOP}, {CHILD_WINDOW_LOOP}, {CHILD_FANOUT_LOOP}, {CHILD_BROADCAST_LOOP}, {CHILD_CHANNEL_FANOUT_LOOP}, {CHILD_COORD_LOOP}, {CHILD_COORD_UNTRACKED_LOOP}, {CHILD_POOL_LOOP}, {CHILD_KEYED_LOOP}, {CHILD_KEYED_TEXT_LOOP}, {CHILD_SERVICE_LOOP} or {CHILD_TOWER_LOOP}"
            );
            2
        }
    }
}

/// What a child reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildReport {
    /// `(items, peak KiB)` at each checkpoint, in order.
    Checkpoints(Vec<(u64, u64)>),
    /// The workload could not run, and why.
    Unavailable(String),
}

/// Parses a child's stdout.
///
/// # Errors
///
/// A line that is neither a checkpoint nor `unavailable`, or no line at all.
pub fn parse_child_output(stdout: &str) -> Result<ChildReport, String> {
    let mut points = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(reason) = line.strip_prefix("unavailable ") {
            return Ok(ChildReport::Unavailable(reason.to_owned()));
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("checkpoint"), Some(items), Some(kib), None) => {
                let parse = |s: &str| s.parse::<u64>().map_err(|e| format!("{line:?}: {e}"));
                points.push((parse(items)?, parse(kib)?));
            }
            _ => return Err(format!("unexpected child output line {line:?}")),
        }
    }
    if points.is_empty() {
        Err("the child printed no checkpoint".to_owned())
    } else {
        Ok(ChildReport::Checkpoints(points))
    }
}

/// Re-executes this binary as a child running `workload` and parses what it reports.
///
/// # Errors
///
/// When the child cannot be started, fails, or prints something unexpected.
pub fn run_child(workload: &str, quick: bool) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child").arg(workload);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_child_output(&String::from_utf8_lossy(&out.stdout))
}

/// The coordinator child's report, run once per process and shared by both memory lines.
fn coordinator_report(quick: bool) -> &'static Result<ChildReport, String> {
    static REPORT: OnceLock<Result<ChildReport, String>> = OnceLock::new();
    REPORT.get_or_init(|| run_child(CHILD_COORDINATOR, quick))
}

const KIB_PER_MIB: f64 = 1024.0;

/// The (first, last) checkpoint in MiB, or the reason there is none.
fn peaks(cfg: &Config) -> Result<(f64, f64), String> {
    match coordinator_report(cfg.quick) {
        Ok(ChildReport::Checkpoints(p)) => {
            let first = p.first().map_or(0, |c| c.1) as f64 / KIB_PER_MIB;
            let last = p.last().map_or(0, |c| c.1) as f64 / KIB_PER_MIB;
            Ok((first, last))
        }
        Ok(ChildReport::Unavailable(why)) => Err(format!("ours: {why}")),
        Err(e) => Err(format!("ours: {e}")),
    }
}

fn scale_note(cfg: &Config) -> String {
    let [a, b] = checkpoints(cfg.quick);
    format!("checkpoints at {a} and {b} items")
}

/// Peak RSS after 10M no-op items (2M under `--quick`), versus 16 MiB.
pub fn rss_10m_items(cfg: &Config) -> Measurement {
    let base = reference(
        "rss_10m_items",
        "MiB",
        "fixed target: 16 MiB peak RSS",
        16.0,
        false,
        1.0,
    );
    match peaks(cfg) {
        Ok((_, last)) => Measurement {
            ours: Some(last),
            note: Some(scale_note(cfg)),
            ..base
        },
        Err(why) => Measurement {
            note: Some(why),
            ..base
        },
    }
}

/// Growth of peak RSS from 1M to 10M items (200k to 2M under `--quick`), versus 1 MiB.
pub fn rss_growth(cfg: &Config) -> Measurement {
    let base = reference(
        "rss_growth_1m_to_10m",
        "MiB",
        "fixed target: at most 1 MiB growth from 1M to 10M items",
        1.0,
        false,
        1.0,
    );
    // VmHWM moves in pages: no growth reads as one page, so the ratio stays a finite number.
    const PAGE_MIB: f64 = 4.0 / KIB_PER_MIB;
    match peaks(cfg) {
        Ok((first, last)) => Measurement {
            ours: Some((last - first).max(PAGE_MIB)),
            note: Some(scale_note(cfg)),
            ..base
        },
        Err(why) => Measurement {
            note: Some(why),
            ..base
        },
    }
}
