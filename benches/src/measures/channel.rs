//! `Channel<T>` fan-out against `tokio::sync::broadcast`.
//!
//! Both sides share the harness and payload of the sink's fan-out measurement: a real
//! `Signal` cloned per message, batches of 256, at most two batches in flight.

use std::hint::black_box;

use ephemeral::channel::Subscriber;
use ephemeral::{Buffer, Channel, ChannelOptions, Lagged, Overflow, Signal, SignalSink};
use tokio::runtime::Runtime;

use crate::baselines::fanout::{self, FanoutReceiver, Received};

use super::sink::broadcast_turn;
use super::{Config, measured, runtime};
use crate::report::Measurement;
use crate::turns::alternate;

/// Our side: `messages` clones of a `Signal` sent on a `Channel<Signal>` with `Overflow::Wait`
/// and a 1024-item buffer to 4 subscribers, through the same harness as the baseline
/// ([`fanout::run`] with batches of 256, each send awaited). Returns messages per second and
/// the number lost (which must be 0); `Option` for the harness's shape, always `Some`.
pub fn ours_fanout4(rt: &Runtime, messages: u64) -> Option<(f64, u64)> {
    const RECEIVERS: usize = 4;
    let payload = SignalSink::default()
        .raise("bench.fanout")
        .expect("a valid name");
    let options = ChannelOptions::default()
        .buffer(Buffer::bounded(1024).expect("not zero"))
        .overflow(Overflow::Wait);
    let channel: Channel<Signal> = Channel::with_options(options).expect("valid options");
    let subs: Vec<ChannelReceiver> = (0..RECEIVERS)
        .map(|_| ChannelReceiver(channel.subscribe()))
        .collect();
    let out = rt.block_on(fanout::run(subs, messages, 256, async || {
        let _ = channel.send(payload.clone()).await;
    }));
    let lost = out.lagged + (messages * RECEIVERS as u64 - out.delivered - out.lagged);
    Some((messages as f64 / out.elapsed.as_secs_f64(), lost))
}

/// Runs our channel fan-out of `messages` messages once and prints the rate: ours alone, for
/// a profiler.
pub fn fanout_loop(messages: u64) {
    if let Some((rate, lost)) = ours_fanout4(&runtime(), messages) {
        println!("channel-fanout-loop {rate:.0} msg/s, {lost} lost");
    }
}

/// A channel subscriber driven by the fan-out harness.
struct ChannelReceiver(Subscriber<Signal>);

impl FanoutReceiver for ChannelReceiver {
    async fn next(&mut self) -> Received {
        match self.0.recv().await {
            Some(Ok(item)) => {
                black_box(item);
                Received::Item
            }
            Some(Err(Lagged(n))) => Received::Lagged(n),
            None => Received::Closed,
        }
    }
}

/// `Channel<T>` to 4 subscribers with `Wait`, versus `broadcast` with the same payload;
/// messages per second.
pub fn fanout4_vs_broadcast(cfg: &Config) -> Measurement {
    let rt = runtime();
    let messages = cfg.pick(500_000, 100_000) as u64;
    let mut lost = (0u64, 0u64);
    let turns = alternate(
        cfg.turns(),
        || {
            let (rate, l) = ours_fanout4(&rt, messages)?;
            lost.0 += l;
            Some(rate)
        },
        || {
            let (rate, l) = broadcast_turn(&rt, messages);
            lost.1 += l;
            rate
        },
    );
    let mut m = measured(
        "channel_fanout4_vs_broadcast",
        "msg/s",
        "tokio::sync::broadcast(1024), 4 receivers, lossless, Signal payload",
        &turns,
        true,
        0.8,
    );
    if lost != (0, 0) {
        m.note = Some(format!("messages lost (ours, baseline): {lost:?}"));
    }
    m
}
