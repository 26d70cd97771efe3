//! `Channel<T>` fan-out against `tokio::sync::broadcast`.
//!
//! The baseline is complete (it shares the harness and payload of the sink's fan-out
//! measurement). Our side is [`ours_fanout4`], which returns `None` until `Channel<T>` is on
//! main.

use tokio::runtime::Runtime;

use super::sink::broadcast_turn;
use super::{Config, measured, runtime};
use crate::report::Measurement;
use crate::turns::alternate;

// ---------------------------------------------------------------------------------------------
// Ours: fill this in when `Channel<T>` lands.
// ---------------------------------------------------------------------------------------------

/// Our side: `messages` clones of a `Signal` sent on a `Channel<Signal>` with `Overflow::Wait`
/// and a 1024-item buffer to 4 subscribers, through the same harness as the baseline
/// ([`crate::baselines::fanout::run`] with batches of 256; implement
/// [`FanoutReceiver`](crate::baselines::fanout::FanoutReceiver) for the channel's subscriber and
/// pass an `async ||` closure that awaits the send). Returns messages per second and the number
/// lost (which must be 0), or `None` while `Channel<T>` does not exist.
pub fn ours_fanout4(rt: &Runtime, messages: u64) -> Option<(f64, u64)> {
    let _ = (rt, messages);
    None
}

// ---------------------------------------------------------------------------------------------

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
    if m.ours.is_none() {
        m.note = Some("ours: Channel<T> is not on main yet (fill in measures/channel.rs)".into());
    } else if lost != (0, 0) {
        m.note = Some(format!("messages lost (ours, baseline): {lost:?}"));
    }
    m
}
