//! Keyed priority fan-out: a priority lane and a normal lane, with per-key ordering across
//! both.
//!
//! Use it when work for many keys (customers, accounts, devices) must run in parallel, some of
//! it is urgent, and work for one key must still happen in the order it was accepted, one item
//! at a time, whichever lane it came through. A plain priority coordinator would let an urgent
//! update for account 7 overtake (or run beside) a normal one for account 7; this does not.
//!
//! Rules:
//! - at most one item per key runs at a time, and a key's items start in acceptance order,
//!   across both lanes;
//! - whenever a slot frees up, the next item is the oldest *startable* priority item (its key
//!   idle and it first in its key's queue), else the oldest startable normal item;
//! - a priority item queued behind a normal item of the same key waits for it: order wins.
//!
//! It is built on a public [`PriorityWorkCoordinator`](ephemeral::PriorityWorkCoordinator)
//! with lanes `priority` and `normal`: each accepted item is one operation of it (the id
//! `enqueue` returns is that item's), and an admission hook lets an item start only when it
//! is first in its key's queue and its key is idle; until then the item is put aside, holding
//! no slot, and shows as `Deferred` in snapshots. So stats, snapshots, `cancel_operation`, the
//! coordinator's `cancel_on` rules, `max_concurrency`, panics caught and recorded and `drain`
//! all count and act on items. An item that ends without running (cancelled, refused, shut
//! down) leaves its key's queue at once, and the key's next item may start.
//!
//! When a key frees, only its next item is woken, and it goes back to the front of its lane.
//! An item ranked after it (a normal item, or a younger one of its lane) that a worker takes
//! meanwhile waits for it, for a moment and holding that slot, then is put aside until the
//! woken item has been taken: so an item that waited for its key keeps its lane's precedence
//! and its age, as the rules above say.
//!
//! `max_defer` bounds how long an item waits, for its key as for a defer rule, and needs
//! [`DeferPolicy::Cancel`]: an item that waits that long ends `Cancelled(DeferTimeout)`.
//! [`DeferPolicy::Run`] would start such an item anyway, beside its key's running item, so
//! [`KeyedPriorityFanout::new`] refuses it ([`FanoutConfigError::RunPastMaxDefer`]).
//!
//! [`DeferPolicy::Cancel`]: ephemeral::DeferPolicy::Cancel
//! [`DeferPolicy::Run`]: ephemeral::DeferPolicy::Run
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use ephemeral::{EphemeralOptions, OperationContext};
//! use ephemeral_patterns::keyed_priority_fanout::{FanoutLane, KeyedPriorityFanout};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let seen = log.clone();
//! let fanout = KeyedPriorityFanout::new(
//!     move |account: u32, change: &'static str, _ctx: OperationContext| {
//!         let seen = seen.clone();
//!         async move {
//!             seen.lock().unwrap().push((account, change));
//!             Ok::<_, std::convert::Infallible>(())
//!         }
//!     },
//!     EphemeralOptions::default().max_concurrency(1),
//! )?;
//! fanout.pause();
//! fanout.enqueue(FanoutLane::Normal, 7, "rename").await?;
//! fanout.enqueue(FanoutLane::Priority, 7, "freeze").await?; // behind account 7's rename
//! fanout.enqueue(FanoutLane::Priority, 9, "freeze").await?; // jumps the queue
//! fanout.resume();
//! fanout.drain().await?;
//! assert_eq!(*log.lock().unwrap(), [(9, "freeze"), (7, "rename"), (7, "freeze")]);
//! # Ok(())
//! # }
//! ```

mod admission;
mod error;
mod fanout;
mod state;
mod ticket;

pub use error::FanoutConfigError;
pub use fanout::KeyedPriorityFanout;
pub use ticket::Ticket;

const PRIORITY: &str = "priority";
const NORMAL: &str = "normal";

/// Which lane an item comes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanoutLane {
    /// Starts before any startable normal item.
    Priority,
    /// Starts when no priority item can.
    Normal,
}

impl FanoutLane {
    fn name(self) -> &'static str {
        match self {
            Self::Priority => PRIORITY,
            Self::Normal => NORMAL,
        }
    }
}
