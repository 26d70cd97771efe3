//! The benchmark that chose the bus store's database: SQLite (WAL) against LMDB, each used
//! directly, for set and get of 64-byte values with a time to live, from 1, 2 and 4
//! processes at once on one database.
//!
//! ```text
//! cargo run --release -p ephemeral-benches --bin store_engines
//! ```
//!
//! Each turn makes a fresh directory under `/dev/shm` (the bus's default parent), creates
//! the database, then starts N child processes (this binary again, `--child`), each of which
//! sets 20,000 keys of its own (value 64 bytes, expiry stored with it) one transaction each,
//! then gets them all back, checking the expiry on read; each prints its µs per set and per
//! get. Three turns per engine and process count; the medians of every child's numbers are
//! printed. Durability is the same on both: no flush to disk on commit, and a process
//! killed mid-write leaves the database consistent (SQLite `journal_mode=WAL`,
//! `synchronous=NORMAL`; LMDB `NO_META_SYNC`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heed::types::Bytes;

const VALUE: [u8; 64] = [7; 64];
const KEYS: usize = 20_000;
const TTL_MS: u64 = 60_000;
const TURNS: usize = 3;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

trait Engine {
    fn set(&mut self, key: &str, value: &[u8], expires: u64);
    fn get(&mut self, key: &str) -> Option<Vec<u8>>;
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn open(dir: &Path) -> Self {
        let c = rusqlite::Connection::open(dir.join("store.sqlite3")).expect("open sqlite");
        c.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        c.pragma_update(None, "journal_mode", "WAL").expect("wal");
        c.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB NOT NULL, exp INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .expect("create table");
        Self(c)
    }
}

impl Engine for Sqlite {
    fn set(&mut self, key: &str, value: &[u8], expires: u64) {
        let mut s = self
            .0
            .prepare_cached("INSERT OR REPLACE INTO kv(k, v, exp) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        s.execute(rusqlite::params![key, value, expires as i64])
            .expect("insert");
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let mut s = self
            .0
            .prepare_cached("SELECT v FROM kv WHERE k = ?1 AND exp > ?2")
            .expect("prepare");
        let mut rows = s
            .query(rusqlite::params![key, now_ms() as i64])
            .expect("query");
        rows.next()
            .expect("row")
            .map(|row| row.get::<_, Vec<u8>>(0).expect("value"))
    }
}

struct Lmdb {
    env: heed::Env,
    db: heed::Database<Bytes, Bytes>,
}

impl Lmdb {
    fn open(dir: &Path) -> Self {
        let env = ephemeral_benches::lmdb::open(dir);
        let mut txn = env.write_txn().expect("write txn");
        let db = env
            .create_database(&mut txn, Some("kv"))
            .expect("create database");
        txn.commit().expect("commit");
        Self { env, db }
    }
}

impl Engine for Lmdb {
    fn set(&mut self, key: &str, value: &[u8], expires: u64) {
        let mut record = Vec::with_capacity(8 + value.len());
        record.extend_from_slice(&expires.to_le_bytes());
        record.extend_from_slice(value);
        let mut txn = self.env.write_txn().expect("write txn");
        self.db.put(&mut txn, key.as_bytes(), &record).expect("put");
        txn.commit().expect("commit");
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let txn = self.env.read_txn().expect("read txn");
        let record = self.db.get(&txn, key.as_bytes()).expect("get")?;
        let expires = u64::from_le_bytes(record.get(..8)?.try_into().ok()?);
        (expires > now_ms()).then(|| record[8..].to_vec())
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    match engine {
        "sqlite" => Box::new(Sqlite::open(dir)),
        _ => Box::new(Lmdb::open(dir)),
    }
}

/// A child: sets its keys, gets them back; prints "µs/set µs/get".
fn child(engine: &str, dir: &Path, me: usize) {
    let mut db = open(engine, dir);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("p{me}.key.{i}")).collect();
    let started = Instant::now();
    for key in &keys {
        db.set(key, &VALUE, now_ms() + TTL_MS);
    }
    let set = started.elapsed().as_secs_f64() * 1e6 / KEYS as f64;
    let started = Instant::now();
    let found = keys.iter().filter(|k| db.get(k).is_some()).count();
    let get = started.elapsed().as_secs_f64() * 1e6 / KEYS as f64;
    assert_eq!(found, KEYS, "every value set must be read back");
    println!("{set:.3} {get:.3}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            &args[2],
            Path::new(&args[3]),
            args[4].parse().expect("child index"),
        );
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let parent = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    println!(
        "engine  processes  µs/set (median)  µs/get (median)   [per process, {KEYS} keys, {TURNS} turns]"
    );
    for processes in [1, 2, 4] {
        for engine in ["sqlite", "lmdb"] {
            let (mut sets, mut gets) = (Vec::new(), Vec::new());
            for _ in 0..TURNS {
                let dir = tempfile::Builder::new()
                    .prefix("store-engines-")
                    .tempdir_in(&parent)
                    .expect("temporary directory");
                drop(open(engine, dir.path()));
                let children: Vec<_> = (0..processes)
                    .map(|me| {
                        Command::new(&exe)
                            .args(["--child", engine])
                            .arg(dir.path())
                            .arg(me.to_string())
                            .stdout(Stdio::piped())
                            .spawn()
                            .expect("spawn child")
                    })
                    .collect();
                for c in children {
                    let out = c.wait_with_output().expect("child output");
                    assert!(out.status.success(), "a child failed");
                    let text = String::from_utf8_lossy(&out.stdout);
                    let mut numbers = text
                        .split_whitespace()
                        .map(|n| n.parse::<f64>().expect("number"));
                    sets.push(numbers.next().expect("set"));
                    gets.push(numbers.next().expect("get"));
                }
            }
            println!(
                "{engine:<7} {processes:>9}  {:>15.2}  {:>15.2}",
                median(sets),
                median(gets)
            );
        }
    }
}
