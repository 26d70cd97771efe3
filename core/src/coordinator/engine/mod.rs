//! The engine behind every coordinator type: one lock-guarded state, long-lived workers and
//! a steering task woken by the sink.

mod body;
mod handle;
mod inner;
mod steer;
mod window;
mod worker;

pub(crate) use body::erase;
pub(crate) use handle::{Engine, enqueue_each};
pub(crate) use inner::Reserved;
pub(crate) use window::Record;
