//! `ephemeral room`: a room of the bus or of NATS.

use clap::{Args, Subcommand};
use ephemeral_bus::retained::RoomMessage;

use super::{JsonBytes, follow, json_line, rfc3339};
use crate::args;
use crate::commands::payload_bytes;
use crate::exit::Failure;
use crate::render;

/// Arguments of `ephemeral room`.
#[derive(Debug, Args)]
pub(crate) struct RoomArgs {
    #[command(flatten)]
    pub(crate) bus: args::BusArgs,
    #[command(subcommand)]
    command: RoomCommand,
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Send MESSAGE to ROOM (`-` reads it from standard input).
    #[command(after_help = "Examples:\n  \
        ephemeral room send lobby 'hello'\n  \
        ephemeral room send deploys - < release-notes.txt")]
    Send {
        /// The room (created on first use: it keeps 1,000 messages for an hour).
        #[arg(value_parser = args::room_name)]
        room: String,
        /// The message; `-` reads it from standard input.
        message: String,
    },
    /// Remove every message ROOM keeps (sequence numbers carry on; a member that had not
    /// read them is told how many it missed). Frees a full store of a room's history.
    #[command(after_help = "Examples:\n  \
        ephemeral room clear lobby")]
    Clear {
        /// The room.
        #[arg(value_parser = args::room_name)]
        room: String,
    },
    /// Print the messages ROOM keeps, then every new one, until Ctrl-C.
    #[command(after_help = "Examples:\n  \
        ephemeral room join lobby                   # the history, then live, until Ctrl-C\n  \
        ephemeral room join lobby --count 10 --json")]
    Join {
        /// The room.
        #[arg(value_parser = args::room_name)]
        room: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Exit after N messages, history included (lag notices not counted).
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// `ephemeral room`.
pub(crate) async fn room(args: RoomArgs) -> Result<(), Failure> {
    let place = super::Place::open(args.bus.clone().target()?).await?;
    match args.command {
        RoomCommand::Send { room, message } => {
            let message = payload_bytes(&message)?;
            let room_handle = place.room(&room).await.map_err(|e| place.failure(e))?;
            let seq = room_handle
                .send(message)
                .await
                .map_err(|e| place.failure(e))?;
            place.flush().await;
            say!("sent to room `{room}` (#{seq})");
            Ok(())
        }
        RoomCommand::Clear { room } => {
            let room_handle = place.room(&room).await.map_err(|e| place.failure(e))?;
            let removed = room_handle.clear().await.map_err(|e| place.failure(e))?;
            place.flush().await;
            say!("cleared room `{room}`: {removed} message(s) removed");
            Ok(())
        }
        RoomCommand::Join { room, json, count } => {
            let handle = place.room(&room).await.map_err(|e| place.failure(e))?;
            // Watched from before the ready line: an outage from then on is said.
            let outages = crate::commands::Outages::of(&place.conn);
            let mut joined = handle.join().await.map_err(|e| place.failure(e))?;
            say!(
                "joined room `{room}` on {}; Ctrl-C to leave",
                place.describe()
            );
            follow(
                outages,
                &mut joined,
                count,
                json,
                || format!("the room ended: {}", place.closed()),
                |message, json| {
                    if json {
                        message_json(message)
                    } else {
                        message_text(message)
                    }
                },
            )
            .await
        }
    }
}

fn message_text(m: &RoomMessage) -> String {
    // Any sender's text: a control character (an escape sequence, a bell, a line break)
    // shows quoted and escaped, so nothing in a room reaches the terminal raw.
    let body = match m.payload_str() {
        Some(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => render::summary(m.payload()),
    };
    format!(
        "{} #{} {:016x}: {body}",
        render::clock(m.sent_at()),
        m.sequence(),
        m.sender()
    )
}

/// One `room join --json` line.
#[derive(serde::Serialize)]
struct MessageJson<'a> {
    sequence: u64,
    sender: String,
    sent_at: String,
    payload: JsonBytes<'a>,
}

fn message_json(m: &RoomMessage) -> String {
    json_line(&MessageJson {
        sequence: m.sequence(),
        sender: format!("{:016x}", m.sender()),
        sent_at: rfc3339(m.sent_at()),
        payload: JsonBytes::of(m.payload()),
    })
}
