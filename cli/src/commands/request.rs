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
            print_reply(reply.payload()).map(drop)
        }
        Conn::Bus(bus) => {
            if !stream {
                let reply = bus.request(topic, payload, timeout).await?;
                return print_reply(reply.payload()).map(drop);
            }
            let mut replies = bus.request_stream(topic, payload, timeout).await?;
            while let Some(reply) = replies.next().await {
                if !print_reply(reply?.payload())? {
                    // The reader is gone (`| head -1`): stop, as `watch` does; dropping the
                    // stream cancels the rest of it at the server.
                    break;
                }
            }
            Ok(())
        }
    }
}

/// Writes a reply's payload as one line (escaped on a terminal: `render::raw_or_escaped`);
/// `false` when stdout is a closed pipe (its reader is gone, as after `| head -1`): no
/// failure, as for `watch`, so the command ends with exit 0 and no message.
fn print_reply(payload: &[u8]) -> Result<bool, Failure> {
    use std::io::IsTerminal;
    let mut out = std::io::stdout().lock();
    let terminal = out.is_terminal();
    let payload = crate::render::raw_or_escaped(payload, terminal);
    let written = out.write_all(&payload).and_then(|()| {
        if payload.ends_with(b"\n") {
            Ok(())
        } else {
            out.write_all(b"\n")
        }
    });
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
