//! `ephemeral request`: one server's reply, or every reply of a stream.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;

use super::{Conn, Target, bus_only};
use crate::exit::Failure;

/// `ephemeral request`: prints the reply payload (each reply's, with `--stream`).
pub(crate) async fn request(
    target: &Target,
    topic: &str,
    payload: &[u8],
    timeout: Duration,
    stream: bool,
) -> Result<(), Failure> {
    if stream && matches!(target, Target::Nats { .. }) {
        return Err(bus_only(
            "request --stream",
            "streaming servers (Bus::serve_stream) exist on the bus only; send a plain request",
        ));
    }
    match target.connect().await? {
        Conn::Nats(nats) => {
            let reply = nats.request(topic, payload, timeout).await?;
            print_reply(reply.payload())
        }
        Conn::Bus(bus) => {
            if !stream {
                let reply = bus.request(topic, payload, timeout).await?;
                return print_reply(reply.payload());
            }
            let mut replies = bus.request_stream(topic, payload, timeout).await?;
            while let Some(reply) = replies.next().await {
                print_reply(reply?.payload())?;
            }
            Ok(())
        }
    }
}

/// Writes a reply's payload as one line (escaped on a terminal: `render::raw_or_escaped`).
fn print_reply(payload: &[u8]) -> Result<(), Failure> {
    use std::io::IsTerminal;
    let mut out = std::io::stdout().lock();
    let terminal = out.is_terminal();
    let payload = crate::render::raw_or_escaped(payload, terminal);
    out.write_all(&payload)?;
    if !payload.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
