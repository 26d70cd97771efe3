//! Property test: one subscriber against a simple model of the buffer, overflow, lag and
//! expiry rules, for random sequences of sends, reads and clock advances.

use std::collections::VecDeque;
use std::time::Duration;

use ephemeral::{Buffer, Channel, ChannelOptions, Lagged, Overflow};
use futures::FutureExt;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Send,
    Recv,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Send),
        3 => Just(Op::Recv),
        1 => (0u64..300).prop_map(Op::Advance),
    ]
}

/// The rules, written the slow and obvious way. A lossless subscriber takes everything
/// buffered at once into its own batch; those messages keep counting against the bound
/// until read. A full buffer purges expired messages from its front, which is the oldest
/// message the subscriber has not read: so only while the subscriber holds no batch (a
/// message it took is skipped, and its room given back, when the subscriber reads it).
#[derive(Default)]
struct Model {
    cap: usize,
    drop_oldest: bool,
    ttl: Option<u64>,
    now: u64,
    ring: VecDeque<(u32, Option<u64>)>,
    batch: VecDeque<(u32, Option<u64>)>,
    unreported: u64,
    sent: u64,
    delivered: u64,
    dropped: u64,
    expired: u64,
}

impl Model {
    fn is_expired(&self, at: Option<u64>) -> bool {
        at.is_some_and(|at| self.now >= at)
    }

    fn send(&mut self, v: u32) -> bool {
        if self.ring.len() + self.batch.len() >= self.cap && self.batch.is_empty() {
            while self.ring.front().is_some_and(|e| self.is_expired(e.1)) {
                self.ring.pop_front();
                self.expired += 1;
            }
        }
        if self.ring.len() + self.batch.len() >= self.cap {
            if !self.drop_oldest {
                return false;
            }
            self.ring.pop_front();
            self.dropped += 1;
            self.unreported += 1;
        }
        self.ring.push_back((v, self.ttl.map(|t| self.now + t)));
        self.sent += 1;
        true
    }

    fn recv(&mut self) -> Option<Result<u32, Lagged>> {
        if self.drop_oldest {
            if self.unreported > 0 {
                return Some(Err(Lagged(std::mem::take(&mut self.unreported))));
            }
            while let Some((v, at)) = self.ring.pop_front() {
                if self.is_expired(at) {
                    self.expired += 1;
                    continue;
                }
                self.delivered += 1;
                return Some(Ok(v));
            }
            return None;
        }
        loop {
            while let Some((v, at)) = self.batch.pop_front() {
                if self.is_expired(at) {
                    self.expired += 1;
                    continue;
                }
                self.delivered += 1;
                return Some(Ok(v));
            }
            if self.ring.is_empty() {
                return None;
            }
            std::mem::swap(&mut self.ring, &mut self.batch);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn one_subscriber_follows_the_model(
        cap in 1usize..7,
        drop_oldest in any::<bool>(),
        ttl in prop::option::of(50u64..400),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut options = ChannelOptions::default()
                .buffer(Buffer::bounded(cap).unwrap())
                .overflow(if drop_oldest { Overflow::DropOldest } else { Overflow::Wait });
            if let Some(ttl) = ttl {
                options = options.expire_after(Duration::from_millis(ttl));
            }
            let channel = Channel::<u32>::with_options(options).unwrap();
            let mut sub = channel.subscribe();
            let mut model = Model { cap, drop_oldest, ttl, ..Model::default() };
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Send => {
                        // A send that would wait is not accepted; dropping it cancels it.
                        let accepted = channel.send(next).now_or_never().is_some();
                        prop_assert_eq!(accepted, model.send(next), "send of {}", next);
                        next += 1;
                    }
                    Op::Recv => prop_assert_eq!(sub.try_recv(), model.recv()),
                    Op::Advance(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now += ms;
                    }
                }
            }
            let s = sub.stats();
            prop_assert_eq!(
                (s.sent, s.delivered, s.dropped, s.expired, s.buffered),
                (
                    model.sent,
                    model.delivered,
                    model.dropped,
                    model.expired,
                    model.ring.len() + model.batch.len()
                )
            );
            prop_assert_eq!(s.sent, s.delivered + s.dropped + s.expired + s.buffered as u64);
            Ok(())
        })?;
    }
}
