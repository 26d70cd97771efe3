//! Scratch measurement of `ephemeral-nats` against plain async-nats (not a pass/fail test):
//! throughput of 64-byte messages from one connection to another through a local server,
//! and one-way latency paced at 5,000 messages/s, each next to the same thing done with the
//! plain client in the same run.
//!
//! `cargo run --release -p ephemeral-nats --features testing --example nats_throughput [messages]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use ephemeral::Buffer;
use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use futures::StreamExt;

const PAYLOAD: [u8; 64] = [7; 64];

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = NatsServer::start().await;
        let url = server.url();
        for round in 0..2 {
            let ours = ours_throughput(&url, n).await;
            let plain = plain_throughput(&url, n).await;
            println!(
                "round {round}: throughput ours {:.0} msg/s, plain async-nats {:.0} msg/s, ratio {:.2}",
                ours,
                plain,
                ours / plain
            );
        }
        let (p50, p99) = ours_latency(&url, 5_000).await;
        let (bp50, bp99) = plain_latency(&url, 5_000).await;
        println!(
            "latency at 5,000 msg/s: ours p50 {p50:?} p99 {p99:?}; plain p50 {bp50:?} p99 {bp99:?}"
        );
    });
}

async fn ours_throughput(url: &str, n: usize) -> f64 {
    let publisher = Nats::connect(url).await.unwrap();
    let subscriber = Nats::connect(url).await.unwrap();
    let mut sub = subscriber
        .subscribe_with("bench.t", Buffer::Unbounded)
        .await
        .unwrap();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match sub.next().await {
                Some(Ok(_)) => got += 1,
                Some(Err(lag)) => got += lag.count() as usize,
                None => break,
            }
        }
    });
    for _ in 0..n {
        publisher.publish("bench.t", &PAYLOAD).await.unwrap();
    }
    reader.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

async fn plain_throughput(url: &str, n: usize) -> f64 {
    let publisher = async_nats::connect(url).await.unwrap();
    let subscriber = async_nats::connect(url).await.unwrap();
    let mut sub = subscriber.subscribe("plain.t").await.unwrap();
    subscriber.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if sub.next().await.is_none() {
                break;
            }
            got += 1;
        }
    });
    let payload = Bytes::from_static(&PAYLOAD);
    for _ in 0..n {
        publisher.publish("plain.t", payload.clone()).await.unwrap();
    }
    reader.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

async fn ours_latency(url: &str, n: usize) -> (Duration, Duration) {
    let publisher = Nats::connect(url).await.unwrap();
    let subscriber = Nats::connect(url).await.unwrap();
    let mut sub = subscriber.subscribe("bench.l").await.unwrap();
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let Some(Ok(m)) = sub.next().await else {
                continue;
            };
            let sent: u64 = m.payload_str().unwrap().parse().unwrap();
            lat.push(origin.elapsed() - Duration::from_nanos(sent));
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_micros(200));
    for _ in 0..n {
        tick.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        publisher
            .publish("bench.l", sent.to_string())
            .await
            .unwrap();
    }
    percentiles(reader.await.unwrap())
}

async fn plain_latency(url: &str, n: usize) -> (Duration, Duration) {
    let publisher = async_nats::connect(url).await.unwrap();
    let subscriber = async_nats::connect(url).await.unwrap();
    let mut sub = subscriber.subscribe("plain.l").await.unwrap();
    subscriber.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let Some(m) = sub.next().await else { break };
            let sent: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
            lat.push(origin.elapsed() - Duration::from_nanos(sent));
        }
        lat
    });
    let mut tick = tokio::time::interval(Duration::from_micros(200));
    for _ in 0..n {
        tick.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        publisher
            .publish("plain.l", Bytes::from(sent.to_string()))
            .await
            .unwrap();
    }
    percentiles(reader.await.unwrap())
}
