//! One subscriber's state shared between the channel (which sends and reports) and the
//! subscriber (which reads): the ring it reads, its reader there, and the counts only a
//! channel keeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::stats::DeliveryStats;
use crate::lag::{ReaderShared, Ring};

pub(crate) struct SubShared<T> {
    pub(crate) id: u64,
    /// Shared with the channel's other subscribers of the same buffer and overflow policy.
    pub(crate) ring: Arc<Ring<T>>,
    /// This subscriber's reader counts in `ring`, readable after it left.
    pub(crate) reader: Arc<ReaderShared>,
    /// Consumer callbacks that panicked (counted by the consumer task).
    pub(crate) failed: AtomicU64,
}

impl<T> SubShared<T> {
    pub(crate) fn new(id: u64, ring: Arc<Ring<T>>, reader: Arc<ReaderShared>) -> Self {
        Self {
            id,
            ring,
            reader,
            failed: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> DeliveryStats {
        let ring = self.ring.reader_stats(&self.reader);
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
