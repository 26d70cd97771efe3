//! `ephemeral hold`: a condition held live, as a refreshed lease, until interrupted.

use std::time::Duration;

use ephemeral_bus::Bridged;

use super::{CLI_SEQ, SignalArgs, Target, flush, interrupted, reached_text, status};
use crate::exit::Failure;

/// `ephemeral hold`: refreshes a hold lease until interrupted, then releases it.
pub(crate) async fn hold(
    target: &Target,
    signal: &SignalArgs,
    lease: Duration,
) -> Result<(), Failure> {
    // Each refresh carries a new refresh number (bridges only extend a mirror on a newer
    // one), so it is built afresh every time.
    let refresh = || signal.outgoing(Bridged::hold(CLI_SEQ, lease));
    let release = Bridged::Release { seq: CLI_SEQ }.outgoing(&signal.name)?;
    let bus = target.open().await?;
    let reached = bus.publish_with(refresh()?).await?;
    flush(&bus).await;
    status(&format!(
        "holding {} on bus `{}` (reached {}); Ctrl-C to release",
        signal.name,
        bus.name(),
        reached_text(reached)
    ));
    let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(1)));
    tick.tick().await;
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                bus.publish_with(refresh()?).await?;
            }
        }
    }
    bus.publish_with(release).await?;
    flush(&bus).await;
    status(&format!("released {}", signal.name));
    Ok(())
}
