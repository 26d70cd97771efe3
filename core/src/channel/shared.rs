//! One subscriber's state shared between the channel (which sends) and the subscriber (which
//! reads): its lag ring and the counts only a channel keeps.

use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::DeliveryStats;
use crate::lag::Ring;

pub(crate) struct SubShared<T> {
    pub(crate) id: u64,
    pub(crate) ring: Ring<T>,
    /// Consumer callbacks that panicked (counted by the consumer task).
    pub(crate) failed: AtomicU64,
}

impl<T> SubShared<T> {
    pub(crate) fn new(id: u64, ring: Ring<T>) -> Self {
        Self {
            id,
            ring,
            failed: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> DeliveryStats {
        let ring = self.ring.stats();
        DeliveryStats {
            subscriber: self.id,
            sent: ring.pushed,
            delivered: ring.delivered,
            dropped: ring.dropped,
            expired: ring.expired,
            timed_out: ring.timed_out,
            // Relaxed: a statistic.
            failed: self.failed.load(Ordering::Relaxed),
            buffered: ring.buffered,
        }
    }
}
