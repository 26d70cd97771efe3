//! The inbox: how `enqueue` accepts an item without the engine's lock while every worker is
//! busy.
//!
//! A coordinator whose queue accepts every item as it comes (the FIFO and keyed queues) and
//! that has no coordinator-wide defer rule opens its inbox whenever accepting an item needs
//! nothing of the lock: every worker is spawned and none waits (so the item wakes and spawns
//! nobody), and the coordinator still takes items. While it is open, `enqueue` leaves the item
//! here (with its id and enqueue time) and returns. Every critical section takes what was left
//! in first, in order, so whatever anyone observes under the lock (snapshots, counts, a
//! cancel, a worker looking for work) is as if each item had been accepted under the lock at
//! its enqueue.
//!
//! The one race is a worker that starts waiting while an item is being left: the enqueuer
//! saw the inbox open, and the worker found it empty. Both sides write, fence and read, in
//! the order of Dekker's protocol ([`Inbox::leave`] and [`Inbox::set_open`]), so at least
//! one of them sees the other: either the section that shuts the inbox finds the item (and
//! takes it in, handing it to the waiting worker), or the enqueuer finds the inbox shut after
//! leaving its item (and runs a section itself, which does the same). `complete` and `cancel`
//! close it for good (a later leave fails and the item takes the lock, to be refused) and take
//! in what is left, before the coordinator can be done.
//!
//! Modelled with loom (`loom_model` below): an item left while the inbox is open is always
//! taken in by the section that shuts it, or reported back to its enqueuer.

#[cfg(ephemeral_loom)]
use std::collections::VecDeque;

use crate::sync::atomic::{AtomicBool, fence};
use std::sync::atomic::Ordering;

#[cfg(ephemeral_loom)]
use crate::sync::{Mutex, lock};

/// Items accepted without the lock, not yet taken in.
///
/// # Invariants
///
/// * `open` is written only under the engine's lock, at the end of a section ([`set_open`]),
///   or by [`close`] (also under the lock).
/// * An item is in the queue only between a [`leave`] that returned `Ok` and the next
///   [`take`] under the lock; a closed queue takes no item.
///
/// [`set_open`]: Self::set_open
/// [`close`]: Self::close
/// [`leave`]: Self::leave
/// [`take`]: Self::take
pub(crate) struct Inbox<J> {
    #[cfg(not(ephemeral_loom))]
    queue: concurrent_queue::ConcurrentQueue<J>,
    /// The queue under loom: a mutex over a deque and a closed flag, since
    /// `concurrent-queue` is not built with loom's types.
    #[cfg(ephemeral_loom)]
    queue: Mutex<(VecDeque<J>, bool)>,
    open: Flag,
}

/// The open flag on a cache line of its own: enqueuers read it on every item, and it must
/// not share a line with what sections write.
#[repr(align(128))]
struct Flag(AtomicBool);

impl std::ops::Deref for Flag {
    type Target = AtomicBool;

    fn deref(&self) -> &AtomicBool {
        &self.0
    }
}

/// About how many bytes the inbox's slots take: a ring allocated once, with the coordinator.
#[cfg(not(ephemeral_loom))]
const INBOX_BYTES: usize = 8 * 1024;

/// How many items the inbox holds: what fits in [`INBOX_BYTES`], at least 8 and at most 128.
/// A full inbox refuses an item, which is then accepted under the lock, after that section
/// took in everything left before it; so a producer outrunning the workers takes the lock
/// once per inbox-full, and the ring is never grown, nor its blocks allocated, zeroed and
/// freed as items pass (an unbounded queue's cost, about a tenth of an item's instructions).
#[cfg(not(ephemeral_loom))]
fn capacity<J>() -> usize {
    (INBOX_BYTES / std::mem::size_of::<J>().max(1)).clamp(8, 128)
}

impl<J> Inbox<J> {
    /// A shut inbox (sections open it when they may).
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(ephemeral_loom))]
            queue: concurrent_queue::ConcurrentQueue::bounded(capacity::<J>()),
            #[cfg(ephemeral_loom)]
            queue: Mutex::new((VecDeque::new(), false)),
            open: Flag(AtomicBool::new(false)),
        }
    }

    /// Leaves `job` if the inbox is open. `Ok(true)`: left, and nothing else to do;
    /// `Ok(false)`: left, but the inbox was shut meanwhile, so a worker may be waiting that
    /// did not see it: the caller must run a critical section (which takes it in and hands it
    /// out). `Err(job)`: not left (shut, closed or full); the caller accepts it under the
    /// lock.
    pub(crate) fn leave(&self, job: J) -> Result<bool, J> {
        // SeqCst, with the fence: the enqueuer's half of Dekker's protocol (see the module).
        if !self.open.load(Ordering::SeqCst) {
            return Err(job);
        }
        self.push(job)?;
        fence(Ordering::SeqCst);
        Ok(self.open.load(Ordering::SeqCst))
    }

    /// At a section's end, under the lock: opens the inbox, or shuts it. Returns `true` when
    /// it is shut and items were left in it that the section must take in first (and then
    /// decide again).
    pub(crate) fn set_open(&self, open: bool) -> bool {
        // Relaxed: only sections write it, under the lock that orders them.
        if self.open.load(Ordering::Relaxed) == open {
            // Unchanged: no write (the flag's line stays shared with the enqueuers). Shut
            // already, it was shut by an earlier section that did the check below; an item
            // left since then was left by an enqueuer that then found it shut and runs a
            // section of its own.
            return false;
        }
        // SeqCst, with the fence: the section's half of Dekker's protocol (see the module).
        self.open.store(open, Ordering::SeqCst);
        if open {
            return false;
        }
        fence(Ordering::SeqCst);
        !self.is_empty()
    }

    /// Under the lock: takes in every item left, oldest first.
    #[inline]
    pub(crate) fn take(&self, mut f: impl FnMut(J)) {
        // Two loads first: a pop fences even on an empty queue, and this runs at the start
        // of every critical section. An item whose push is not visible yet was left after
        // the section began, as if enqueued just after it.
        if self.is_empty() {
            return;
        }
        while let Some(job) = self.pop() {
            f(job);
        }
    }

    /// Under the lock: no item is left here any more (`complete`, `cancel`); the caller then
    /// takes in what was left before.
    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        #[cfg(not(ephemeral_loom))]
        self.queue.close();
        #[cfg(ephemeral_loom)]
        {
            lock(&self.queue).1 = true;
        }
    }

    #[cfg(not(ephemeral_loom))]
    fn push(&self, job: J) -> Result<(), J> {
        self.queue
            .push(job)
            .map_err(concurrent_queue::PushError::into_inner)
    }

    #[cfg(not(ephemeral_loom))]
    fn pop(&self) -> Option<J> {
        self.queue.pop().ok()
    }

    #[cfg(not(ephemeral_loom))]
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(ephemeral_loom)]
    fn push(&self, job: J) -> Result<(), J> {
        let mut queue = lock(&self.queue);
        if queue.1 {
            return Err(job);
        }
        queue.0.push_back(job);
        Ok(())
    }

    #[cfg(ephemeral_loom)]
    fn pop(&self) -> Option<J> {
        lock(&self.queue).0.pop_front()
    }

    #[cfg(ephemeral_loom)]
    fn is_empty(&self) -> bool {
        lock(&self.queue).0.is_empty()
    }
}

#[cfg(all(test, ephemeral_loom))]
mod loom_model {
    //! Every interleaving of an enqueuer leaving an item while a section shuts the inbox (a
    //! worker about to wait), and while a section closes it (`complete`).

    use std::sync::Arc;

    use super::Inbox;

    /// What the enqueuer's `leave` returned.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Left {
        Done,
        Kick,
        Refused,
    }

    /// An open inbox, and a thread leaving one item in it.
    fn open_with_enqueuer() -> (Arc<Inbox<u32>>, loom::thread::JoinHandle<Left>) {
        let inbox = Arc::new(Inbox::new());
        assert!(!inbox.set_open(true));
        let enqueuer = {
            let inbox = inbox.clone();
            loom::thread::spawn(move || match inbox.leave(7) {
                Ok(true) => Left::Done,
                Ok(false) => Left::Kick,
                Err(_) => Left::Refused,
            })
        };
        (inbox, enqueuer)
    }

    /// A worker shuts the inbox to wait while an item is left: if the enqueuer was told
    /// nothing else is needed, the worker's section took the item in.
    #[test]
    fn an_item_left_as_the_inbox_shuts_is_never_stranded() {
        loom::model(|| {
            let (inbox, enqueuer) = open_with_enqueuer();
            let mut taken = 0;
            if inbox.set_open(false) {
                inbox.take(|_| taken += 1);
            }
            let left = enqueuer.join().unwrap();
            match left {
                // Nobody else will look: the shutting section must have taken it in.
                Left::Done => assert_eq!(taken, 1),
                // The enqueuer runs a section of its own, which takes in what is left.
                Left::Kick => {
                    inbox.take(|_| taken += 1);
                    assert_eq!(taken, 1);
                }
                Left::Refused => assert_eq!(taken, 0),
            }
        });
    }

    /// `complete` closes the inbox and takes in what is left: an item is either taken in
    /// then or refused, never left behind.
    #[test]
    fn an_item_left_as_the_inbox_closes_is_taken_in_or_refused() {
        loom::model(|| {
            let (inbox, enqueuer) = open_with_enqueuer();
            inbox.close();
            let mut taken = 0;
            inbox.take(|_| taken += 1);
            let left = enqueuer.join().unwrap();
            let mut after = 0;
            inbox.take(|_| after += 1);
            assert_eq!(after, 0, "an item was left after the close was taken in");
            match left {
                Left::Done | Left::Kick => assert_eq!(taken, 1),
                Left::Refused => assert_eq!(taken, 0),
            }
        });
    }
}
