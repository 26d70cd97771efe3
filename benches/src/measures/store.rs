//! The bus store against LMDB used directly: set and get of 64-byte values with a time to
//! live; and the store across processes, for the Python comparison (`benches/python`).
//!
//! Both sides work in `/dev/shm` (where buses live by default), on fresh directories per
//! turn, with the same LMDB flags ([`crate::lmdb`]: the store's own), and store the same
//! thing per key: the value and its expiry.
//!
//! * `store_set_vs_raw`: ours is `Store::set` called by [`SET_TASKS`] tasks at once (an
//!   async service's calls: the store commits what they queued together, and answers each
//!   after its commit); the baseline is LMDB used directly the way a key-value `set` uses
//!   it: one write transaction per set, committed before the next, on one thread. The note
//!   gives ours called by one task at a time (each set waits for its own commit).
//! * `store_get_vs_raw`: ours is `Store::get` awaited in a loop on the runtime; the baseline
//!   a read transaction, a lookup, the expiry check and a copy of the value, in a loop.
//! * `compare --child store-cross` (for `benches/python/run`): two processes on one bus and
//!   store, each setting then getting its own 100 keys in turn, one call at a time; prints
//!   one JSON line with the median sets/s and gets/s per process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ephemeral_bus::retained::StoreOptions;
use ephemeral_bus::{BUS_DIR_ENV, Bus, BusOptions};
use heed::types::Bytes;
use tokio::runtime::Runtime;

use super::{Config, measured, runtime};
use crate::report::Measurement;
use crate::stats::median;
use crate::turns::alternate;

/// The child workload that prints our cross-process numbers (spawns [`CHILD_LOAD`] twice).
pub const CHILD_CROSS: &str = "store-cross";
/// One process of the cross-process workload.
pub const CHILD_LOAD: &str = "store-load";
/// Tasks calling `set` at once on our side of `store_set_vs_raw`.
pub const SET_TASKS: usize = 16;

const VALUE: [u8; 64] = [7; 64];
const TTL: Duration = Duration::from_secs(60);
const KEYS: usize = 10_000;
/// Keys of each process in the cross-process workload (as in the Python workload).
const CROSS_KEYS: usize = 100;
const CROSS_OPS_ENV: &str = "EPHEMERAL_BENCH_STORE_OPS";
const BUS_NAME: &str = "compare-store";

fn shm_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("a directory in /dev/shm")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}.key.{i}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Ours.
// ---------------------------------------------------------------------------------------------

/// Our side of `store_set_vs_raw`: `ops` sets by `tasks` tasks at once, over 10,000 keys;
/// sets per second.
///
/// # Panics
///
/// When the bus or the store cannot be opened, or a set fails: there is nothing to measure.
pub fn ours_set(rt: &Runtime, ops: usize, tasks: usize) -> f64 {
    let dir = shm_dir();
    rt.block_on(async {
        let bus = Bus::open_with(BUS_NAME, BusOptions::default().dir(dir.path()))
            .await
            .expect("open the bus");
        let store = bus
            .store("bench", StoreOptions::default())
            .await
            .expect("open the store");
        let keys = std::sync::Arc::new(keys("set", KEYS));
        let started = Instant::now();
        let workers: Vec<_> = (0..tasks)
            .map(|t| {
                let (store, keys) = (store.clone(), std::sync::Arc::clone(&keys));
                tokio::spawn(async move {
                    for i in (t..ops).step_by(tasks) {
                        store.set(&keys[i % KEYS], VALUE, TTL).await.expect("a set");
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("a set task");
        }
        ops as f64 / started.elapsed().as_secs_f64()
    })
}

/// Our side of `store_get_vs_raw`: `ops` gets of present keys, one after the other; gets
/// per second.
///
/// # Panics
///
/// When the bus or the store cannot be opened, or a value is missing.
pub fn ours_get(rt: &Runtime, ops: usize) -> f64 {
    let dir = shm_dir();
    rt.block_on(async {
        let bus = Bus::open_with(BUS_NAME, BusOptions::default().dir(dir.path()))
            .await
            .expect("open the bus");
        let store = bus
            .store("bench", StoreOptions::default())
            .await
            .expect("open the store");
        let keys = keys("get", KEYS);
        let sets: Vec<_> = keys.iter().map(|k| store.set(k, VALUE, TTL)).collect();
        for set in futures::future::join_all(sets).await {
            set.expect("a set");
        }
        let started = Instant::now();
        for i in 0..ops {
            let value = store.get(&keys[i % KEYS]).await.expect("a get");
            assert!(
                value.is_some_and(|v| v.len() == VALUE.len()),
                "a value is missing"
            );
        }
        ops as f64 / started.elapsed().as_secs_f64()
    })
}

// ---------------------------------------------------------------------------------------------
// The baseline: LMDB used directly.
// ---------------------------------------------------------------------------------------------

struct Raw {
    env: heed::Env,
    db: heed::Database<Bytes, Bytes>,
    _dir: tempfile::TempDir,
}

impl Raw {
    fn new() -> Self {
        let dir = shm_dir();
        let env = crate::lmdb::open(dir.path());
        let mut txn = env.write_txn().expect("a write transaction");
        let db = env
            .create_database(&mut txn, Some("kv"))
            .expect("a database");
        txn.commit().expect("commit");
        Self { env, db, _dir: dir }
    }

    fn set(&self, key: &str, value: &[u8]) {
        let mut record = Vec::with_capacity(8 + value.len());
        record.extend_from_slice(&(now_ms() + TTL.as_millis() as u64).to_le_bytes());
        record.extend_from_slice(value);
        let mut txn = self.env.write_txn().expect("a write transaction");
        self.db
            .put(&mut txn, key.as_bytes(), &record)
            .expect("a put");
        txn.commit().expect("commit");
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let txn = self.env.read_txn().expect("a read transaction");
        let record = self.db.get(&txn, key.as_bytes()).expect("a get")?;
        let expires = u64::from_le_bytes(record.get(..8)?.try_into().ok()?);
        (expires > now_ms()).then(|| record[8..].to_vec())
    }
}

/// The baseline of `store_set_vs_raw`: `ops` sets, one transaction each; sets per second.
#[must_use]
pub fn raw_set(ops: usize) -> f64 {
    let raw = Raw::new();
    let keys = keys("set", KEYS);
    let started = Instant::now();
    for i in 0..ops {
        raw.set(&keys[i % KEYS], &VALUE);
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

/// The baseline of `store_get_vs_raw`: `ops` gets; gets per second.
///
/// # Panics
///
/// When a value is missing.
#[must_use]
pub fn raw_get(ops: usize) -> f64 {
    let raw = Raw::new();
    let keys = keys("get", KEYS);
    for k in &keys {
        raw.set(k, &VALUE);
    }
    let started = Instant::now();
    for i in 0..ops {
        let value = raw.get(&keys[i % KEYS]);
        assert!(
            value.is_some_and(|v| v.len() == VALUE.len()),
            "a value is missing"
        );
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// The measurements.
// ---------------------------------------------------------------------------------------------

/// `store_set_vs_raw`.
pub fn set_vs_raw(cfg: &Config) -> Measurement {
    let rt = runtime();
    let ops = cfg.pick(100_000, 20_000);
    let turns = alternate(
        cfg.turns(),
        || Some(ours_set(&rt, ops, SET_TASKS)),
        || raw_set(ops),
    );
    let sequential: Vec<f64> = (0..3).map(|_| ours_set(&rt, ops / 4, 1)).collect();
    let mut m = measured(
        "store_set_vs_raw",
        "ops/s",
        "LMDB used directly with the store's flags: one write transaction per set of a 64 B \
         value with its expiry, one thread (ours: Store::set from 16 tasks at once)",
        &turns,
        true,
        0.8,
    );
    m.note = Some(format!(
        "ours called by one task at a time (each set waits for its own commit): {:.0} sets/s",
        median(&sequential).unwrap_or(f64::NAN)
    ));
    m
}

/// `store_get_vs_raw`.
pub fn get_vs_raw(cfg: &Config) -> Measurement {
    let rt = runtime();
    let ops = cfg.pick(1_000_000, 200_000);
    let turns = alternate(cfg.turns(), || Some(ours_get(&rt, ops)), || raw_get(ops));
    measured(
        "store_get_vs_raw",
        "ops/s",
        "LMDB used directly with the store's flags: a read transaction, a lookup, the expiry \
         check and a copy of the 64 B value, one thread",
        &turns,
        true,
        0.8,
    )
}

// ---------------------------------------------------------------------------------------------
// Across processes (for benches/python).
// ---------------------------------------------------------------------------------------------

/// Whether `workload` is one of this module's child workloads.
#[must_use]
pub fn is_child(workload: &str) -> bool {
    workload == CHILD_CROSS || workload == CHILD_LOAD
}

/// Runs the child `workload`; returns the exit code.
pub fn child_main(workload: &str, quick: bool) -> i32 {
    let result = if workload == CHILD_CROSS {
        cross(quick)
    } else {
        load()
    };
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("{workload}: {e}");
            1
        }
    }
}

/// Two processes of [`CHILD_LOAD`] at once on one bus, three turns; the medians.
fn cross(quick: bool) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let ops: usize = if quick { 20_000 } else { 100_000 };
    let (mut sets, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let dir = shm_dir();
        let kids: Vec<_> = (0..2)
            .map(|me| {
                Command::new(&exe)
                    .args(["--child", CHILD_LOAD])
                    .env(BUS_DIR_ENV, dir.path())
                    .env(CROSS_OPS_ENV, format!("{ops} {me}"))
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        for kid in kids {
            let out = kid.wait_with_output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err("a store-load child failed".into());
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut n = text.split_whitespace().map(str::parse::<f64>);
            sets.push(n.next().and_then(Result::ok).ok_or("no set rate")?);
            gets.push(n.next().and_then(Result::ok).ok_or("no get rate")?);
        }
    }
    Ok(serde_json::json!({
        "workload": "store-cross",
        "processes": 2,
        "keys_per_process": CROSS_KEYS,
        "value_bytes": VALUE.len(),
        "set_per_s": median(&sets),
        "get_per_s": median(&gets),
    })
    .to_string())
}

/// One process: `ops` sets over its own 100 keys, then `ops` gets; prints
/// "<sets/s> <gets/s>".
fn load() -> Result<String, String> {
    let spec = std::env::var(CROSS_OPS_ENV).map_err(|_| format!("set {CROSS_OPS_ENV}"))?;
    let mut parts = spec.split_whitespace();
    let ops: usize = parts.next().and_then(|n| n.parse().ok()).ok_or("bad ops")?;
    let me = parts.next().unwrap_or("0").to_owned();
    runtime().block_on(async move {
        let bus = Bus::open(BUS_NAME).await.map_err(|e| e.to_string())?;
        let store = bus
            .store("bench", StoreOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let keys = keys(&format!("p{me}"), CROSS_KEYS);
        let started = Instant::now();
        for i in 0..ops {
            store
                .set(&keys[i % CROSS_KEYS], VALUE, TTL)
                .await
                .map_err(|e| e.to_string())?;
        }
        let set = ops as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        for i in 0..ops {
            if store
                .get(&keys[i % CROSS_KEYS])
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err("a value is missing".to_owned());
            }
        }
        let get = ops as f64 / started.elapsed().as_secs_f64();
        Ok(format!("{set:.1} {get:.1}"))
    })
}
