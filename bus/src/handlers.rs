//! Timings of the code the bus runs for users: serve handlers and subscription callbacks.

use crate::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Percentiles are taken over this many most recent calls: a bounded window that follows
/// the handler's current behaviour.
const RECENT: usize = 1024;

/// What kind of user code a [`HandlerStats`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum HandlerKind {
    /// A request handler of [`Bus::serve`](crate::Bus::serve) or
    /// [`Bus::serve_stream`](crate::Bus::serve_stream) (a stream's time is until its end).
    Serve,
    /// A callback of [`Bus::subscribe_fn`](crate::Bus::subscribe_fn).
    Callback,
}

/// Timings of one running handler or callback, from [`BusStats::handlers`](crate::BusStats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HandlerStats {
    /// Serve handler or subscription callback.
    pub kind: HandlerKind,
    /// The served topic, or the callback's pattern.
    pub name: String,
    /// Calls finished so far.
    pub calls: u64,
    /// Calls that panicked (the requester got
    /// [`BusError::ServerFailed`](crate::BusError::ServerFailed)).
    pub errors: u64,
    /// The median duration of the last (up to) 1024 calls; zero before the first.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p50_ms", with = "ephemeral::serde_ms::duration")
    )]
    pub p50: Duration,
    /// The 99th percentile duration of the last (up to) 1024 calls.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p99_ms", with = "ephemeral::serde_ms::duration")
    )]
    pub p99: Duration,
}

/// The counters one handler updates.
pub(crate) struct HandlerCounters {
    kind: HandlerKind,
    name: String,
    calls: AtomicU64,
    errors: AtomicU64,
    /// The last `RECENT` durations in nanoseconds, as a ring.
    recent: Mutex<(Vec<u64>, usize)>,
}

impl HandlerCounters {
    pub(crate) fn record(&self, took: Duration, failed: bool) {
        // Relaxed: independent counters read together only for a snapshot.
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mut recent = self.recent.lock();
        let (samples, next) = &mut *recent;
        if samples.len() < RECENT {
            samples.push(nanos);
        } else {
            samples[*next] = nanos;
        }
        *next = (*next + 1) % RECENT;
    }

    fn snapshot(&self) -> HandlerStats {
        let mut samples = self.recent.lock().0.clone();
        samples.sort_unstable();
        let at = |q: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((samples.len() - 1) as f64 * q).round() as usize;
            Duration::from_nanos(samples[i.min(samples.len() - 1)])
        };
        HandlerStats {
            kind: self.kind,
            name: self.name.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// The handlers of one bus handle; each entry lives as long as its server or callback.
#[derive(Default)]
pub(crate) struct Handlers {
    live: Mutex<Vec<Weak<HandlerCounters>>>,
}

impl Handlers {
    pub(crate) fn register(&self, kind: HandlerKind, name: &str) -> Arc<HandlerCounters> {
        let counters = Arc::new(HandlerCounters {
            kind,
            name: name.to_owned(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recent: Mutex::new((Vec::new(), 0)),
        });
        let mut live = self.live.lock();
        // Bounded by the handlers alive: the gone ones leave at each registration.
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&counters));
        counters
    }

    pub(crate) fn snapshot(&self) -> Vec<HandlerStats> {
        let mut live = self.live.lock();
        live.retain(|w| w.strong_count() > 0);
        live.iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.snapshot())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_recent_calls_and_gone_handlers_leave() {
        let handlers = Handlers::default();
        let h = handlers.register(HandlerKind::Serve, "t");
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms), ms == 100);
        }
        let s = &handlers.snapshot()[0];
        assert_eq!((s.calls, s.errors), (100, 1));
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p99, Duration::from_millis(99));
        // The window keeps the last 1024 calls only.
        for _ in 0..RECENT {
            h.record(Duration::from_micros(10), false);
        }
        let s = &handlers.snapshot()[0];
        assert_eq!(
            (s.p50, s.p99),
            (Duration::from_micros(10), Duration::from_micros(10))
        );
        drop(h);
        assert!(handlers.snapshot().is_empty());
    }
}
