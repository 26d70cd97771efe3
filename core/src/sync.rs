//! The synchronisation primitives of our own concurrent code, behind one facade, plus the two
//! helpers every lock site and every caught panic needs.
//!
//! Built normally, these are `std`'s, `futures`' and `tokio`'s types. Built with
//! `RUSTFLAGS="--cfg ephemeral_loom"` they are loom's models, so `cargo test -p ephemeral --lib
//! loom` explores every interleaving of the code that uses them (see the `loom_model` tests
//! next to that code). `ephemeral_loom` is a cfg, not a cargo feature, so `--all-features`
//! never turns it on.
//!
//! Modelled with loom: the lag ring ([`crate::lag::Ring`]: push, drop-oldest and lag
//! accounting with two readers, including the reader/sender compare-and-swap over the oldest
//! value, waiting senders woken by readers giving room back or leaving, the readers' park,
//! close), and the coordinator's inbox (an item left as the inbox shuts or closes is taken in
//! or handed back, never stranded). The sink's window lock comes from
//! here too, so it is a loom mutex in a loom build, but the sink as a whole is not modelled:
//! code built on arc-swap or tokio's own primitives (the sink's `Watch`, the channel's
//! subscriber list) is covered by multi-threaded stress tests instead, since loom cannot see
//! inside them.

#[cfg(not(ephemeral_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(ephemeral_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// Atomics of the modelled code.
pub(crate) mod atomic {
    #[cfg(not(ephemeral_loom))]
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};

    #[cfg(ephemeral_loom)]
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, fence};
}

#[cfg(not(ephemeral_loom))]
pub(crate) use tokio::sync::Notify;

#[cfg(ephemeral_loom)]
pub(crate) use loom_notify::Notify;

/// Locks `m`, carrying on past poisoning.
///
/// Every critical section of this crate keeps its data consistent at each step (each update
/// is a single push, pop, flag write or counter change, and no user code runs under a lock),
/// so a panic elsewhere while the lock was held leaves nothing half-done; turning every later
/// call into a panic would only spread the first one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits on `condvar` with `guard` until notified or until `deadline` (forever when `None`),
/// carrying on past poisoning as [`lock`] does. Returns the guard and whether the deadline
/// passed.
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Option<std::time::Instant>,
) -> (MutexGuard<'a, T>, bool) {
    let Some(at) = deadline else {
        let guard = condvar
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        return (guard, false);
    };
    let left = at.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return (guard, true);
    }
    let (guard, _) = condvar
        .wait_timeout(guard, left)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (guard, false)
}

/// The text of a caught panic's payload (`&str` or `String`, what `panic!` makes), or a
/// placeholder for any other payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
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

/// A model of the part of `tokio::sync::Notify` the lag ring uses, built on loom's mutex so
/// loom sees every wake-up. Its one promise, the one tokio documents and the ring relies
/// on: a `Notified` future receives every `notify_waiters` made after the future was
/// *created*, even before it is first polled.
#[cfg(ephemeral_loom)]
mod loom_notify {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::{Mutex, lock};

    #[derive(Debug, Default)]
    pub(crate) struct Notify {
        /// (times `notify_waiters` was called, wakers of futures waiting for the next one)
        state: Mutex<(u64, Vec<Waker>)>,
    }

    impl Notify {
        pub(crate) fn new() -> Self {
            Self::default()
        }

        pub(crate) fn notified(&self) -> Notified<'_> {
            Notified {
                notify: self,
                generation: lock(&self.state).0,
            }
        }

        pub(crate) fn notify_waiters(&self) {
            let wakers = {
                let mut state = lock(&self.state);
                state.0 += 1;
                std::mem::take(&mut state.1)
            };
            for waker in wakers {
                waker.wake();
            }
        }
    }

    pub(crate) struct Notified<'a> {
        notify: &'a Notify,
        generation: u64,
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = lock(&self.notify.state);
            if state.0 != self.generation {
                return Poll::Ready(());
            }
            state.1.push(cx.waker().clone());
            Poll::Pending
        }
    }
}
