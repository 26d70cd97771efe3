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
    let mut heartbeat_while_running = true;
    for _ in 0..3 {
        let alive = cache.get("writer.alive").await?.is_some();
        heartbeat_while_running &= alive;
        show("writer running:", cache.get("price.apple").await?, alive);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    child.kill()?; // SIGKILL: no goodbye, no cleanup
    child.wait()?;
    let killed = Instant::now();
    println!("-- writer killed --");
    // The heartbeat was owned by the writer's bus peer: gone with the process.
    let heartbeat_after_kill = cache.get("writer.alive").await?.is_some();
    let price_after_kill = cache.get("price.apple").await?;
    show(
        "just after the kill:",
        price_after_kill.clone(),
        heartbeat_after_kill,
    );
    // The price it set last stays until its time to live ends, and is never returned after.
    // Reads begun after the kill + TTL, and any price they returned.
    let (mut late_reads, mut returned_late) = (0, Vec::new());
    while killed.elapsed() < TTL + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let asked = killed.elapsed();
        let label = format!("{} ms after the kill:", asked.as_millis());
        let apple = cache.get("price.apple").await?;
        if asked > TTL {
            late_reads += 1;
            returned_late.extend(apple.clone().map(|v| (asked, v)));
        }
        show(&label, apple, false);
    }
    let stats = cache.stats().await?;
    println!(
        "store: {} live values, {} sets, {} expired, {} reclaimed from the dead writer",
        stats.values, stats.sets, stats.expired, stats.reclaimed
    );
    drop((cache, bus));
    // What this example shows, checked (CI runs it with its output discarded): the owned
    // heartbeat was there while the writer ran and gone right after the kill (reclaimed from
    // the dead peer); the last price was still readable right after the kill (it was set at
    // most ~100 ms before, with 1.5 s to live); and no read begun after the time to live
    // returned it (the last read of the loop always is one).
    if !heartbeat_while_running
        || heartbeat_after_kill
        || stats.reclaimed == 0
        || price_after_kill.is_none()
        || late_reads == 0
        || !returned_late.is_empty()
    {
        return Err(format!(
            "expected the heartbeat while the writer ran and not after, the price just after \
             the kill and never past its time to live; saw heartbeat while running: \
             {heartbeat_while_running}, after the kill: {heartbeat_after_kill}, {} reclaimed, \
             price after the kill: {price_after_kill:?}, {late_reads} read(s) past the time to \
             live returning {returned_late:?}",
            stats.reclaimed
        )
        .into());
    }
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
