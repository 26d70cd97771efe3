//! Scheduling policies: which pending job starts next.
//!
//! The engine keeps pending jobs in one [`Queue`]: [`Fifo`] for the work and result
//! coordinators, [`KeyedQueue`] (strict order per key, cold keys first) for the keyed one and
//! [`LaneQueue`] (highest non-deferred lane first) for the priority one. A queue is plain
//! single-threaded data: every call happens under the engine's lock.

mod fifo;
mod job;
mod keyed;
mod lanes;
mod policy;

pub(crate) use fifo::Fifo;
pub(crate) use job::{Job, PopCx};
pub(crate) use keyed::KeyedQueue;
pub(crate) use lanes::LaneQueue;
pub(crate) use policy::Queue;
