//! Two processes doing publish/subscribe with wildcards over an `ephemeral-bus`.
//!
//! The program starts a second copy of itself as the subscriber, then publishes a few
//! orders and news items; the subscriber prints what its patterns matched and both exit.
//!
//! `cargo run -p ephemeral-examples --bin bus_pubsub`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ephemeral_bus::Bus;
use futures::StreamExt;

const CHILD: &str = "BUS_PUBSUB_CHILD";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD) {
        return subscriber(&name).await;
    }
    // One bus per run, so two runs at once do not meet.
    let name = format!("example-pubsub-{}", std::process::id());
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, &name)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    // The subscriber says when its subscriptions are in place.
    assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));

    let bus = Bus::open(&name).await?;
    let mut reached_counts = Vec::new();
    for (topic, payload) in [
        ("orders.created", "order 17"),
        ("orders.shipped", "order 12"),
        ("news.sports", "3-1"),
        ("news.sports.eu", "not matched by news.+"),
        ("logs.debug", "nobody listens"),
        ("done", ""),
    ] {
        let reached = bus.publish(topic, payload).await?;
        println!("published {topic:<16} -> {reached} subscription(s)");
        reached_counts.push(reached);
    }
    let mut received = Vec::new();
    for line in lines {
        let line = line?;
        println!("  subscriber| {line}");
        // "orders.* got orders.created = ..." -> "orders.created"
        received.extend(line.split_whitespace().nth(2).map(str::to_owned));
    }
    let status = child.wait()?;
    // What this example shows, checked (CI runs it with its output discarded): `orders.*`
    // got both orders, `news.+` got news.sports but not news.sports.eu (two segments), nobody
    // got logs.debug, the publisher was told how many subscriptions each message reached, and
    // the subscriber process ended cleanly.
    let expected = ["orders.created", "orders.shipped", "news.sports"];
    if received != expected || reached_counts != [1, 1, 1, 0, 0, 1] || !status.success() {
        return Err(format!(
            "expected the subscriber to get {expected:?}, reach counts [1, 1, 1, 0, 0, 1] and a \
             clean exit; saw {received:?}, reach counts {reached_counts:?}, exit {status}"
        )
        .into());
    }
    Ok(())
}

async fn subscriber(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::open(name).await?;
    // `*` spans dots; a whole-segment `+` is exactly one segment; commas separate patterns.
    let mut orders = bus.subscribe("orders.*").await?;
    let mut news = bus.subscribe("news.+,done").await?;
    println!("ready");
    loop {
        tokio::select! {
            // Both subscriptions are filled in publish order; polling `orders` first means
            // every order published before `done` is printed before we stop.
            biased;
            Some(m) = orders.next() => {
                let m = m?;
                println!("orders.* got {} = {:?}", m.topic(), m.payload_str().unwrap_or(""));
            }
            Some(m) = news.next() => {
                let m = m?;
                if m.topic().as_str() == "done" {
                    break;
                }
                println!("news.+   got {} = {:?}", m.topic(), m.payload_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}
