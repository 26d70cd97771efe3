//! Sliding cache: single flight, expiry never violated, size bound, eviction reasons, signals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::cache::{
    CacheConfigError, CacheError, CacheOptions, EvictionCallbackFailure, EvictionReason,
    SlidingCache,
};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Evictions = Arc<Mutex<Vec<(u32, EvictionReason)>>>;

/// A cache of `key * 10` that counts factory calls and records evictions.
fn counting(
    options: CacheOptions,
) -> (SlidingCache<u32, u32, String>, Arc<AtomicUsize>, Evictions) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mut cache = SlidingCache::new(options, move |key: u32| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(ms(5)).await;
            Ok(key * 10)
        }
    })
    .unwrap();
    let evictions: Evictions = Arc::default();
    let e = evictions.clone();
    assert!(cache.on_evict(move |k, _, reason| e.lock().unwrap().push((*k, reason))));
    (cache, calls, evictions)
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_requests_for_one_key_call_the_factory_once() {
    let (cache, calls, _) = counting(CacheOptions::default());
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move { cache.get(7).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 70);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.coalesced, stats.len), (1, 99, 1));
    assert_eq!(cache.get(7).await.unwrap(), 70);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().hits, 1);
}

#[tokio::test(start_paused = true)]
async fn no_expired_value_is_ever_returned() {
    const SLIDING: Duration = Duration::from_millis(100);
    const ABSOLUTE: Duration = Duration::from_millis(250);
    // The value is the instant it was computed.
    let cache = SlidingCache::new(
        CacheOptions::default()
            .sliding(SLIDING)
            .absolute(ABSOLUTE)
            .max_size(4),
        |_key: u32| async { Ok::<Instant, String>(Instant::now()) },
    )
    .unwrap();
    let mut last_read: [Option<Instant>; 6] = [None; 6];
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..5_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Steps of 0..=120 ms, often right at the expiry boundaries.
        let step = [0, 1, 50, 99, 100, 101, 120][(rng % 7) as usize];
        tokio::time::advance(ms(step)).await;
        let key = ((rng >> 8) % 6) as u32;
        let now = Instant::now();
        let computed = if rng & 1 == 0 {
            cache.get(key).await.unwrap()
        } else {
            match cache.get_if_present(&key) {
                Some(v) => v,
                None => continue,
            }
        };
        let age = now - computed;
        assert!(age < ABSOLUTE, "returned a value {age:?} old");
        if let Some(prev) = last_read[key as usize]
            && now - prev >= SLIDING
        {
            assert_eq!(computed, now, "returned a value idle for {:?}", now - prev);
        }
        last_read[key as usize] = Some(now);
    }
}

#[tokio::test(start_paused = true)]
async fn reads_slide_the_expiry_until_the_absolute_one() {
    let (cache, calls, evictions) =
        counting(CacheOptions::default().sliding(ms(100)).absolute(ms(1000)));
    cache.get(1).await.unwrap(); // computed at t = 5 ms
    for _ in 0..9 {
        tokio::time::advance(ms(90)).await;
        assert_eq!(cache.get_if_present(&1), Some(10));
    }
    // t = 815: still within 1 s of computing.
    tokio::time::advance(ms(90)).await; // t = 905
    assert_eq!(cache.get_if_present(&1), Some(10));
    tokio::time::advance(ms(100)).await; // t = 1005: past the absolute expiry
    assert_eq!(cache.get_if_present(&1), None);
    assert_eq!(*evictions.lock().unwrap(), [(1, EvictionReason::Expired)]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Idle past the sliding expiry.
    cache.get(1).await.unwrap();
    tokio::time::advance(ms(100)).await;
    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(cache.stats().expired, 2);
    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_full_cache_evicts_the_least_recently_read() {
    let sink = SignalSink::default();
    let (cache, _, evictions) = counting(
        CacheOptions::default()
            .max_size(3)
            .signals(sink.clone())
            .name("prices"),
    );
    for key in 1..=3 {
        cache.get(key).await.unwrap();
    }
    tokio::time::advance(ms(1)).await;
    cache.get(1).await.unwrap(); // 2 is now the least recently read
    cache.get(4).await.unwrap();
    assert_eq!(*evictions.lock().unwrap(), [(2, EvictionReason::Size)]);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.stats().evicted_size, 1);
    let evict = sink.latest("cache.evict").unwrap();
    assert_eq!(evict.header("reason").unwrap().to_string(), "size");
    assert_eq!(evict.key(), Some("prices"));
    assert_eq!(sink.count("cache.miss"), 4);
    assert_eq!(sink.count("cache.hit"), 1);
}

/// Concurrent misses for more keys than there is room for: each computation in flight keeps
/// its place, and each value stored into a full cache evicts as a miss would, so no more than
/// `max_size` values are ever stored.
#[tokio::test(start_paused = true)]
async fn computations_completing_into_a_full_cache_evict_by_size() {
    let sink = SignalSink::default();
    let mut cache = SlidingCache::new(
        CacheOptions::default().max_size(1).signals(sink.clone()),
        |key: u32| async move {
            tokio::time::sleep(ms(10 * u64::from(key))).await;
            Ok::<u32, String>(key * 10)
        },
    )
    .unwrap();
    let evictions: Evictions = Arc::default();
    let e = evictions.clone();
    assert!(cache.on_evict(move |k, _, reason| e.lock().unwrap().push((*k, reason))));
    let tasks: Vec<_> = (1..=3)
        .map(|key| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(key).await })
        })
        .collect();
    tokio::time::sleep(ms(15)).await; // 1 is stored, 2 and 3 still computing
    assert_eq!(cache.get_if_present(&1), Some(10));
    assert_eq!(cache.len(), 3, "computations in flight are never evicted");
    tokio::time::sleep(ms(10)).await; // t = 25 ms: 2 is stored into a full cache
    assert_eq!(cache.get_if_present(&1), None, "1 made room for 2");
    assert_eq!(cache.get_if_present(&2), Some(20));
    for (key, task) in (1..=3).zip(tasks) {
        assert_eq!(task.await.unwrap().unwrap(), key * 10);
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.get_if_present(&3), Some(30));
    assert_eq!(
        *evictions.lock().unwrap(),
        [(1, EvictionReason::Size), (2, EvictionReason::Size)]
    );
    assert_eq!(cache.stats().evicted_size, 2);
    assert_eq!(sink.count("cache.evict"), 2);
}

/// An insert that takes over a computation's place in a full cache evicts by size too.
#[tokio::test(start_paused = true)]
async fn an_insert_over_a_computation_into_a_full_cache_evicts_by_size() {
    let cache = SlidingCache::new(CacheOptions::default().max_size(1), |key: u32| async move {
        tokio::time::sleep(ms(10 * u64::from(key))).await;
        Ok::<u32, String>(key * 10)
    })
    .unwrap();
    let (one, two) = (cache.clone(), cache.clone());
    let first = tokio::spawn(async move { one.get(1).await });
    let second = tokio::spawn(async move { two.get(2).await });
    tokio::time::sleep(ms(15)).await; // 1 is stored, 2 still computing
    cache.insert(2, 222);
    assert_eq!(
        cache.get_if_present(&1),
        None,
        "1 made room for the inserted 2"
    );
    assert_eq!(cache.get_if_present(&2), Some(222));
    assert_eq!(cache.stats().evicted_size, 1);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(
        second.await.unwrap().unwrap(),
        20,
        "its own request still gets its value"
    );
    assert_eq!(
        cache.get_if_present(&2),
        Some(222),
        "the insert wins over the computation"
    );
    assert_eq!(cache.len(), 1);
}

/// A computation that fails after an insert took its key over is counted in
/// `load_failures`: its requests got the error. It went uncounted (0), so a `get` that
/// returned an error showed in no counter.
#[tokio::test(start_paused = true)]
async fn a_failure_after_an_insert_took_the_key_over_is_counted() {
    let cache = SlidingCache::new(CacheOptions::default(), |key: u32| async move {
        tokio::time::sleep(ms(10)).await;
        Err::<u32, String>(format!("{key} is down"))
    })
    .unwrap();
    let reader = cache.clone();
    let request = tokio::spawn(async move { reader.get(1).await });
    tokio::time::sleep(ms(5)).await;
    cache.insert(1, 100);
    assert!(matches!(
        request.await.unwrap(),
        Err(CacheError::Factory(e)) if *e == "1 is down"
    ));
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.load_failures), (1, 1));
    assert_eq!(cache.get_if_present(&1), Some(100), "the insert stays");
}

/// A read that joins a computation already running raises no signal: `cache.hit` and
/// `cache.miss` count exactly what `stats().hits` and `stats().misses` count.
#[tokio::test(start_paused = true)]
async fn a_read_joining_a_computation_raises_neither_hit_nor_miss() {
    let sink = SignalSink::default();
    let (cache, calls, _) = counting(CacheOptions::default().signals(sink.clone()));
    let (a, b, c) = tokio::join!(cache.get(1), cache.get(1), cache.get(1));
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (10, 10, 10));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.coalesced), (0, 1, 2));
    assert_eq!((sink.count("cache.hit"), sink.count("cache.miss")), (0, 1));
    cache.get(1).await.unwrap();
    assert_eq!((sink.count("cache.hit"), sink.count("cache.miss")), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn expired_entries_go_before_live_ones_when_full() {
    let (cache, _, evictions) = counting(CacheOptions::default().max_size(2).sliding(ms(50)));
    cache.get(1).await.unwrap();
    tokio::time::advance(ms(40)).await;
    cache.get(2).await.unwrap();
    tokio::time::advance(ms(20)).await; // 1 expired, 2 live
    cache.get(3).await.unwrap();
    assert_eq!(*evictions.lock().unwrap(), [(1, EvictionReason::Expired)]);
    assert_eq!(cache.get_if_present(&2), Some(20));
}

#[tokio::test(start_paused = true)]
async fn explicit_removals_are_reported_as_explicit() {
    let (cache, _, evictions) = counting(CacheOptions::default());
    cache.get(1).await.unwrap();
    cache.get(2).await.unwrap();
    cache.insert(1, 111);
    assert_eq!(cache.get_if_present(&1), Some(111));
    assert!(cache.invalidate(&2));
    assert!(!cache.invalidate(&2));
    cache.insert(3, 30);
    assert_eq!(cache.clear(), 2);
    let mut seen = evictions.lock().unwrap().clone();
    seen.sort_by_key(|(k, _)| *k);
    assert_eq!(
        seen,
        [
            (1, EvictionReason::Explicit),
            (1, EvictionReason::Explicit),
            (2, EvictionReason::Explicit),
            (3, EvictionReason::Explicit),
        ]
    );
    assert_eq!(cache.stats().evicted_explicit, 4);
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_not_cached_and_reach_every_waiter() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let cache = SlidingCache::new(CacheOptions::default(), move |key: u32| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(ms(5)).await;
            match (key, n) {
                (1, 0) => Err("backend down".to_owned()),
                (2, _) if n < 3 => panic!("bad key {key}"),
                _ => Ok(key),
            }
        }
    })
    .unwrap();
    let (a, b) = tokio::join!(cache.get(1), cache.get(1));
    for r in [a, b] {
        match r {
            Err(CacheError::Factory(e)) => assert_eq!(*e, "backend down"),
            other => panic!("expected the factory error, got {other:?}"),
        }
    }
    assert_eq!(cache.get(1).await.unwrap(), 1, "the error was not cached");
    let err = cache.get(2).await.unwrap_err();
    assert_eq!(err.to_string(), "cache factory panicked: bad key 2");
    assert_eq!(cache.stats().load_failures, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_computation_whose_waiters_left_is_driven_by_the_next_request() {
    let (cache, calls, _) = counting(CacheOptions::default());
    let gave_up = tokio::time::timeout(ms(2), cache.get(5)).await;
    assert!(gave_up.is_err());
    assert_eq!(cache.get(5).await.unwrap(), 50);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn abandoned_computations_do_not_hold_the_size_bound() {
    let (cache, _, _) = counting(CacheOptions::default().max_size(2));
    for key in 0..10 {
        let _ = tokio::time::timeout(ms(1), cache.get(key)).await;
    }
    assert!(cache.len() <= 2, "len {}", cache.len());
    assert_eq!(cache.get(42).await.unwrap(), 420);
}

#[test]
fn bad_options_are_typed_errors() {
    let factory = |k: u8| async move { Ok::<u8, String>(k) };
    let err = SlidingCache::new(CacheOptions::default().max_size(0), factory).unwrap_err();
    assert_eq!(err, CacheConfigError::ZeroMaxSize);
    let err =
        SlidingCache::new(CacheOptions::default().sliding(Duration::ZERO), factory).unwrap_err();
    assert_eq!(err, CacheConfigError::ZeroExpiry);
}

#[tokio::test]
async fn on_evict_after_sharing_is_refused() {
    let mut cache = SlidingCache::new(CacheOptions::default(), |k: u8| async move {
        Ok::<u8, String>(k)
    })
    .unwrap();
    let _other = cache.clone();
    assert!(!cache.on_evict(|_, _, _| {}));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_eviction_callback_is_counted_and_reported_to_on_error() {
    let failures: Arc<Mutex<Vec<EvictionCallbackFailure>>> = Arc::default();
    let f = failures.clone();
    let sink = SignalSink::default();
    let mut cache = SlidingCache::new(
        CacheOptions::default()
            .max_size(2)
            .signals(sink.clone())
            .on_error(move |failure| f.lock().unwrap().push(failure.clone())),
        |k: u32| async move { Ok::<u32, String>(k) },
    )
    .unwrap();
    let told: Arc<Mutex<Vec<u32>>> = Arc::default();
    let t = told.clone();
    assert!(cache.on_evict(move |k, _, _| {
        t.lock().unwrap().push(*k);
        if *k % 2 == 1 {
            panic!("cannot archive {k}");
        }
    }));
    for key in 1..=5 {
        cache.get(key).await.unwrap(); // evicts 1, 2, 3 by size
    }
    assert!(cache.invalidate(&5));
    // Every eviction reached the callback, the signals and the stats, panics or not.
    assert_eq!(*told.lock().unwrap(), [1, 2, 3, 5]);
    assert_eq!(sink.count("cache.evict"), 4);
    let stats = cache.stats();
    assert_eq!((stats.evicted_size, stats.evicted_explicit), (3, 1));
    assert_eq!(stats.callback_failures, 3);
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 3);
    assert_eq!(failures[0].reason, EvictionReason::Size);
    assert_eq!(failures[0].message, "cannot archive 1");
    assert_eq!(failures[2].reason, EvictionReason::Explicit);
    assert_eq!(failures[2].message, "cannot archive 5");
    // The cache still serves.
    assert_eq!(cache.get(4).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_error_callback_goes_no_further() {
    let mut cache = SlidingCache::new(
        CacheOptions::default()
            .max_size(1)
            .on_error(|_| panic!("the error callback fails too")),
        |k: u32| async move { Ok::<u32, String>(k) },
    )
    .unwrap();
    assert!(cache.on_evict(|_, _, _| panic!("eviction callback fails")));
    for key in 0..3 {
        assert_eq!(cache.get(key).await.unwrap(), key);
    }
    assert_eq!(cache.stats().callback_failures, 2);
}

/// A store that compacts the creation-order queue keeps the stored value's own record, so
/// the value is still found expired when the cache is full and by `purge_expired`. (The
/// compaction used to run before the value was in the table and dropped its record: the
/// expired value then stayed while a live one was evicted by size.)
#[tokio::test(start_paused = true)]
async fn a_value_stored_while_compacting_still_expires_first() {
    let (cache, _, evictions) = counting(
        CacheOptions::default()
            .absolute(Duration::from_secs(10))
            .max_size(2),
    );
    for value in 0..65 {
        cache.insert(1, value); // the 65th insert compacts the queue
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    cache.insert(2, 20);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(cache.get_if_present(&1), Some(64)); // 1 is now the most recently read
    tokio::time::advance(Duration::from_secs(5)).await; // 1 expired, 2 still live
    evictions.lock().unwrap().clear();
    cache.insert(3, 30);
    assert_eq!(
        *evictions.lock().unwrap(),
        [(1, EvictionReason::Expired)],
        "the expired value goes, not the live one"
    );
    assert_eq!(cache.get_if_present(&2), Some(20));

    // And `purge_expired` finds such a value on its own.
    let (cache, _, _) = counting(CacheOptions::default().absolute(Duration::from_secs(10)));
    for value in 0..65 {
        cache.insert(1, value);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(cache.purge_expired(), 1);
    assert!(cache.is_empty());
}

/// A value past its expiry but not yet found by a read is reported as expired when
/// `invalidate`, `insert` or `clear` removes it, not as explicit: it was no longer a value
/// anyone could read (the `sliding_cache` example's fig, invalidated 550 ms after its last
/// read with a 300 ms sliding expiry, used to be reported as an explicit eviction).
#[tokio::test(start_paused = true)]
async fn removing_a_value_that_had_expired_reports_it_as_expired() {
    let (cache, _, evictions) = counting(CacheOptions::default().sliding(ms(10)));
    for key in [1, 2, 3] {
        cache.get(key).await.unwrap();
    }
    tokio::time::advance(ms(20)).await; // all three expired, none found yet
    // `get` would have found nothing: no value a read could have had was removed.
    assert!(!cache.invalidate(&1));
    cache.insert(2, 222);
    assert_eq!(cache.clear(), 1); // the new 2, live (3 had expired)
    let mut seen = evictions.lock().unwrap().clone();
    seen.sort_by_key(|(k, r)| (*k, r.as_str()));
    assert_eq!(
        seen,
        [
            (1, EvictionReason::Expired),
            (2, EvictionReason::Expired),
            (2, EvictionReason::Explicit),
            (3, EvictionReason::Expired),
        ]
    );
    let stats = cache.stats();
    assert_eq!((stats.expired, stats.evicted_explicit), (3, 1));
}

/// Expiries past what the clock holds (`Duration::MAX`) never expire, and no read, store or
/// purge does deadline arithmetic that could overflow.
#[tokio::test(start_paused = true)]
async fn expiries_past_the_clock_never_expire() {
    let (cache, calls, evictions) = counting(
        CacheOptions::default()
            .sliding(Duration::MAX)
            .absolute(Duration::MAX)
            .max_size(2),
    );
    assert_eq!(cache.get(1).await.unwrap(), 10);
    cache.insert(2, 20);
    tokio::time::advance(Duration::from_secs(100 * 365 * 86_400)).await;
    assert_eq!(cache.purge_expired(), 0);
    assert_eq!(cache.get_if_present(&1), Some(10));
    assert_eq!(cache.get(2).await.unwrap(), 20);
    assert_eq!(
        cache.get(3).await.unwrap(),
        30,
        "a full cache evicts by size"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(*evictions.lock().unwrap(), [(1, EvictionReason::Size)]);
}
