//! Criterion benches of the signal sink: raise, has_signal and subscription fan-out.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ephemeral::{Buffer, SignalSink, SinkOptions};

fn sink(capacity: usize) -> SignalSink {
    SignalSink::new(
        SinkOptions::default()
            .capacity(capacity)
            .max_age(Duration::from_secs(3600)),
    )
    .expect("valid options")
}

fn names() -> Vec<String> {
    (0..100).map(|i| format!("metric.n{i}")).collect()
}

fn raise(c: &mut Criterion) {
    let mut g = c.benchmark_group("raise");
    g.throughput(Throughput::Elements(1));
    let names = names();
    let s = sink(1000);
    let mut i = 0;
    g.bench_function("raise_100_names_cap1000", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            black_box(s.raise(black_box(&names[i])))
        })
    });
    let s = sink(1000);
    g.bench_function("raise_same_name_cap1000", |b| {
        b.iter(|| black_box(s.raise(black_box("metric.n0"))))
    });
    let s = sink(1000);
    let _subs: Vec<_> = (0..4).map(|_| s.subscribe("other.*")).collect();
    g.bench_function("raise_with_4_unmatched_subscriptions", |b| {
        b.iter(|| black_box(s.raise(black_box("metric.n0"))))
    });
    // The share of a raise spent checking the name.
    g.bench_function("validate_name_only", |b| {
        b.iter(|| black_box(ephemeral::validate_name(black_box("metric.n0"))))
    });
    g.finish();
}

fn has_signal(c: &mut Criterion) {
    let mut g = c.benchmark_group("has_signal");
    let names = names();
    for live in [1_000usize, 100_000] {
        let s = sink(live);
        for i in 0..live {
            let _ = s.raise(&names[i % names.len()]);
        }
        g.bench_with_input(BenchmarkId::new("error_star_no_match", live), &s, |b, s| {
            b.iter(|| black_box(s.has_signal(black_box("error.*"))))
        });
        g.bench_with_input(BenchmarkId::new("exact_hit", live), &s, |b, s| {
            b.iter(|| black_box(s.has_signal(black_box("metric.n7"))))
        });
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    const BATCH: u64 = 256;
    g.throughput(Throughput::Elements(BATCH));
    for subscribers in [1usize, 4] {
        let s = sink(1000);
        let mut subs: Vec<_> = (0..subscribers)
            .map(|_| s.subscribe_with("bench.*", Buffer::bounded(1024).expect("not zero")))
            .collect();
        // One batch raised, then every subscriber drains it: delivery without lag.
        g.bench_function(BenchmarkId::new("raise_then_drain_256", subscribers), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let _ = s.raise("bench.fanout");
                }
                rt.block_on(async {
                    for sub in &mut subs {
                        for _ in 0..BATCH {
                            black_box(sub.recv().await);
                        }
                    }
                });
            })
        });
    }
    g.finish();
}

criterion_group!(benches, raise, has_signal, fanout);
criterion_main!(benches);
