//! The pull loop of a keyed queue: partitions, one owner each, order kept across owners.
//!
//! * **Partitions.** The stream stores a job pushed under key `k` as
//!   `…p.<partition(k)>.<k>`; partition `n` has its own durable consumer `part-<n>` with a
//!   pinned priority group, so the server delivers a partition's jobs to one node at a time.
//! * **Who owns what.** Nodes announce themselves on `<prefix>.wq.<queue>.members` every
//!   third of `member_ttl`; each partition belongs to the live node that ranks highest for
//!   it (rendezvous hashing, so a node joining or leaving moves only its share). A node pulls
//!   only its partitions and keeps their pins: the server keeps a pin while the holder sends
//!   a request naming it at least once per `pin_timeout` (no request need stay open). It
//!   gives up a partition that moved away: it stops pulling it, hands back its jobs that
//!   have not started, and unpins it.
//! * **Order across owners.** When a node becomes a partition's owner (a new `Nats-Pin-Id`),
//!   it starts none of that partition's jobs until every job the server counts as pending
//!   for the partition is held by this node (the consumer's `num_ack_pending` ≤ what it
//!   holds of it): the old owner's unstarted jobs come back, its running ones are settled.
//!   Then it enqueues them in stream order. The server redelivers expired jobs in no
//!   particular order, so this is what makes job n + 1 of a key start after job n, also
//!   when the owner dies. Within an owner the keyed coordinator keeps the order.
//! * **Bounds.** As on a plain queue, a node asks for no more than it has room for
//!   (`max_concurrency + prefetch − held`, shared among its partitions, those that waited
//!   longest first). With no room it keeps each owned pin with a keep-alive every third of
//!   `pin_timeout`: a request naming the pin that cannot deliver (`max_bytes` 1, `no_wait`;
//!   the server answers 409 "Message Size Exceeds MaxBytes", or 408 when the partition is
//!   empty), checked against nats-server 2.15.1 to keep the pin for three timeouts and
//!   more without a job moving. It pulls again as soon as room frees. One exception, a
//!   partition it is catching up on: its old owner's jobs come back only to a pull, so
//!   with no room the node still pulls one job of it at a time, at most one every 100 ms,
//!   until it has caught up (not pulling at all stalled such a partition for good). A node
//!   that holds no pin of a partition and has no room leaves its jobs in the stream.
//!   (The node used to renew a standing one-job request per owned partition each time it
//!   was answered, whatever it held: with a blocked body, room for 2 and one partition it
//!   held all 30 jobs.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::StatusCode;
use futures::StreamExt;
use tokio::time::Instant;

use super::intake::{Loop, Target, changed, give_up_waiting};
use super::job::{Delivery, Job, Mark, ack_info};
use super::names::{GROUP, Names};
use super::orphans::{self, Watched};
use super::pull::{Puller, Status, route};
use super::state::Counters;

/// One partition as this node sees it.
struct Part {
    index: u16,
    puller: Puller,
    /// Assigned to this node by the member ranking.
    assigned: bool,
    /// Owner since a new pin; nothing starts until the old owner's jobs are accounted for.
    catching_up: bool,
    /// Jobs held back while catching up.
    buffer: Vec<(Arc<Delivery>, Job)>,
    next_poll: Instant,
    /// When the pin must next be renewed by a keep-alive, if the node has no room to pull.
    next_keep_alive: Instant,
    /// When a node with no room may next pull one job while catching up.
    next_catch_up_pull: Instant,
    /// When a request for jobs was last sent (the room goes to who waited longest).
    last_pull: Instant,
    /// Given up: unpin once no request of ours is open.
    releasing: bool,
}

/// FNV-1a: the same on every machine and Rust version (std's hasher promises neither).
fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The splitmix64 finalizer: FNV-1a barely moves the high bits for a change in the last
/// bytes (the partition number), so unmixed the ranking would give most partitions to one
/// node.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The member that ranks highest for `partition` (rendezvous hashing).
pub(crate) fn owner<'a>(
    members: impl IntoIterator<Item = &'a str>,
    partition: u16,
) -> Option<&'a str> {
    members.into_iter().max_by_key(|m| {
        let bytes = m.bytes().chain(partition.to_be_bytes());
        (mix(fnv(bytes)), *m)
    })
}

/// The live members (this node included).
///
/// Bounded by the nodes announced within one `member_ttl`: a node that stops announcing
/// (killed, so it never said goodbye) is forgotten once its last announce is older than
/// that, so node restarts over months do not pile up entries.
struct Members {
    me: String,
    seen: HashMap<String, Instant>,
    ttl: Duration,
}

impl Members {
    fn live(&mut self, now: Instant) -> Vec<&str> {
        let ttl = self.ttl;
        self.seen
            .retain(|_, at| now.saturating_duration_since(*at) < ttl);
        let mut live: Vec<&str> = self.seen.keys().map(String::as_str).collect();
        if !live.contains(&self.me.as_str()) {
            live.push(&self.me);
        }
        live
    }
}

pub(crate) async fn run_keyed<T: Target>(
    mut l: Loop<T>,
    partitions: u16,
    node: String,
    member_ttl: Duration,
    pin_timeout: Duration,
) {
    let core = Arc::clone(&l.core);
    let client = core.nats.client().clone();
    let inbox = client.new_inbox();
    let (Ok(mut replies), Ok(mut announces)) = (
        client.subscribe(format!("{inbox}.>")).await,
        client.subscribe(core.names.members()).await,
    ) else {
        tracing::warn!(queue = %core.names.queue, "cannot subscribe for pull replies; the intake stops");
        return;
    };
    let expiry = core
        .pull_expiry
        .min(pin_timeout / 3)
        .max(Duration::from_millis(100));
    // A request naming the pin renews it (see `Puller::keep_alive`): three chances per
    // `pin_timeout`, and the loop wakes at least every `tick_period` (≤ 250 ms) to send them.
    let keep_alive_every = pin_timeout / 3;
    let mut parts: Vec<Part> = (0..partitions)
        .map(|n| Part {
            index: n,
            puller: Puller::new(
                &core.names.stream,
                &Names::partition_consumer(n),
                &inbox,
                usize::from(n),
                Some(GROUP),
            ),
            assigned: false,
            catching_up: false,
            buffer: Vec::new(),
            next_poll: Instant::now(),
            next_keep_alive: Instant::now(),
            next_catch_up_pull: Instant::now(),
            last_pull: Instant::now(),
            releasing: false,
        })
        .collect();
    let watched: Vec<Watched> = (0..partitions)
        .map(|n| Watched {
            consumer: Names::partition_consumer(n),
            filter: core.names.partition_filter(n),
        })
        .collect();
    orphans::spawn(Arc::clone(&core), watched.clone());
    let mut members = Members {
        me: node.clone(),
        seen: HashMap::new(),
        ttl: member_ttl,
    };
    let announce_every = member_ttl / 3;
    let mut announce = tokio::time::interval(announce_every);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Listen for one announce period before claiming anything, so the first ranking
    // already knows the nodes that are up.
    let claim_from = Instant::now() + announce_every + Duration::from_millis(50);
    let mut watch = l
        .defer
        .as_ref()
        .map(|rule| core.sink.watch(&rule.watched()));
    let mut tick = tokio::time::interval(l.tick_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connects = core.nats.stats().connects;
    let mut pause_until = Instant::now();
    'pull: loop {
        // A closed coordinator takes no job: stop pulling (see `run_plain`).
        if l.stopped || l.target.is_closed() {
            break 'pull;
        }
        let now = Instant::now();
        if now >= claim_from {
            let live = members.live(now);
            for part in &mut parts {
                let mine = owner(live.iter().copied(), part.index) == Some(node.as_str());
                if part.assigned && !mine {
                    give_up(&l, part, expiry + Duration::from_millis(200));
                }
                part.assigned = mine;
            }
        }
        for part in parts
            .iter_mut()
            .filter(|p| p.releasing && p.puller.open() == 0)
        {
            part.releasing = false;
            let name = Names::partition_consumer(part.index);
            if let Err(e) = core.stream.unpin_consumer(&name, GROUP).await {
                tracing::debug!(queue = %core.names.queue, partition = part.index, error = %e, "unpin failed; the pin times out instead");
            }
        }
        for part in parts
            .iter_mut()
            .filter(|p| p.catching_up && p.next_poll <= now)
        {
            part.next_poll = now + Duration::from_millis(100);
            if caught_up(&l, part).await {
                flush(&mut l, part).await;
            }
        }
        if now >= pause_until && core.nats.is_connected() && !l.deferred() {
            let capacity = l.capacity();
            let outstanding: usize = parts.iter().map(|p| p.puller.outstanding()).sum();
            let room = capacity.saturating_sub(core.held_count() + outstanding);
            let mut needy: Vec<usize> = parts
                .iter()
                .enumerate()
                .filter(|(_, p)| p.assigned && !p.releasing && p.puller.open() == 0)
                .map(|(i, _)| i)
                .collect();
            // With less room than partitions, the room goes to those that waited longest,
            // so no partition starves behind the others.
            needy.sort_by_key(|&i| parts[i].last_pull);
            let (share, extra) = (room / needy.len().max(1), room % needy.len().max(1));
            for (k, i) in needy.into_iter().enumerate() {
                let part = &mut parts[i];
                let batch = share + usize::from(k < extra);
                let sent = if batch > 0 {
                    part.last_pull = now;
                    part.puller.request(&client, batch, expiry).await.map(|()| {
                        Counters::bump(&core.counters.pull_requests);
                    })
                } else if part.catching_up {
                    // No room, but the old owner's jobs come back only to a pull, and this
                    // partition starts nothing until they have: one job at a time, at most
                    // one pull per `CATCH_UP_PULL_EVERY` (a full node used to pull on without
                    // bound here; not pulling at all stalled the catch-up for good).
                    if now < part.next_catch_up_pull {
                        continue;
                    }
                    part.next_catch_up_pull = now + CATCH_UP_PULL_EVERY;
                    part.last_pull = now;
                    part.puller.request(&client, 1, expiry).await.map(|()| {
                        Counters::bump(&core.counters.pull_requests);
                    })
                } else {
                    // No room: keep the pin without taking a job. Without a pin there is
                    // nothing to keep; the partition's jobs wait in the stream for room.
                    if now < part.next_keep_alive || part.puller.pin.is_none() {
                        continue;
                    }
                    part.puller.keep_alive(&client, KEEP_ALIVE_EXPIRY).await
                };
                if sent.is_err() {
                    pause_until = Instant::now() + Duration::from_millis(100);
                    break;
                }
                part.next_keep_alive = now + keep_alive_every;
            }
        }
        tokio::select! {
            biased;
            _ = &mut l.stop => break 'pull,
            message = replies.next() => {
                let Some(message) = message else { break 'pull };
                if let Some(status) = message.status.filter(|s| *s != StatusCode::OK) {
                    let Some((index, request)) = route(&inbox, message.subject.as_str()) else { continue };
                    let Some(part) = parts.get_mut(index) else { continue };
                    match part.puller.on_status(request, status, message.description.as_deref(), message.headers.as_ref()) {
                        Status::PinLost => lose_pin(&l, part, None),
                        Status::Unavailable => pause_until = Instant::now() + Duration::from_millis(250),
                        Status::Broken(why) => {
                            tracing::warn!(queue = %core.names.queue, partition = part.index, %why, "pulling failed; retrying in 1 s");
                            pause_until = Instant::now() + Duration::from_secs(1);
                        }
                        Status::Ended | Status::Ignore => {}
                    }
                    continue;
                }
                let Some(info) = message.reply.as_deref().and_then(ack_info) else { continue };
                let Some(part) = partition_of(info.consumer).and_then(|n| parts.get_mut(usize::from(n))) else { continue };
                let (delivered, seq) = (info.delivered, info.stream_seq);
                core.counters.pull_answered(part.puller.on_job());
                let pin = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_PIN_ID))
                    .map(|v| v.as_str().to_owned());
                if let Some(pin) = pin
                    && part.puller.pin.as_deref() != Some(pin.as_str())
                {
                    // A new pin: this node owns the partition from now on.
                    part.puller.pin = Some(pin);
                    part.catching_up = true;
                    part.next_poll = Instant::now();
                }
                let delivery = core.receive(&message, delivered, seq, Some(part.index));
                let job = Job { delivery: Arc::clone(&delivery), payload: message.payload, headers: message.headers };
                if part.catching_up || !part.assigned || part.releasing {
                    if part.assigned && !part.releasing {
                        part.buffer.push((delivery, job));
                        // Maybe the last one missing: look again now rather than in up to
                        // 100 ms, so a node with no room stops pulling past it at once.
                        part.next_poll = Instant::now();
                    } else {
                        core.hand_back(&l.tx, delivery, Some(expiry + Duration::from_millis(200)));
                    }
                } else if !l.enqueue(delivery, job).await {
                    break 'pull;
                }
            }
            announce_message = announces.next() => {
                let Some(m) = announce_message else { break 'pull };
                let text = String::from_utf8_lossy(&m.payload);
                if let Some(gone) = text.strip_prefix('-') {
                    members.seen.remove(gone);
                } else if let Some(here) = text.strip_prefix('+') {
                    members.seen.insert(here.to_owned(), Instant::now());
                }
            }
            _ = announce.tick() => {
                let _ = client.publish(core.names.members(), format!("+{node}").into()).await;
            }
            () = core.room.notified() => {}
            () = changed(watch.as_mut()) => {}
            _ = tick.tick() => {
                let now_connects = core.nats.stats().connects;
                if now_connects != connects {
                    connects = now_connects;
                    for part in &mut parts {
                        part.puller.reset();
                    }
                    orphans::spawn(Arc::clone(&core), watched.clone());
                }
                for part in &mut parts {
                    part.puller.expire(Instant::now());
                }
                l.housekeeping();
            }
        }
    }
    let _ = client
        .publish(core.names.members(), format!("-{node}").into())
        .await;
    for part in &mut parts {
        for (delivery, _) in part.buffer.drain(..) {
            core.hand_back(&l.tx, delivery, None);
        }
    }
    l.hand_back_waiting();
    let until = Instant::now() + expiry + Duration::from_millis(200);
    while parts.iter().any(|p| p.puller.outstanding() > 0) {
        let Ok(Some(message)) = tokio::time::timeout_at(until, replies.next()).await else {
            break;
        };
        if let Some(status) = message.status.filter(|s| *s != StatusCode::OK) {
            if let Some((index, request)) = route(&inbox, message.subject.as_str())
                && let Some(part) = parts.get_mut(index)
            {
                let _ = part.puller.on_status(
                    request,
                    status,
                    message.description.as_deref(),
                    message.headers.as_ref(),
                );
            }
            continue;
        }
        let Some(info) = message.reply.as_deref().and_then(ack_info) else {
            continue;
        };
        let Some(part) = partition_of(info.consumer).and_then(|n| parts.get_mut(usize::from(n)))
        else {
            continue;
        };
        core.counters.pull_answered(part.puller.on_job());
        let delivery = core.receive(&message, info.delivered, info.stream_seq, Some(part.index));
        core.hand_back(&l.tx, delivery, None);
    }
    for part in &parts {
        if part.puller.pin.is_some() {
            let _ = core
                .stream
                .unpin_consumer(&Names::partition_consumer(part.index), GROUP)
                .await;
        }
    }
}

/// How often a node with no room may pull one job of a partition it is catching up on.
const CATCH_UP_PULL_EVERY: Duration = Duration::from_millis(100);

/// How long a keep-alive waits on the server when the partition has no job (with jobs
/// waiting it ends at once).
const KEEP_ALIVE_EXPIRY: Duration = Duration::from_millis(100);

/// The partition of a consumer name `part-<n>`.
fn partition_of(consumer: &str) -> Option<u16> {
    consumer.strip_prefix("part-")?.parse().ok()
}

/// Whether every job the server counts as pending for the partition is held here.
async fn caught_up<T: Target>(l: &Loop<T>, part: &Part) -> bool {
    let name = Names::partition_consumer(part.index);
    let Ok(info) = l.core.stream.consumer_info(&name).await else {
        return false;
    };
    let held = l
        .core
        .held
        .iter()
        .filter(|d| d.partition == Some(part.index) && !d.is_settling())
        .count();
    info.num_ack_pending <= held
}

/// Ends catching up: enqueues the held-back jobs in stream order.
async fn flush<T: Target>(l: &mut Loop<T>, part: &mut Part) {
    part.catching_up = false;
    let mut buffer = std::mem::take(&mut part.buffer);
    buffer.sort_by_key(|(d, _)| d.stream_seq);
    let mut jobs = buffer.into_iter();
    while let Some((delivery, job)) = jobs.next() {
        if !l.enqueue(delivery, job).await {
            // The coordinator closed: the rest go back too (dropped here, they would stay
            // held, kept alive and never settled).
            for (delivery, _) in jobs {
                l.core.hand_back(&l.tx, delivery, None);
            }
            return;
        }
    }
}

/// The partition's pin went to another node: hand back what has not started, after
/// `delay`.
fn lose_pin<T: Target>(l: &Loop<T>, part: &mut Part, delay: Option<Duration>) {
    part.catching_up = false;
    for (delivery, _) in part.buffer.drain(..) {
        l.core.hand_back(&l.tx, delivery, delay);
    }
    hand_back_partition(l, part.index, delay);
}

/// The ranking gave the partition to another node. What is handed back waits `delay` (past
/// this node's open requests, which still carry its pin) so it goes to the new owner.
fn give_up<T: Target>(l: &Loop<T>, part: &mut Part, delay: Duration) {
    lose_pin(l, part, Some(delay));
    part.puller.pin = None;
    part.releasing = true;
}

fn hand_back_partition<T: Target>(l: &Loop<T>, index: u16, delay: Option<Duration>) {
    let waiting: Vec<Arc<Delivery>> = l
        .core
        .held
        .iter()
        .filter(|d| d.partition == Some(index) && !d.is_started() && !d.is_settling())
        .map(|d| Arc::clone(d.value()))
        .collect();
    for delivery in waiting {
        give_up_waiting(&l.core, &l.target, &delivery, Mark::HandBack(delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node killed without its goodbye used to stay in the table for good (filtered out
    /// of the ranking, never removed): one entry per dead node, for the life of the intake.
    #[test]
    fn members_that_stopped_announcing_are_forgotten() {
        let start = Instant::now();
        let ttl = Duration::from_millis(1500);
        let mut members = Members {
            me: "me".to_owned(),
            seen: HashMap::new(),
            ttl,
        };
        for n in 0..100 {
            members.seen.insert(format!("killed-{n}"), start);
        }
        members.seen.insert("alive".to_owned(), start + ttl);
        let mut live = members.live(start + ttl + Duration::from_millis(1));
        live.sort_unstable();
        assert_eq!(live, ["alive", "me"]);
        assert_eq!(members.seen.len(), 1, "the killed nodes are forgotten");
    }

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let three = ["a", "b", "c"];
        let owners: Vec<&str> = (0..32).map(|p| owner(three, p).unwrap()).collect();
        for m in three {
            let n = owners.iter().filter(|o| **o == m).count();
            assert!((4..=20).contains(&n), "{m} owns {n} of 32");
        }
        // Without `c`, only c's partitions move.
        for p in 0..32 {
            let now = owner(["a", "b"], p).unwrap();
            if owners[usize::from(p)] != "c" {
                assert_eq!(now, owners[usize::from(p)]);
            }
        }
        assert_eq!(owner(std::iter::empty::<&str>(), 0), None);
    }
}
