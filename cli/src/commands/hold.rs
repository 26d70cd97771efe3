//! `ephemeral hold`: a condition held live, as a refreshed lease, until interrupted.

use std::time::Duration;

use ephemeral_bus::Bridged;

use super::{
    CLI_SEQ, Change, Outages, SignalArgs, Target, interrupted, note, reached_text, status,
};
use crate::exit::Failure;

/// The shortest lease `hold` uses, as `BridgeOptions::hold_lease` has it: refreshes go out
/// every third of a lease but at most every millisecond (and a lease travels in whole
/// milliseconds), so a shorter lease ran out between two refreshes, and `watch` showed the
/// live hold as `lapsed` and `held` again every 100 ms.
const MIN_LEASE: Duration = Duration::from_millis(3);

/// `ephemeral hold`: refreshes a hold lease until interrupted, then releases it. Without
/// `--lease`, the bridges' default on the transport: 1 s on a bus, 3 s over NATS; a shorter
/// lease than [`MIN_LEASE`] is raised to it (the status line shows the lease used).
pub(crate) async fn hold(
    target: &Target,
    signal: &SignalArgs,
    lease: Option<Duration>,
) -> Result<(), Failure> {
    let conn = target.connect().await?;
    let lease = lease.unwrap_or_else(|| conn.default_lease()).max(MIN_LEASE);
    // Each refresh carries a new refresh number (bridges only extend a mirror on a newer
    // one), so it is built afresh every time.
    let refresh = || signal.outgoing(Bridged::hold(CLI_SEQ, lease));
    let release = Bridged::Release { seq: CLI_SEQ }.outgoing(&signal.name)?;
    // Watched from before the first refresh: an outage from then on is said.
    let mut outages = Outages::of(&conn);
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
    // Over NATS a refresh during an outage is refused. The outage is said once, when it
    // begins and when it ends, not at every refresh; a refresh refused while connected
    // (another reason) is said once until one goes out again.
    let mut failing = false;
    let stop = interrupted();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            change = outages.next() => {
                say!("{}", note(match change {
                    Change::Lost => "lost the connection to NATS: reconnecting; refreshes \
                        cannot go out meanwhile, so bridged sinks drop the hold within a \
                        lease, and hold it again at the first refresh once back",
                    Change::Back => "reconnected to NATS: refreshing the hold again",
                }));
            }
            _ = tick.tick() => match conn.publish(refresh()?).await {
                Ok(_) => failing = false,
                Err(failure) => {
                    if !conn.is_offline() && !failing {
                        say!("{}", note(&format!(
                            "a refresh was not sent (retrying every {}): {failure}",
                            humantime::format_duration(lease / 3)
                        )));
                    }
                    failing = true;
                }
            },
        }
    }
    if let Err(failure) = conn.publish(release).await {
        // Not released: every bridged sink still drops the hold within a lease.
        let why = if conn.is_offline() {
            "not connected to NATS right now".to_owned()
        } else {
            failure.message
        };
        return Err(Failure::new(
            failure.code,
            format!(
                "{} was not released ({why}): bridged sinks drop it once its lease of {} \
                 runs out",
                signal.name,
                humantime::format_duration(lease)
            ),
        ));
    }
    conn.flush().await;
    status(&format!("released {}", signal.name));
    Ok(())
}
