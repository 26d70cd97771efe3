//! Identifiers shared by the sink and the coordinators.

use std::fmt;

/// The identifier of one operation of a coordinator.
///
/// Unique within the process (a global counter), so a signal's operation id never points at
/// the wrong coordinator's operation. Rendered as `op-<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationId(u64);

impl OperationId {
    /// Wraps a raw id. Coordinators hand out ids themselves; this exists for tests, the bus
    /// and tools that carry ids across a boundary.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number behind this id.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A fresh id, never handed out before in this process.
    pub(crate) fn next() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Relaxed: the counter only has to hand out distinct values; it orders nothing else.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op-{}", self.0)
    }
}
