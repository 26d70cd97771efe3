//! A chat room with a late joiner: Alice and Bob talk in `lobby`; Carol joins later and
//! gets the history first, then the live messages — nothing missed, nothing twice, even
//! though Bob keeps talking while she joins. Each person is a bus handle of its own (in
//! separate processes it works the same way).
//!
//! `cargo run -p ephemeral-examples --bin chat_room`

use std::time::Duration;

use ephemeral_bus::retained::{RoomMessage, RoomOptions};
use ephemeral_bus::{Bus, BusOptions};
use futures::StreamExt;

const BUS: &str = "example-chat";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A directory of our own, removed at the end: rooms outlive their processes.
    let parent = tempfile::tempdir()?;
    let options = BusOptions::default().dir(parent.path());
    let room_options = RoomOptions::default()
        .max_messages(100)
        .max_age(Duration::from_secs(600));
    let (alice, bob, carol) = (
        Bus::open_with(BUS, options.clone()).await?,
        Bus::open_with(BUS, options.clone()).await?,
        Bus::open_with(BUS, options).await?,
    );
    let names = [
        (alice.peer_id(), "alice"),
        (bob.peer_id(), "bob"),
        (carol.peer_id(), "carol"),
    ];
    let who = move |m: &RoomMessage| {
        names
            .iter()
            .find(|(id, _)| *id == m.sender())
            .map_or("?", |(_, n)| n)
    };

    let lobby_a = alice.room("lobby", room_options.clone()).await?;
    let lobby_b = bob.room("lobby", room_options.clone()).await?;
    lobby_a.send("hi bob").await?;
    lobby_b.send("hi alice, did you see the release?").await?;
    lobby_a.send("yes, shipping at noon").await?;

    // Bob keeps talking while Carol joins.
    let talker = tokio::spawn(async move {
        for i in 1..=5 {
            lobby_b.send(format!("bob's update {i}")).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<_, ephemeral_bus::StoreError>(())
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let lobby_c = carol.room("lobby", room_options).await?;
    let mut joined = lobby_c.join().await?;
    println!("carol joins the lobby:");
    talker.await??;
    lobby_c.send("hello everyone, just got here").await?;

    let mut last = 0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), joined.next()).await
    {
        let m = item?;
        if m.sequence() != last + 1 {
            return Err(format!(
                "carol got message #{} after #{last}: a gap or a duplicate",
                m.sequence()
            )
            .into());
        }
        last = m.sequence();
        println!(
            "  #{:<2} {:>5}: {}",
            m.sequence(),
            who(&m),
            m.payload_str().unwrap_or("?")
        );
    }
    println!("carol saw all {last} messages, in order: the history, then live");
    drop((joined, lobby_a, lobby_c, alice, bob, carol));
    // What this example shows, checked (CI runs it with its output discarded; the loop above
    // checks no gap and no duplicate): carol got all 9 messages, the 3 before she joined,
    // bob's 5 sent while she joined, and her own. All were sent before she reads, so the
    // 300 ms wait for a next message is only reached after the last.
    if last != 9 {
        return Err(format!("carol saw {last} messages, not all 9").into());
    }
    Ok(())
}
