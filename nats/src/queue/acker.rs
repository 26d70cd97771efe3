//! The acker: one task per intake that settles jobs with the server and keeps held jobs
//! alive.
//!
//! * Settling: `+ACK` (confirmed: a request the server answers, retried, and checked
//!   against the stream when no answer comes), `-NAK` with a delay, `+TERM`, or a dead
//!   letter (`DLQ` publish, its PubAck, then `+TERM`). A failure ack (`-NAK`, `+TERM`, dead
//!   letter) is only ever sent while the lease holds: a late one would land on whichever
//!   node has the job now.
//! * Keeping alive: every held job (waiting or running) gets a confirmed `+WPI` once a
//!   third of `ack_wait` has passed since its last renewal; an answer renews the lease from
//!   the moment the ping was sent. A job whose lease runs out is counted, reported as
//!   `nats.lease.lost`, and from then on only a success ack is sent for it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::dead::headers as dead_headers;
use super::job::Delivery;
use super::options::AckMode;
use super::settle::{Action, Outcome};
use super::state::{Core, Counters, Settle};

/// Runs until the coordinator and the intake are gone and nothing is held.
pub(crate) async fn run(core: Arc<Core>, mut orders: mpsc::UnboundedReceiver<Settle>) {
    let mut work: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let period = (core.ack_wait / 6).max(Duration::from_millis(20));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        if !open && work.is_empty() && core.held.is_empty() {
            return;
        }
        tokio::select! {
            order = orders.recv(), if open => match order {
                Some(Settle { delivery, action }) => {
                    work.push(Box::pin(execute(Arc::clone(&core), delivery, action)));
                }
                None => open = false,
            },
            Some(()) = work.next(), if !work.is_empty() => {}
            _ = tick.tick() => keep_alive(&core, &mut work),
        }
    }
}

/// Pings what is due and reports lost leases.
fn keep_alive(core: &Arc<Core>, work: &mut FuturesUnordered<BoxFuture<'static, ()>>) {
    let now = Instant::now();
    let every = core.ack_wait / 3;
    let due: Vec<Arc<Delivery>> = core
        .held
        .iter()
        .filter(|d| !d.is_settling())
        .map(|d| Arc::clone(d.value()))
        .collect();
    for delivery in due {
        let ping = delivery.with_lease(|lease| {
            if now >= lease.deadline {
                if lease.lost {
                    return None;
                }
                lease.lost = true;
                return Some(false);
            }
            if !lease.pinging && now.saturating_duration_since(lease.renewed) >= every {
                lease.pinging = true;
                return Some(true);
            }
            None
        });
        match ping {
            Some(true) => work.push(Box::pin(ping_one(Arc::clone(core), delivery))),
            Some(false) => core.lease_lost(&delivery),
            None => {}
        }
    }
}

/// The timeout of one confirmed ack, ping or term.
fn request_timeout(core: &Core) -> Duration {
    (core.ack_wait / 3).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

async fn confirm(core: &Core, delivery: &Delivery, body: &'static [u8]) -> bool {
    let request = Request::new()
        .payload(Bytes::from_static(body))
        .timeout(Some(request_timeout(core)));
    core.nats
        .client()
        .send_request(delivery.reply.clone(), request)
        .await
        .is_ok()
}

async fn ping_one(core: Arc<Core>, delivery: Arc<Delivery>) {
    let sent = Instant::now();
    let ok = !delivery.is_settling() && confirm(&core, &delivery, b"+WPI").await;
    delivery.with_lease(|lease| {
        if ok {
            lease.renew(sent, core.lease_from(sent));
        } else {
            lease.pinging = false;
        }
    });
    if ok {
        Counters::bump(&core.counters.pings);
    }
}

/// Whether the job is gone from the work stream (acknowledged: a work queue keeps only
/// what is not). `None` when the server could not tell.
async fn gone(core: &Core, seq: u64) -> Option<bool> {
    match core.stream.get_raw_message(seq).await {
        Ok(_) => Some(false),
        Err(e) => super::error::no_message(&e).then_some(true),
    }
}

async fn execute(core: Arc<Core>, delivery: Arc<Delivery>, action: Action) {
    let failure = !matches!(action, Action::Ack | Action::Abandon);
    let action = if failure && !delivery.lease_held() {
        Action::Abandon
    } else {
        action
    };
    let outcome = match action {
        Action::Ack => ack(&core, &delivery).await,
        Action::Nak(delay) => {
            // A longer delay would overflow the server's nanoseconds and come back at once.
            let delay = delay.map(crate::durations::jetstream_duration);
            let kind = async_nats::jetstream::AckKind::Nak(delay);
            let _ = core
                .nats
                .client()
                .publish(delivery.reply.clone(), Bytes::from(kind))
                .await;
            Outcome::Nacked(delay)
        }
        Action::Term => {
            if term(&core, &delivery).await {
                Outcome::Terminated
            } else {
                Outcome::Abandoned
            }
        }
        Action::Dead { reason, error } => dead_letter(&core, &delivery, reason, &error).await,
        Action::Abandon => Outcome::Abandoned,
    };
    core.finish(&delivery, outcome);
}

/// A confirmed `+TERM`, retried while the lease holds.
async fn term(core: &Core, delivery: &Delivery) -> bool {
    while delivery.lease_held() {
        if confirm(core, delivery, b"+TERM").await {
            return true;
        }
        if gone(core, delivery.stream_seq).await == Some(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn ack(core: &Core, delivery: &Delivery) -> Outcome {
    if core.ack_mode == AckMode::Fire {
        let _ = core
            .nats
            .client()
            .publish(delivery.reply.clone(), Bytes::from_static(b"+ACK"))
            .await;
        return Outcome::Acked;
    }
    // A success ack may be retried past the lease: acking a job that completed is right
    // even if the server has given it to someone else meanwhile.
    let give_up = Instant::now() + core.ack_wait * 2;
    let mut pause = Duration::from_millis(50);
    loop {
        if confirm(core, delivery, b"+ACK").await {
            return Outcome::Acked;
        }
        // No answer: the ack, or its answer, may have been lost in a reconnect. A job that
        // is gone from the stream was acknowledged; while the lease holds, nobody else
        // could have done it.
        if delivery.lease_held() && gone(core, delivery.stream_seq).await == Some(true) {
            return Outcome::Acked;
        }
        if Instant::now() >= give_up {
            tracing::warn!(
                queue = %core.names.queue,
                job = %delivery.id,
                "the ack of a completed job was never confirmed; it may run again"
            );
            return Outcome::AckUnconfirmed;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Publishes the job to the dead-letter stream (its id `<stream>:<seq>`, so the janitor's
/// copy of the same job is a duplicate), then terminates it.
async fn dead_letter(core: &Core, delivery: &Delivery, reason: &str, error: &str) -> Outcome {
    let original = match core.stream.get_raw_message(delivery.stream_seq).await {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(
                queue = %core.names.queue,
                job = %delivery.id,
                error = %e,
                "cannot read a job to dead-letter it; it is delivered again after ack_wait"
            );
            return Outcome::Abandoned;
        }
    };
    let headers = dead_headers(
        original.headers.clone(),
        &core.names.stream,
        delivery.stream_seq,
        original.subject.as_str(),
        delivery.delivered,
        reason,
        error,
    );
    if !publish_dead(core, headers, original.payload.clone()).await {
        return Outcome::Abandoned;
    }
    if term(core, delivery).await {
        Outcome::DeadLettered
    } else {
        Outcome::Abandoned
    }
}

/// Publishes a dead letter and waits for its PubAck (a few tries).
pub(crate) async fn publish_dead(core: &Core, headers: HeaderMap, payload: Bytes) -> bool {
    for attempt in 0..3 {
        let publish = Publish::build()
            .headers(headers.clone())
            .payload(payload.clone());
        let sent = core
            .nats
            .jetstream()
            .send_publish(core.names.dead(), publish)
            .await;
        if let Ok(ack) = sent
            && ack.await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    false
}
