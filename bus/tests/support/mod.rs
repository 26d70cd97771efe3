//! Shared helpers for the bus tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use ephemeral_bus::{Bus, BusOptions};

/// Options rooted in `dir`, with short waits so stalled-peer tests finish quickly.
pub fn options(dir: &Path) -> BusOptions {
    BusOptions::default()
        .dir(dir)
        .send_timeout(Duration::from_millis(200))
        .handshake_timeout(Duration::from_secs(2))
}

pub async fn open(dir: &Path, name: &str) -> Bus {
    Bus::open_with(name, options(dir)).await.expect("open bus")
}

/// Polls `check` every few milliseconds until it holds or `limit` passes (a generous bound
/// for things that happen in other processes or the kernel).
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    check()
}

/// Files left in a directory (empty when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
