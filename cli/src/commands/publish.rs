//! `ephemeral publish`: one message on a topic.

use ephemeral_bus::{BusError, Outgoing};

use super::{Target, reached_text, status};
use crate::exit::Failure;

/// `ephemeral publish`.
pub(crate) async fn publish(
    target: &Target,
    topic: &str,
    payload: &[u8],
    headers: &[(String, String)],
) -> Result<(), Failure> {
    let mut out = Outgoing::new(topic)
        .map_err(BusError::from)?
        .payload(payload);
    for (k, v) in headers {
        out = out.header(k, v.as_str());
    }
    let conn = target.connect().await?;
    let reached = conn.publish(out).await?;
    conn.flush().await;
    // A closed stdout (`| head -0`, a reader gone) is no failure: the message was sent.
    status(&format!(
        "published {topic} on {} ({})",
        conn.destination(),
        reached_text(reached)
    ));
    Ok(())
}
