//! Two processes share a cache with a time to live: a writer keeps prices fresh, a reader
//! reads them. The writer is killed (SIGKILL); the reader carries on: what the writer set
//! stays readable until its time to live ends (never after), and the writer's *owned*
//! heartbeat goes at once, with the process.
//!
//! `cargo run -p ephemeral-examples --bin shared_cache`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ephemeral_bus::retained::StoreOptions;
use ephemeral_bus::{BUS_DIR_ENV, Bus, BusOptions};

const CHILD: &str = "SHARED_CACHE_WRITER";
const BUS: &str = "example-cache";
const TTL: Duration = Duration::from_millis(1500);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(CHILD).is_some() {
        return writer().await;
    }
    // A directory of our own, removed at the end: retained state outlives its processes.
    let parent = tempfile::tempdir()?;
    let bus = Bus::open_with(BUS, BusOptions::default().dir(parent.path())).await?;
    let cache = bus.store("prices", StoreOptions::default()).await?;

    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, "1")
        .env(BUS_DIR_ENV, parent.path())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));

    let show = |label: &str, apple: Option<Vec<u8>>, alive: bool| {
        let apple = apple.map_or("(none)".to_owned(), |v| {
            String::from_utf8_lossy(&v).into_owned()
        });
        println!(
            "{label:<28} apple = {apple:<8} writer heartbeat: {}",
            if alive { "yes" } else { "no" }
        );
    };
    for _ in 0..3 {
        show(
            "writer running:",
            cache.get("price.apple").await?,
            cache.get("writer.alive").await?.is_some(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    child.kill()?; // SIGKILL: no goodbye, no cleanup
    child.wait()?;
    let killed = Instant::now();
    println!("-- writer killed --");
    // The heartbeat was owned by the writer's bus peer: gone with the process.
    show(
        "just after the kill:",
        cache.get("price.apple").await?,
        cache.get("writer.alive").await?.is_some(),
    );
    // The price it set last stays until its time to live ends, and is never returned after.
    while killed.elapsed() < TTL + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let label = format!("{} ms after the kill:", killed.elapsed().as_millis());
        show(&label, cache.get("price.apple").await?, false);
    }
    let stats = cache.stats().await?;
    println!(
        "store: {} live values, {} sets, {} expired, {} reclaimed from the dead writer",
        stats.values, stats.sets, stats.expired, stats.reclaimed
    );
    drop((cache, bus));
    Ok(())
}

/// The writer: refreshes the price every 100 ms with a 1.5 s time to live, and keeps an
/// owned heartbeat.
async fn writer() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::open(BUS).await?;
    let cache = bus.store("prices", StoreOptions::default()).await?;
    cache.set_owned("writer.alive", b"yes", None).await?;
    let mut n = 0u32;
    cache
        .set("price.apple", format!("0.{:02}", 40 + n % 10), TTL)
        .await?;
    println!("ready");
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n += 1;
        cache
            .set("price.apple", format!("0.{:02}", 40 + n % 10), TTL)
            .await?;
    }
}
