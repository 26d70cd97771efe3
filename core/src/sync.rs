//! The synchronisation primitives of our own concurrent code, behind one facade.
//!
//! Built normally, these are `std`'s and `futures`' types. Built with
//! `RUSTFLAGS="--cfg ephemeral_loom"` they are loom's models, so `cargo test -p ephemeral --lib
//! loom` explores every interleaving of the code that uses them (see the `loom_model` tests
//! next to that code). `ephemeral_loom` is a cfg, not a cargo feature, so `--all-features`
//! never turns it on.
//!
//! Modelled with loom: the subscription ring (push, lag accounting, close, wake-ups).
//! Code built on dashmap, arc-swap or tokio's own primitives is covered by multi-threaded
//! stress tests instead, since loom cannot see inside them.

#[cfg(not(ephemeral_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(ephemeral_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on past poisoning: our critical sections keep their data consistent
/// at every step (each update is a single push, pop or flag write), so a panic elsewhere
/// while the lock was held leaves nothing half-done.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One task's waker, registered by the reader and woken by writers (futures' `AtomicWaker`,
/// or loom's model of it).
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker {
    #[cfg(not(ephemeral_loom))]
    inner: futures::task::AtomicWaker,
    #[cfg(ephemeral_loom)]
    inner: loom::future::AtomicWaker,
}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        #[cfg(not(ephemeral_loom))]
        self.inner.register(waker);
        #[cfg(ephemeral_loom)]
        self.inner.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.inner.wake();
    }
}
