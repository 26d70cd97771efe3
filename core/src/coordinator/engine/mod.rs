//! The engine behind every coordinator type: one lock-guarded state, long-lived workers and
//! a steering task woken by the sink.
//!
//! Files, in the order they depend on each other (each uses only those before it):
//!
//! * `body.rs`: the user's body, which workers are compiled for, and panic messages;
//! * `rules.rs`: what the options fix at creation (patterns, callbacks), callback delivery;
//! * `sample.rs`: the `sample` throttle;
//! * `slot.rs`: a worker's slot, through which cancellation reaches the body it runs;
//! * `mailbox.rs`: a waiting worker's mailbox, through which an accepted item reaches it;
//! * `inbox.rs`: items accepted without the lock while every worker is busy;
//! * `window.rs`: tracked operations, eviction and echoes;
//! * `state.rs`: [`Core`](state::Core), everything under the lock, and the
//!   [`Effect`](state::Effect) each change leaves to apply after the unlock;
//! * `inner.rs`: [`Inner`](inner::Inner), shared by handles, workers and the steering task,
//!   and `update`, the one way to change the state;
//! * `worker.rs`: the workers (take, admit, run, file);
//! * `steer.rs`: the steering task (drain, cancel-running, clear, defer, `max_defer`);
//! * `lifecycle.rs`: [`Engine`], creation and lifecycle; `intake.rs` and `queries.rs` add its
//!   intake and its queries.

mod body;
mod inbox;
mod inner;
mod intake;
mod lifecycle;
mod mailbox;
mod queries;
mod rules;
mod sample;
mod slot;
mod state;
mod steer;
#[cfg(test)]
mod tests;
mod window;
mod worker;

pub(crate) use body::user_body;
pub(crate) use intake::{Reserved, enqueue_each};
pub(crate) use lifecycle::Engine;
pub(crate) use slot::Slot;
pub(crate) use window::{Answerer, Record, Reply};
