//! Scratch measurement of the bus between two processes (not a pass/fail test):
//! throughput of 64-byte messages, one publisher process -> one subscriber process, and
//! one-way latency paced at 10,000 msg/s.
//!
//! `cargo run --release -p ephemeral-bus --example throughput [messages]`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ephemeral_bus::{Buffer, Bus, BusOptions, Overflow};
use futures::StreamExt;

const ROLE: &str = "EPHEMERAL_BUS_BENCH_CHILD";

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(ROLE) {
        rt.block_on(child(&role));
        return;
    }
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let tmp = std::env::temp_dir().join(format!("ephemeral-bench-{}", std::process::id()));
    rt.block_on(async {
        // Throughput.
        let mut kid = spawn("throughput", &tmp, n);
        let bus = Bus::open_with("bench", BusOptions::default().dir(&tmp))
            .await
            .unwrap();
        let payload = [7u8; 64];
        let start = Instant::now();
        for _ in 0..n {
            bus.publish("bench.data", payload).await.unwrap();
        }
        let published = start.elapsed();
        let mut line = String::new();
        kid.1.read_line(&mut line).unwrap();
        let received = start.elapsed();
        kid.0.wait().unwrap();
        println!(
            "{{\"name\":\"bus_throughput\",\"unit\":\"msg/s\",\"ours\":{:.0},\"publish_only\":{:.0},\"messages\":{n},\"child\":\"{}\"}}",
            n as f64 / received.as_secs_f64(),
            n as f64 / published.as_secs_f64(),
            line.trim()
        );

        // Latency, paced at 10k msg/s.
        let count = 20_000u64;
        let mut kid = spawn("latency", &tmp, count);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut tick = tokio::time::interval(Duration::from_micros(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..count {
            tick.tick().await;
            let mut payload = [0u8; 64];
            payload[..8].copy_from_slice(&now_nanos().to_le_bytes());
            bus.publish("bench.latency", payload).await.unwrap();
        }
        let mut line = String::new();
        kid.1.read_line(&mut line).unwrap();
        kid.0.wait().unwrap();
        println!("{}", line.trim());
        drop(bus);
    });
    // The bus removed its own directory; remove the parent we made for it.
    let _ = std::fs::remove_dir(&tmp);
}

fn spawn(
    role: &str,
    dir: &std::path::Path,
    n: u64,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("EPHEMERAL_BUS_DIR", dir)
        .env("COUNT", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (child, out)
}

async fn child(role: &str) {
    let n: u64 = std::env::var("COUNT").unwrap().parse().unwrap();
    let bus = Bus::open("bench").await.unwrap();
    let mut sub = bus
        .subscribe_with("bench.*", Buffer::bounded(65_536).unwrap(), Overflow::Wait)
        .await
        .unwrap();
    println!("ready");
    match role {
        "throughput" => {
            let mut first = None;
            let mut lagged = 0;
            let mut got = 0;
            while got < n {
                match sub.next().await.unwrap() {
                    Ok(_) => got += 1,
                    Err(l) => lagged += l.count(),
                }
                first.get_or_insert_with(Instant::now);
            }
            let secs = first.unwrap().elapsed().as_secs_f64();
            println!("received {got} lagged {lagged} in {secs:.3}s after the first");
        }
        _ => {
            let mut lat = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let m = sub.next().await.unwrap().unwrap();
                let sent = u64::from_le_bytes(m.payload()[..8].try_into().unwrap());
                lat.push(now_nanos().saturating_sub(sent));
            }
            lat.sort_unstable();
            let p =
                |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] as f64 / 1000.0;
            println!(
                "{{\"name\":\"bus_latency_p99\",\"unit\":\"us\",\"ours\":{:.1},\"p50\":{:.1},\"p999\":{:.1},\"max\":{:.1},\"messages\":{n}}}",
                p(0.99),
                p(0.5),
                p(0.999),
                p(1.0)
            );
        }
    }
}
