//! `ephemeral publish`: one message on a topic.

use ephemeral_bus::Outgoing;

use super::{Target, flush, reached_text};
use crate::exit::Failure;

/// `ephemeral publish`.
pub(crate) async fn publish(
    target: &Target,
    topic: &str,
    payload: &[u8],
    headers: &[(String, String)],
) -> Result<(), Failure> {
    let mut out = Outgoing::new(topic)
        .map_err(ephemeral_bus::BusError::from)?
        .payload(payload);
    for (k, v) in headers {
        out = out.header(k, v.as_str());
    }
    let bus = target.open().await?;
    let reached = bus.publish_with(out).await?;
    flush(&bus).await;
    println!(
        "published {topic} on bus `{}` (reached {})",
        bus.name(),
        reached_text(reached)
    );
    Ok(())
}
