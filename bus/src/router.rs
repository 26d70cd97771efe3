//! The local side of one bus handle: its subscriptions, servers, observers and waiting
//! requests, and delivery to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use ephemeral::Name;
use tokio::time::Instant;

use crate::frame::{Announced, Interest};
use crate::replies::Replies;
use crate::subscription::{LocalSub, TryPush};
use crate::sync::Mutex;
use crate::topics::Topics;
use crate::{Message, MessageKind};

/// The subscriptions of this peer. Read on every delivery (lock-free snapshot), written on
/// subscribe and unsubscribe (rare), hence a whole-table swap.
pub(crate) struct Locals {
    /// This peer's id: requests and replies addressed to it are delivered here.
    pub(crate) me: u64,
    subs: ArcSwap<Vec<Arc<LocalSub>>>,
    write: Mutex<()>,
    pub(crate) topics: Topics,
    pub(crate) replies: Replies,
}

/// The id of the next message this process sends, whichever of its bus handles sends it:
/// ids are per origin ([`process_origin`](crate::process_origin), one per process), so
/// (origin, id) names one message. (Each handle used to count from 1, so two handles of
/// one process gave two messages the same (origin, id).)
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A published message that [`Locals::dispatch_now`] could not deliver without waiting: the
/// subscriptions from the full one on still need it.
pub(crate) struct Blocked {
    message: Message,
    subs: Arc<Vec<Arc<LocalSub>>>,
    /// The index in `subs` of the full subscription.
    from: usize,
}

/// What became of a request or reply that arrived from another peer.
pub(crate) enum Routed {
    /// Handed to its addressee here (or only copied to observers: it was addressed elsewhere).
    Done,
    /// A request addressed to this peer, but nothing here serves its topic (the server
    /// stopped after the requester chose it): the requester must be told.
    NoServer,
    /// An item of a server's stream that nobody here waits for (the request took its first
    /// item as its answer, timed out or was dropped): the server must be told to stop, or
    /// an endless stream would go on for ever.
    Unwanted,
}

impl Locals {
    pub(crate) fn new(me: u64) -> Self {
        Self {
            me,
            subs: ArcSwap::default(),
            write: Mutex::new(()),
            topics: Topics::default(),
            replies: Replies::default(),
        }
    }

    /// The id for the next message this peer sends (see [`NEXT_ID`]).
    pub(crate) fn next_id(&self) -> u64 {
        // Relaxed: ids only need to be distinct and increasing per thread of publishing; the
        // per-publisher order on the wire comes from the connection, not from this counter.
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn add(&self, sub: Arc<LocalSub>) {
        let _guard = self.write.lock();
        let mut next = Vec::clone(&self.subs.load());
        next.push(sub);
        self.subs.store(Arc::new(next));
    }

    pub(crate) fn remove(&self, id: u64) {
        let _guard = self.write.lock();
        let mut next = Vec::clone(&self.subs.load());
        next.retain(|s| s.id != id);
        self.subs.store(Arc::new(next));
    }

    /// One entry per subscription, as announced to the other peers.
    pub(crate) fn patterns(&self) -> Vec<Announced> {
        self.subs
            .load()
            .iter()
            .map(|s| (s.interest, s.pattern.as_str().to_owned()))
            .collect()
    }

    pub(crate) fn all(&self) -> Arc<Vec<Arc<LocalSub>>> {
        self.subs.load_full()
    }

    /// Delivers a published `message` to every matching subscription; returns how many
    /// buffered it.
    pub(crate) async fn dispatch(&self, message: &Message, deadline: Option<Instant>) -> usize {
        let subs = self.subs.load_full();
        let mut reached = 0;
        for sub in subs
            .iter()
            .filter(|s| s.interest == Interest::Messages && s.pattern.matches(&message.topic))
        {
            if sub.push(message.clone(), deadline).await {
                reached += 1;
            }
        }
        reached
    }

    /// Delivers a published message that arrived from another peer to the matching
    /// subscriptions (the last one without a clone: the common case is one), without
    /// waiting: `Err` when a `Wait` subscription is full, with what is left to deliver by
    /// waiting ([`dispatch_blocked`](Self::dispatch_blocked)). Kept apart from the waiting
    /// path so that the reader's common case builds no future per message.
    pub(crate) fn dispatch_now(&self, message: Message) -> Result<(), Box<Blocked>> {
        let subs = self.subs.load();
        let wanted = |s: &LocalSub, topic: &Name| {
            s.interest == Interest::Messages && s.pattern.matches(topic)
        };
        let mut rest = subs.iter().enumerate();
        let Some((mut at, mut current)) = rest.find(|(_, s)| wanted(s, &message.topic)) else {
            return Ok(());
        };
        loop {
            match rest.find(|(_, s)| wanted(s, &message.topic)) {
                Some((next_at, next)) => {
                    if let TryPush::Full(_) = current.try_push(message.clone()) {
                        break;
                    }
                    (at, current) = (next_at, next);
                }
                None => match current.try_push(message) {
                    TryPush::Done => return Ok(()),
                    TryPush::Full(message) => {
                        return Err(Box::new(Blocked {
                            message,
                            subs: Arc::clone(&*subs),
                            from: at,
                        }));
                    }
                },
            }
        }
        Err(Box::new(Blocked {
            message,
            subs: Arc::clone(&*subs),
            from: at,
        }))
    }

    /// Finishes a [`dispatch_now`](Self::dispatch_now) that found a full subscription: waits
    /// for room in it (forever: a peer connection's reader, whose waiting pushes back on the
    /// publisher through the socket), then delivers to the matching ones after it.
    pub(crate) async fn dispatch_blocked(&self, blocked: Box<Blocked>) {
        let Blocked {
            message,
            subs,
            from,
        } = *blocked;
        let mut matching = subs[from..]
            .iter()
            .filter(|s| s.interest == Interest::Messages && s.pattern.matches(&message.topic));
        let Some(mut current) = matching.next() else {
            return;
        };
        for next in matching {
            current.push(message.clone(), None).await;
            current = next;
        }
        current.push(message, None).await;
    }

    /// Delivers one of the bus's own broadcasts to the matching internal subscriptions
    /// here (never to subscriptions or observers); returns how many buffered it.
    pub(crate) async fn broadcast(&self, message: &Message, deadline: Option<Instant>) -> usize {
        let subs = self.subs.load_full();
        let mut reached = 0;
        for sub in subs
            .iter()
            .filter(|s| s.interest == Interest::Internal && s.pattern.matches(&message.topic))
        {
            if sub.push(message.clone(), deadline).await {
                reached += 1;
            }
        }
        reached
    }

    /// Delivers a request or reply: to its addressee when that is this peer (the server of
    /// the request's topic, or the request waiting for the reply), and a copy to each
    /// matching observer here. `deadline` bounds the wait for a full addressee.
    pub(crate) async fn route(&self, message: &Message, deadline: Option<Instant>) -> Routed {
        self.copy_to_observers(message);
        if message.to() != Some(self.me) {
            return Routed::Done;
        }
        if let Some(status) = message.reply_status() {
            let taken = self.replies.deliver(message.clone(), deadline).await;
            if !taken && !status.is_final() {
                return Routed::Unwanted;
            }
            return Routed::Done;
        }
        match self.server(&message.topic) {
            Some(server) if server.push(message.clone(), deadline).await => Routed::Done,
            // A cancel for a server that stopped has nothing left to stop.
            _ if message.kind() == MessageKind::Cancel => Routed::Done,
            _ => Routed::NoServer,
        }
    }

    /// Observers never hold traffic back: they are `DropOldest`, so a push never waits.
    fn copy_to_observers(&self, message: &Message) {
        for sub in self
            .subs
            .load()
            .iter()
            .filter(|s| s.interest == Interest::Observe && s.pattern.matches(&message.topic))
        {
            sub.push_now(message.clone());
        }
    }

    /// The local server of exactly `topic`, if one is serving.
    pub(crate) fn server(&self, topic: &str) -> Option<Arc<LocalSub>> {
        self.subs
            .load()
            .iter()
            .find(|s| s.interest == Interest::Serve && s.pattern.as_str() == topic)
            .filter(|s| !s.is_closed())
            .cloned()
    }

    /// Whether a subscription here matches the published `topic`.
    pub(crate) fn any_matching(&self, topic: &str) -> bool {
        self.subs
            .load()
            .iter()
            .any(|s| s.interest == Interest::Messages && s.pattern.matches(topic))
    }

    pub(crate) fn lag(&self, topic: &Name, count: u64) {
        for sub in self
            .subs
            .load()
            .iter()
            .filter(|s| s.interest == Interest::Messages && s.pattern.matches(topic))
        {
            sub.add_lag(count);
        }
    }

    pub(crate) fn close_all(&self) {
        for sub in self.subs.load().iter() {
            sub.close();
        }
    }
}
