//! The operation a piece of code runs in, readable without an [`OperationContext`] at hand.
//!
//! Coordinators make the operation's id current while they build a body's future and around
//! every poll of it (a task-local scope, like tokio's `task_local!`, kept in a thread-local
//! cell that is set and restored around each poll), so that middleware deep inside a body (an
//! HTTP client layer, a database wrapper) can tag what it reports with the operation without
//! the body passing its context down.
//!
//! [`OperationContext`]: crate::OperationContext

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;

use crate::OperationId;

thread_local! {
    /// The id of the operation whose body is being built or polled on this thread.
    ///
    /// A plain `Cell` of a `Copy` value with a `const` initialiser: no lazy initialisation,
    /// no destructor, no borrow flag, so setting and restoring it around every poll of every
    /// body costs a couple of loads and stores. tokio's `task_local!` would cost more on this
    /// hot path: a `RefCell` swap per poll and another scope entry to drop the future.
    static CURRENT: Cell<Option<OperationId>> = const { Cell::new(None) };
}

/// The id of the coordinator operation whose body is running this code, if any.
///
/// `Some` while a coordinator builds a body's future (the synchronous part of the body
/// closure) and whenever that future is polled; `None` anywhere else — outside any
/// coordinator, in tasks a body spawns (`tokio::spawn` starts a new task, and task-locals do
/// not follow it; pass [`OperationContext::id`] along, or wrap the spawned future in
/// [`with_operation`]) and in listeners and callbacks.
///
/// Reading it is a thread-local lookup: cheap enough to do once per call of a middleware.
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
///
/// // Somewhere deep in a body, with no context passed down:
/// fn log_line(message: &str) -> String {
///     match ephemeral::current_operation() {
///         Some(id) => format!("[{id}] {message}"),
///         None => message.to_owned(),
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let coordinator = EphemeralWorkCoordinator::new(
///     |_: (), ctx: OperationContext| async move {
///         let line = log_line("charging");
///         if line != format!("[{}] charging", ctx.id()) {
///             return Err(format!("unexpected line {line:?}"));
///         }
///         Ok(())
///     },
///     EphemeralOptions::default(),
/// )?;
/// coordinator.enqueue(()).await?;
/// coordinator.drain().await?;
/// assert_eq!(coordinator.stats().completed, 1);
/// assert_eq!(ephemeral::current_operation(), None);
/// assert_eq!(log_line("idle"), "idle");
/// # Ok(())
/// # }
/// ```
///
/// [`OperationContext::id`]: crate::OperationContext::id
#[must_use]
pub fn current_operation() -> Option<OperationId> {
    // `try_with` only fails while the thread is being torn down; nothing runs as an
    // operation then.
    CURRENT.try_with(Cell::get).ok().flatten()
}

/// Runs `future` as part of operation `id`: [`current_operation`] returns `Some(id)` whenever
/// it is polled. Coordinators do this for every body; use it for work a body hands to another
/// task (`tokio::spawn(with_operation(ctx.id(), work))`), or to tag work that runs outside a
/// coordinator with an id you carried across a boundary.
///
/// # Examples
///
/// ```
/// use ephemeral::{OperationId, current_operation, with_operation};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let id = OperationId::from_raw(7);
/// let seen = tokio::spawn(with_operation(id, async { current_operation() }))
///     .await
///     .unwrap();
/// assert_eq!(seen, Some(id));
/// # }
/// ```
pub fn with_operation<F: Future>(id: OperationId, future: F) -> WithOperation<F> {
    WithOperation { id, future }
}

/// Runs `f` with `id` as the current operation (the synchronous part of a body closure).
pub(crate) fn sync_scope<R>(id: OperationId, f: impl FnOnce() -> R) -> R {
    let _restore = Enter::new(Some(id));
    f()
}

/// Runs `f` with no current operation, then restores the one there was.
///
/// Listeners run synchronously inside `raise`, so inside whatever body raised; what they do
/// (log, raise again) belongs to no operation, not to the one that happened to raise.
pub(crate) fn outside_any<R>(f: impl FnOnce() -> R) -> R {
    let _restore = Enter::new(None);
    f()
}

/// The future returned by [`with_operation`]: `future`, polled with its operation current.
///
/// The operation is current only while `future` is polled, not while it is dropped.
#[pin_project]
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct WithOperation<F> {
    id: OperationId,
    #[pin]
    future: F,
}

impl<F: Future> Future for WithOperation<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = Enter::new(Some(*this.id));
        this.future.poll(cx)
    }
}

/// Makes an operation current and restores the previous one when dropped, so a nested scope
/// or a panic unwinding out of a body leaves the thread as it found it.
struct Enter {
    previous: Option<OperationId>,
}

impl Enter {
    #[inline]
    fn new(id: Option<OperationId>) -> Self {
        // `try_with`: during thread teardown there is nothing to set or restore.
        let previous = CURRENT.try_with(|c| c.replace(id)).ok().flatten();
        Self { previous }
    }
}

impl Drop for Enter {
    #[inline]
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_outside_a_scope() {
        assert_eq!(current_operation(), None);
    }

    #[test]
    fn a_panic_inside_a_scope_restores_the_outer_id() {
        let outer = OperationId::from_raw(1);
        sync_scope(outer, || {
            let caught = std::panic::catch_unwind(|| {
                sync_scope(OperationId::from_raw(2), || panic!("boom"));
            });
            assert!(caught.is_err());
            assert_eq!(current_operation(), Some(outer));
        });
        assert_eq!(current_operation(), None);
    }

    #[test]
    fn sync_scope_sets_and_restores() {
        let id = OperationId::from_raw(3);
        assert_eq!(sync_scope(id, current_operation), Some(id));
        assert_eq!(current_operation(), None);
    }

    #[tokio::test]
    async fn nested_scopes_restore_the_outer_id() {
        let outer = OperationId::from_raw(1);
        let inner = OperationId::from_raw(2);
        let seen = with_operation(outer, async move {
            let a = current_operation();
            let b = with_operation(inner, async { current_operation() }).await;
            (a, b, current_operation())
        })
        .await;
        assert_eq!(seen, (Some(outer), Some(inner), Some(outer)));
    }
}
