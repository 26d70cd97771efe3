//! `ephemeral hold`: a condition held live, as a refreshed lease, until interrupted.

use std::time::Duration;

use ephemeral_bus::Bridged;

use super::{CLI_SEQ, SignalArgs, Target, interrupted, reached_text, status};
use crate::exit::Failure;

/// `ephemeral hold`: refreshes a hold lease until interrupted, then releases it. Without
/// `--lease`, the bridges' default on the transport: 1 s on a bus, 3 s over NATS.
pub(crate) async fn hold(
    target: &Target,
    signal: &SignalArgs,
    lease: Option<Duration>,
) -> Result<(), Failure> {
    let conn = target.connect().await?;
    let lease = lease.unwrap_or_else(|| conn.default_lease());
    // Each refresh carries a new refresh number (bridges only extend a mirror on a newer
    // one), so it is built afresh every time.
    let refresh = || signal.outgoing(Bridged::hold(CLI_SEQ, lease));
    let release = Bridged::Release { seq: CLI_SEQ }.outgoing(&signal.name)?;
    let reached = conn.publish(refresh()?).await?;
    conn.flush().await;
    status(&format!(
        "holding {} on {} ({}); lease {}; Ctrl-C to release",
        signal.name,
        conn.destination(),
        reached_text(reached),
        humantime::format_duration(lease)
    ));
    let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(1)));
    tick.tick().await;
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                // Over NATS a refresh during an outage is refused: say so and carry on, the
                // next one goes out once the connection is back (the mirrors lapse meanwhile,
                // as the lease rule says).
                if let Err(failure) = conn.publish(refresh()?).await {
                    eprintln!("warning: a refresh was not sent: {failure}");
                }
            }
        }
    }
    conn.publish(release).await?;
    conn.flush().await;
    status(&format!("released {}", signal.name));
    Ok(())
}
