//! Request/response between two processes over an `ephemeral-bus`: a price service in one
//! process, a client in the other, with a timeout and a typed error when nobody serves.
//!
//! `cargo run -p ephemeral-examples --bin bus_request`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ephemeral_bus::{Bus, BusError};

const CHILD: &str = "BUS_REQUEST_CHILD";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var(CHILD) {
        return server(&name).await;
    }
    let name = format!("example-request-{}", std::process::id());
    let bus = Bus::open(&name).await?;

    let no_server = match bus
        .request("prices.get", "apple", Duration::from_millis(200))
        .await
    {
        Err(BusError::NoServer { topic }) => {
            println!("before the server starts: nobody serves {topic}");
            true
        }
        other => {
            println!("unexpected: {other:?}");
            false
        }
    };

    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, &name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));

    let mut answers = Vec::new();
    for item in ["apple", "pear", "durian"] {
        match bus
            .request("prices.get", item, Duration::from_secs(1))
            .await
        {
            Ok(reply) => {
                let price = reply.payload_str().unwrap_or("?").to_owned();
                println!("{item:<7} costs {price}");
                answers.push(price);
            }
            Err(e) => {
                println!("{item:<7} failed: {e}");
                answers.push(format!("failed: {e}"));
            }
        }
    }
    // The server takes 2 s for this one; we wait 100 ms.
    let timed_out = match bus
        .request("prices.slow", "", Duration::from_millis(100))
        .await
    {
        Err(e @ BusError::Timeout { .. }) => {
            println!("slow request: {e}");
            true
        }
        other => {
            println!("unexpected: {other:?}");
            false
        }
    };
    drop(child.stdin.take()); // tells the server to leave
    let status = child.wait()?;
    // What this example shows, checked (CI runs it with its output discarded): a request
    // with no server is a typed `NoServer` error, the server in the other process answered
    // each price, the 2 s request timed out after 100 ms as a typed `Timeout`, and the server
    // process ended cleanly.
    if !no_server || answers != ["0.40", "0.55", "unknown"] || !timed_out || !status.success() {
        return Err(format!(
            "expected NoServer first, the answers 0.40, 0.55, unknown, then a Timeout and a \
             clean server exit; saw NoServer: {no_server}, answers {answers:?}, Timeout: \
             {timed_out}, server exit {status}"
        )
        .into());
    }
    Ok(())
}

async fn server(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::open(name).await?;
    let _prices = bus
        .serve("prices.get", |request| async move {
            let price = match request.payload_str() {
                Some("apple") => "0.40",
                Some("pear") => "0.55",
                _ => "unknown",
            };
            price.as_bytes().to_vec()
        })
        .await?;
    let _slow = bus
        .serve("prices.slow", |_| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            b"too late".to_vec()
        })
        .await?;
    println!("ready");
    // Serve until the parent closes our stdin.
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    Ok(())
}
