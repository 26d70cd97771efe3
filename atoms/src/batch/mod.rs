//! Batching: group items into batches by size or time, whichever comes first.
//!
//! [`Batcher`] takes items one by one ([`push`](Batcher::push)) and hands them to an async
//! handler in batches of at most `max_size`, at the latest `flush_interval` after a batch's
//! first item arrived. Typical uses: bulk database inserts, log shipping, metrics.
//!
//! Guarantees (the .NET original breaks the first two):
//!
//! * a batch never has more than `max_size` items;
//! * flushes never overlap: one batch is handled at a time, in push order;
//! * [`close`](Batcher::close) flushes everything pushed and waits for the handler;
//! * a handler error or panic never crashes the process and is never lost: it is counted,
//!   signalled as `batch.failed`, logged with `tracing`, and returned by `close`;
//! * a push that cannot be accepted gives the item back.
//!
//! `pending` items (pushed, not yet handed over) are bounded: at most `buffer` wait for the
//! batcher's task and fewer than `max_size` sit in the batch being filled, so a slow
//! handler slows `push` down instead of growing memory.

mod batcher;
mod error;
mod options;
mod worker;

pub use batcher::{BatchReport, BatchStats, Batcher};
pub use error::{BatchClosed, BatchConfigError, BatchFailure, HandlerOutcome, TryPushError};
pub use options::BatchOptions;
