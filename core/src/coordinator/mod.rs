//! Coordinators: bounded, tracked, signal-steered async work.
//!
//! One engine serves every coordinator type; the types differ only in how they order starts:
//!
//! * [`EphemeralWorkCoordinator`] — first in, first out.
//! * [`EphemeralKeyedWorkCoordinator`] — strict order per key, no head-of-line blocking,
//!   cold keys first.
//! * [`EphemeralResultCoordinator`] — keeps each body's value with its operation.
//! * [`PriorityWorkCoordinator`] — named [`Lane`]s, highest priority starts first.
//! * [`process_all`] / [`process_stream`] — one-shot: a collection or stream in, a
//!   [`Summary`] out; [`process_keyed`] keeps per-key order; [`process_all_with_cancel`] /
//!   [`process_stream_with_cancel`] stop on a `CancellationToken` and report what was
//!   cancelled.
//!
//! # How an item flows
//!
//! Each step, and the file that does it (`engine/` holds the internals, `queue/` the
//! scheduling policies; the public types are in this directory):
//!
//! 1. `enqueue` (`try_enqueue`, a reserved permit, `enqueue_many`, a stream) takes room among
//!    `max_pending` and hands the item to the engine: `engine/intake.rs`.
//! 2. The item is accepted under the engine's lock: a record in the window, a job in the
//!    queue, a worker spawned or woken: `engine/state.rs` (`Core::accept`), the queue policy
//!    in `queue/` (`fifo.rs`, `keyed.rs`, `lanes.rs`).
//! 3. A worker takes it when fewer than `max_concurrency` run, nothing is paused and no
//!    defer rule holds (`Core::try_start`); the steering task applies the defer, drain,
//!    cancel-running and clear rules and `max_defer` as signals change: `engine/worker.rs`,
//!    `engine/steer.rs`.
//! 4. The built-in cancel rule and the [`Admission`] hooks decide (a hook's `Defer` puts it
//!    aside): `engine/worker.rs`.
//! 5. The body runs with an [`OperationContext`] (`context.rs`), its panics caught:
//!    `engine/worker.rs`, `engine/body.rs`.
//! 6. The outcome is filed in the window and counted (`Core::finish`), and what the change
//!    leaves to do (wake-ups, room back, `on_finalized`) runs after the unlock
//!    (`Inner::update`): `engine/state.rs`, `engine/inner.rs`, `engine/rules.rs`.
//! 7. It is evicted later by count, age or `evict`, leaving an [`Echo`], and `on_evicted`
//!    runs: `engine/window.rs`. Queries read the window: `engine/queries.rs`.
//!
//! # Deferral
//!
//! While a signal matching `defer_on` is live, no item starts, and waiting items hold no slot.
//! It ends as soon as no defer match is live, or a `resume_on` signal newer than the latest
//! defer match exists. The coordinator learns this from a sink watch, never by polling. A
//! priority lane's own defer rule holds only that lane, and an [`Admission`] hook's
//! [`Decision::Defer`] puts one item aside. Snapshots show held items as
//! [`OperationState::Deferred`].
//!
//! `max_defer` (if set) bounds each item's total deferral: the time it spent held back,
//! summed over every deferral, from when it was first held. When an item reaches it, the
//! [`DeferPolicy`] applies to that item alone: `Run` lets it start (no defer rule or hook
//! `Defer` holds it any more), `Cancel` ends it `Cancelled(DeferTimeout)`.
//!
//! # Panics
//!
//! A panicking body is caught and recorded as failed with its message. Under
//! `panic = "abort"` there is nothing to catch: the process ends.

mod admission;
mod context;
mod defer;
mod engine;
mod error;
mod handle;
mod intake_sink;
mod key_label;
mod keyed;
mod lane;
mod methods;
mod operation_error;
mod options;
mod priority;
mod process;
mod queue;
mod result;
#[cfg(feature = "tower")]
mod service;
mod snapshot;
mod work;

pub use admission::{Admission, AdmissionRequest, Decision};
pub use context::OperationContext;
pub use error::{
    CoordinatorError, EnqueueError, EnqueueManyError, IntakeError, LaneError, PinError, ResultError,
};
pub use handle::CoordinatorHandle;
pub use intake_sink::{IntakeSink, IntakeSinkError};
pub use keyed::{EphemeralKeyedWorkCoordinator, KeyedEnqueuePermit};
pub use lane::Lane;
pub use operation_error::OperationError;
pub use options::{
    DeferPolicy, DrainSignals, EphemeralOptions, EvictedCallback, FinalizedCallback, MAX_PENDING,
    OptionsError,
};
pub use priority::{LaneEnqueuePermit, PriorityWorkCoordinator};
pub use process::{
    Summary, process_all, process_all_with_cancel, process_keyed, process_stream,
    process_stream_with_cancel,
};
pub use result::{EphemeralResultCoordinator, PendingResult};
#[cfg(feature = "tower")]
pub use service::{CoordinatorLayer, CoordinatorService, ResponseFuture, ServiceError};
pub use snapshot::{
    CancelReason, CoordinatorStats, Echo, KeyStats, OperationSnapshot, OperationState,
};
pub use work::{EnqueuePermit, EphemeralWorkCoordinator};
