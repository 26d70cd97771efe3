//! `OperationContext`: what a body gets besides its item.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use super::engine::Slot;
use super::key_label::KeyLabel;
use crate::sync::{Mutex, lock};
use crate::{OperationId, RaiseError, Signal, SignalBuilder, SignalSink};

/// Per-coordinator state shared by every context.
#[derive(Debug)]
pub(crate) struct ContextShared {
    pub(crate) sink: SignalSink,
    /// Operations that raised at least one signal, so eviction asks the sink for echoes only
    /// for them (most operations raise nothing).
    signalled: Mutex<HashSet<OperationId>>,
    signalled_len: AtomicUsize,
}

impl ContextShared {
    pub(crate) fn new(sink: SignalSink) -> Self {
        Self {
            sink,
            signalled: Mutex::new(HashSet::new()),
            signalled_len: AtomicUsize::new(0),
        }
    }

    fn mark(&self, id: OperationId) {
        let mut set = lock(&self.signalled);
        set.insert(id);
        // Relaxed: a hint that lets `take` skip the lock; `take` re-checks under the lock.
        self.signalled_len.store(set.len(), Ordering::Relaxed);
    }

    /// Whether `id` raised signals; forgets it.
    pub(crate) fn take(&self, id: OperationId) -> bool {
        // Relaxed: see `mark`. A raise racing an eviction may be missed by the echo, which
        // is only a best-effort copy; the signal itself stays in the sink.
        if self.signalled_len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut set = lock(&self.signalled);
        let found = set.remove(&id);
        self.signalled_len.store(set.len(), Ordering::Relaxed);
        found
    }
}

/// What a body gets besides its item: its id and key, a cancellation token, and the means
/// to raise and retract signals on the coordinator's sink, tagged with this operation.
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let coordinator = EphemeralWorkCoordinator::new(
///     |n: u32, ctx: OperationContext| async move {
///         if n % 2 == 1 {
///             ctx.signal("odd.seen")?;
///         }
///         Ok::<_, ephemeral::RaiseError>(())
///     },
///     EphemeralOptions::default().signals(sink.clone()),
/// )?;
/// let id = coordinator.enqueue(3).await?;
/// coordinator.drain().await?;
/// assert_eq!(sink.latest("odd.*").and_then(|s| s.operation()), Some(id));
/// # Ok(())
/// # }
/// ```
pub struct OperationContext {
    pub(crate) id: OperationId,
    /// The key as kept.
    pub(crate) key: Option<KeyLabel>,
    /// A key kept as a number, rendered on the first ask (`key()`, a raised signal).
    pub(crate) key_text: OnceLock<Arc<str>>,
    /// The token, made on first ask: most bodies never ask, and cancellation reaches the
    /// operation through its worker's slot either way.
    pub(crate) token: OnceLock<CancellationToken>,
    /// The worker's slot: cancellation state, and the coordinator's shared context.
    pub(crate) slot: Arc<Slot>,
}

impl OperationContext {
    /// This operation's id.
    #[must_use]
    pub fn id(&self) -> OperationId {
        self.id
    }

    /// This operation's key (rendered) or lane, if any.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.rendered_key().map(|key| &**key)
    }

    /// The key's rendering, made on the first ask for a key kept as a number.
    fn rendered_key(&self) -> Option<&Arc<str>> {
        match self.key.as_ref()? {
            KeyLabel::Text(text) => Some(text),
            label => Some(self.key_text.get_or_init(|| label.text())),
        }
    }

    /// This operation's token: cancelled by `cancel()`, `cancel_operation`, a
    /// `cancel_running_on` signal, or dropping the coordinator. Bodies should stop when it
    /// fires; one that does not is dropped after the grace period. A body that stops by
    /// returning an error ends `Cancelled` with the cancel's reason; one that returns `Ok`
    /// ends `Completed` (it finished its work).
    ///
    /// The token is made on the first call (a body that never asks pays for none); if the
    /// operation was cancelled before that, it comes back already cancelled. A context kept
    /// after its body ended keeps answering for its own operation only.
    #[must_use]
    pub fn token(&self) -> &CancellationToken {
        self.token.get_or_init(|| self.slot.token_for(self.id))
    }

    /// Completes once this operation is asked to stop (by the same causes that cancel its
    /// [`token`](Self::token)); at once if it was already. It makes no token: the cheap
    /// way for a body to race its work against cancellation (`tokio::select!`), where the
    /// token is for handing to code that takes one. The future does not borrow the context,
    /// so it can be moved into the body's `async` block (or a task of its own); like a kept
    /// context, it keeps answering for this operation only.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, OperationState};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = EphemeralWorkCoordinator::new(
    ///     |_: (), ctx: OperationContext| {
    ///         let stop = ctx.cancelled();
    ///         async move {
    ///             tokio::select! {
    ///                 () = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
    ///                 () = stop => Err("stopped on request"),
    ///             }
    ///         }
    ///     },
    ///     EphemeralOptions::default(),
    /// )?;
    /// let id = coordinator.enqueue(()).await?;
    /// tokio::time::sleep(Duration::from_millis(10)).await; // it is running
    /// coordinator.cancel_operation(id);
    /// coordinator.drain().await?;
    /// let state = coordinator.operation(id).map(|op| op.state);
    /// assert!(matches!(state, Some(OperationState::Cancelled(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + use<> {
        let (slot, id) = (Arc::clone(&self.slot), self.id);
        async move { slot.cancelled(id).await }
    }

    /// Whether this operation was asked to stop.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        match self.token.get() {
            Some(token) => token.is_cancelled(),
            None => self.slot.is_cancelled(self.id),
        }
    }

    /// Raises `name` on the coordinator's sink, carrying this operation's id (and key).
    ///
    /// # Errors
    ///
    /// [`RaiseError`] for a bad name.
    pub fn signal(&self, name: &str) -> Result<Signal, RaiseError> {
        let builder = Signal::build(name)?;
        self.signal_with(builder)
    }

    /// Raises a signal built with optional parts; this operation's id (and key, unless the
    /// builder set one) are added.
    ///
    /// # Errors
    ///
    /// [`RaiseError`] past the sink's limits.
    pub fn signal_with(&self, builder: SignalBuilder) -> Result<Signal, RaiseError> {
        let mut builder = builder.operation(self.id);
        // A key the caller set is kept: a body may address a keyed signal elsewhere
        // (`coordinator.drain.id` to another coordinator, say).
        if builder.key.is_none()
            && let Some(key) = self.rendered_key()
        {
            builder = builder.key(key.clone());
        }
        // Only while the operation runs: a context kept past its operation (moved into a
        // spawned task) would otherwise mark ids that eviction already took, for good (the
        // set grew by one for each such late raise). Its signal still goes to the sink; only
        // the best-effort copy in the operation's echo misses it.
        if self.slot.runs(self.id) {
            self.slot.shared.mark(self.id);
        }
        self.slot.shared.sink.raise_with(builder)
    }

    /// Retracts this operation's live signals named `name`; returns how many.
    pub fn retract(&self, name: &str) -> usize {
        self.slot.shared.sink.retract_operation_named(self.id, name)
    }

    /// Whether a live signal on the coordinator's sink matches `pattern`.
    #[must_use]
    pub fn has_signal(&self, pattern: &str) -> bool {
        self.slot.shared.sink.has_signal(pattern)
    }

    /// The coordinator's sink.
    #[must_use]
    pub fn sink(&self) -> &SignalSink {
        &self.slot.shared.sink
    }
}

impl fmt::Debug for OperationContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationContext")
            .field("id", &self.id)
            .field("key", &self.key())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(slot: &Arc<Slot>, id: OperationId) -> OperationContext {
        OperationContext {
            id,
            key: None,
            key_text: OnceLock::new(),
            token: OnceLock::new(),
            slot: Arc::clone(slot),
        }
    }

    /// A context that outlives its operation (moved into a spawned task, raising after the
    /// operation ended and was evicted) leaves nothing behind: it used to mark its id in the
    /// set only eviction clears, one entry more for good per such raise.
    #[test]
    fn a_raise_after_the_operation_ended_marks_nothing() {
        let shared = Arc::new(ContextShared::new(SignalSink::default()));
        let slot = Arc::new(Slot::new(Arc::clone(&shared)));
        let id = OperationId::next();
        let ctx = context(&slot, id);
        slot.set_running(Some(id));
        ctx.signal("during.run").expect("raised");
        assert!(
            shared.take(id),
            "a raise while running is marked for the echo"
        );
        slot.set_running(None);
        for _ in 0..3 {
            ctx.signal("after.the.end").expect("raised all the same");
        }
        assert_eq!(shared.signalled_len.load(Ordering::Relaxed), 0);
        assert_eq!(shared.sink.count("after.the.end"), 3);
    }
}
