//! Orphans: jobs the server counts as acknowledged but keeps in the work stream.
//!
//! Seen with nats-server 2.15.1 when it restarts under load (2 probe runs in 40, one to
//! three jobs each): an ack that reached a consumer while the server shut down was recorded
//! and answered (the consumer's ack floor passed the job), but the work stream's removal of
//! the job was not. After the restart the job stays in the stream for ever: no consumer
//! delivers it again, and [`QueueStats::messages`](super::QueueStats::messages) never gets
//! back to 0 (`messages: 1, queued: 0, held: 0`).
//!
//! So whenever an intake starts, and after every reconnect, it looks for jobs at or below
//! their consumer's ack floor that are still in the stream, and moves each one seen in two
//! looks a round apart (an ack being applied right now is not an orphan) to the dead-letter
//! stream with the reason [`ORPHAN_REASON`]: the server says it was acknowledged (it most
//! likely ran), but cannot say more, so it is neither dropped silently nor run again. The
//! rounds go on, every `ack_wait`, until each consumer's ack floor has passed what it had
//! delivered at the first look (the jobs delivered before the restart are all settled).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::janitor::move_to_dead;
use super::state::{Core, Counters};

/// The `Ephemeral-Dead-Reason` of a job moved to the dead letters as an orphan.
pub const ORPHAN_REASON: &str = "orphaned";

const ORPHAN_ERROR: &str = "acknowledged by its consumer but kept in the work stream by the \
     server (seen after a server restart): it most likely ran; check before pushing it again";

/// At most this many rounds per sweep: a partition whose backlog keeps its ack floor below
/// the restart for longer is looked at again at the next reconnect or intake start.
const ROUNDS: u32 = 8;

/// One consumer to look at: its name and the subjects it reads.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    pub(crate) consumer: String,
    pub(crate) filter: String,
}

/// Sweeps the consumers' orphans in the background (bounded: [`ROUNDS`] rounds).
pub(crate) fn spawn(core: Arc<Core>, consumers: Vec<Watched>) {
    tokio::spawn(async move { sweep(&core, &consumers).await });
}

async fn sweep(core: &Core, consumers: &[Watched]) {
    // The first look waits a moment: right after a reconnect the server is still loading.
    let mut pause = Duration::from_secs(1);
    let mut reach: Vec<Option<u64>> = vec![None; consumers.len()];
    let mut seen: HashSet<u64> = HashSet::new();
    for _ in 0..ROUNDS {
        tokio::time::sleep(pause).await;
        pause = core.ack_wait;
        let mut now_seen = HashSet::new();
        let mut settled = true;
        for (watched, reach) in consumers.iter().zip(reach.iter_mut()) {
            let Ok(info) = core.stream.consumer_info(&watched.consumer).await else {
                settled = false;
                continue;
            };
            let floor = info.ack_floor.stream_sequence;
            let delivered = *reach.get_or_insert(info.delivered.stream_sequence);
            settled &= floor >= delivered;
            let mut from = 1;
            while from <= floor {
                let found = core
                    .stream
                    .raw_message_builder()
                    .sequence(from)
                    .next_by_subject(watched.filter.clone())
                    .send()
                    .await;
                let Ok(message) = found else { break };
                if message.sequence > floor {
                    break;
                }
                let seq = message.sequence;
                now_seen.insert(seq);
                if seen.contains(&seq) {
                    dead_letter(core, message).await;
                }
                from = seq + 1;
            }
        }
        settled &= now_seen.iter().all(|seq| seen.contains(seq));
        seen = now_seen;
        if settled {
            return;
        }
    }
}

async fn dead_letter(core: &Core, message: async_nats::jetstream::message::StreamMessage) {
    let seq = message.sequence;
    tracing::warn!(
        queue = %core.names.queue,
        seq,
        "a job the server counts as acknowledged was left in the work stream; moved to the dead letters"
    );
    if move_to_dead(core, &message, 0, ORPHAN_REASON, ORPHAN_ERROR).await {
        Counters::bump(&core.counters.orphaned);
    }
}
