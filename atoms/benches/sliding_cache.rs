//! Criterion benches of the sliding cache: a miss into a full cache (which must evict) and a
//! hit, at several sizes. A miss's cost should not grow with the number of entries.
//!
//! `cargo bench -p ephemeral-atoms --bench sliding_cache`

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ephemeral_atoms::cache::{CacheOptions, SlidingCache};

/// Gets per measured iteration, so the runtime's `block_on` is amortised.
const BATCH: u64 = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

fn full_cache(
    rt: &tokio::runtime::Runtime,
    size: u64,
    options: CacheOptions,
) -> SlidingCache<u64, u64, String> {
    let cache = rt.block_on(async {
        let cache = SlidingCache::new(
            options.max_size(usize::try_from(size).expect("size fits")),
            |key: u64| async move { Ok(key) },
        )
        .expect("valid options");
        for key in 0..size {
            cache.get(key).await.expect("no error");
        }
        cache
    });
    assert_eq!(cache.len() as u64, size);
    cache
}

fn miss_into_full(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_miss_full");
    g.throughput(Throughput::Elements(BATCH));
    let rt = runtime();
    for size in [1_000u64, 10_000, 100_000] {
        for (label, options) in [
            ("lru", CacheOptions::default()),
            (
                "sliding_absolute",
                CacheOptions::default()
                    .sliding(Duration::from_secs(3600))
                    .absolute(Duration::from_secs(7200)),
            ),
        ] {
            let cache = full_cache(&rt, size, options);
            let mut next = size;
            g.bench_with_input(BenchmarkId::new(label, size), &size, |b, _| {
                b.iter(|| {
                    rt.block_on(async {
                        for _ in 0..BATCH {
                            next += 1;
                            black_box(cache.get(black_box(next)).await.expect("no error"));
                        }
                    })
                })
            });
        }
    }
    g.finish();
}

fn hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(BATCH));
    let rt = runtime();
    for size in [1_000u64, 100_000] {
        let cache = full_cache(&rt, size, CacheOptions::default());
        let mut key = 0;
        g.bench_with_input(BenchmarkId::new("lru", size), &size, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    for _ in 0..BATCH {
                        key = (key + 7919) % size;
                        black_box(cache.get(black_box(key)).await.expect("no error"));
                    }
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = miss_into_full, hit
}
criterion_main!(benches);
