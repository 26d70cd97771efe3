//! `Admission`: hooks that decide, before an item takes a slot, whether it starts.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::OperationId;

/// What an [`Admission`] hook decided.
#[non_exhaustive]
pub enum Decision {
    /// Let the item start (the next hook is asked next).
    Admit,
    /// Put the item aside, holding no slot, until the future completes; then it is checked
    /// again from the first hook.
    Defer(BoxFuture<'static, ()>),
    /// End the item `Cancelled(Admission(reason))`.
    Cancel(Arc<str>),
}

impl Decision {
    /// `Cancel` with a reason.
    pub fn cancel(reason: impl Into<Arc<str>>) -> Self {
        Self::Cancel(reason.into())
    }

    /// `Defer` until `until` completes.
    pub fn defer(until: impl Future<Output = ()> + Send + 'static) -> Self {
        Self::Defer(Box::pin(until))
    }
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admit => f.write_str("Admit"),
            Self::Defer(_) => f.write_str("Defer(..)"),
            Self::Cancel(reason) => f.debug_tuple("Cancel").field(reason).finish(),
        }
    }
}

/// What a hook sees of the item it decides on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdmissionRequest {
    /// The operation.
    pub id: OperationId,
    /// Its rendered key or lane, if any.
    pub key: Option<Arc<str>>,
}

/// A hook asked before an item takes a concurrency slot. A coordinator has any number of
/// them ([`EphemeralOptions`](super::EphemeralOptions) does not hold them; pass them with
/// `with_admission`), asked in order after the built-in cancel and defer rules.
///
/// Patterns such as a circuit breaker's half-open probes or an adaptive rate limit are
/// admission hooks. A hook runs on a worker, so it should decide quickly; to wait, return
/// [`Decision::Defer`], which holds no slot. An item put aside keeps its room among
/// `max_pending` (it is still waiting to start), and an item keeps that room while its
/// hooks decide, so a hook that defers every item cannot let more than `max_pending` in.
///
/// A hook that panics (in `admit` or in its future) is caught as a panicking body is: its
/// item ends failed and panicked without its body running, with the error `admission hook
/// panicked: <message>`, and the worker goes on with the next item. So does an item whose
/// [`Decision::Defer`] future panics (`admission hook's deferral panicked: <message>`).
///
/// While its hooks decide, an item shows as `Running` and is cancelled like a running one
/// (`cancel_operation`, `cancel`, a `cancel_running_on` signal): the hook still deciding is
/// dropped and the item ends `Cancelled` for that reason at once, without its body ever
/// running, so a hook that never answers cannot keep an item alive.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use futures::future::BoxFuture;
/// use ephemeral::{Admission, AdmissionRequest, Decision};
///
/// #[derive(Debug)]
/// struct Gate(Arc<AtomicBool>);
///
/// impl Admission for Gate {
///     fn admit<'a>(&'a self, _req: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
///         // Relaxed: a plain flag, read once.
///         let open = self.0.load(Ordering::Relaxed);
///         Box::pin(async move {
///             if open { Decision::Admit } else { Decision::cancel("gate closed") }
///         })
///     }
/// }
/// ```
pub trait Admission: Send + Sync + fmt::Debug + 'static {
    /// Decides on one item.
    fn admit<'a>(&'a self, request: &'a AdmissionRequest) -> BoxFuture<'a, Decision>;
}
