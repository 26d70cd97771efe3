//! `ephemeral raise`: a signal for every bridged sink whose pattern matches.

use std::time::Duration;

use ephemeral_bus::Bridged;

use super::{CLI_SEQ, SINK_MAX_AGE, SignalArgs, Target, reached_text, status};
use crate::exit::Failure;

/// `ephemeral raise`.
pub(crate) async fn raise(
    target: &Target,
    signal: &SignalArgs,
    ttl: Option<Duration>,
) -> Result<(), Failure> {
    let mut out = signal.outgoing(Bridged::Signal { seq: CLI_SEQ })?;
    if let Some(ttl) = ttl {
        out = out.ttl(ttl);
        if ttl > SINK_MAX_AGE {
            say!(
                "note: a bridged sink keeps a signal at most its max age (60s by default), so \
                 --ttl {} is cut to that in each sink",
                humantime::format_duration(ttl)
            );
        }
    }
    let conn = target.connect().await?;
    let reached = conn.publish(out).await?;
    conn.flush().await;
    // A closed stdout (`| head -0`, a reader gone) is no failure: the signal was sent.
    status(&format!(
        "raised {} on {} ({})",
        signal.name,
        conn.destination(),
        reached_text(reached)
    ));
    Ok(())
}
