//! One circuit breaker, three processes, one nats-server: a circuit opening in one process
//! defers work in the others, and they resume the moment it closes.
//!
//! The example starts its own nats-server (the test harness of `ephemeral-nats`: it needs
//! one installed, see the README's NATS section) and three copies of itself:
//!
//! * `payments` charges orders through a provider that fails from 300 ms to 1 s; its circuit
//!   breaker opens after 3 failures and holds `circuit.open` in its sink;
//! * `orders` and `emails` run work coordinators with `defer_on("circuit.open")`: they never
//!   see the provider, only the signal, mirrored into their own sinks through NATS.
//!
//! Then the same again with `emails` on this machine's bus only (no NATS connection):
//! `orders` bridges its sink to both NATS and that bus, so the hold travels two hops.
//! Finally the server is stopped, by pid. Runs about five seconds.
//!
//! `cargo run -p ephemeral-examples --bin nats_circuit`

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
use ephemeral_bus::Bus;
use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;
use ephemeral_patterns::circuit_breaker::{CircuitBreaker, CircuitBreakerOptions, CircuitState};
use tokio::time::Instant;

const ROLE: &str = "NATS_CIRCUIT_ROLE";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role).await;
    }
    let mut server = match NatsServer::try_start_with(&[]).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("this example needs a nats-server: {e}");
            std::process::exit(1);
        }
    };
    let pid = server.pid().unwrap_or(0);
    let version = Nats::connect(&server.url()).await?.server_version();
    println!(
        "nats-server {version} on {} (pid {pid}), started by this example\n",
        server.url()
    );

    println!("== three processes, each with its own sink bridged through NATS");
    run_phase(&server.url(), None)?;

    let bus = format!("nats-circuit-{}", std::process::id());
    println!("\n== the same, with emails on this machine's bus `{bus}` only");
    println!("   (orders bridges its sink to NATS and to that bus: the hold goes two hops)");
    run_phase(&server.url(), Some(&bus))?;

    server.stop().await;
    println!("\nstopped nats-server (pid {pid})");
    Ok(())
}

/// Starts the three processes, lets them go at once, and shows their lines as they come.
fn run_phase(url: &str, bus: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let mut children = Vec::new();
    for role in ["payments", "orders", "emails"] {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env(ROLE, role)
            .env("NATS_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(bus) = bus {
            command.env("LOCAL_BUS", bus);
        }
        let mut child = command.spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = lines.next().transpose()?;
        if ready.as_deref() != Some("ready") {
            return Err(format!("{role} did not start: {ready:?}").into());
        }
        children.push((role, child, lines));
    }
    // Go: one line to each, as close together as three writes get.
    for (_, child, _) in &mut children {
        writeln!(child.stdin.as_mut().ok_or("no stdin")?, "go")?;
    }
    // Each process's lines, merged in the order they arrive.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    let mut waiting: Vec<Child> = Vec::new();
    for (role, child, lines) in children {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(format!("   {role:<8} {line}"));
            }
        }));
        waiting.push(child);
    }
    drop(tx);
    for line in rx {
        println!("{line}");
    }
    for mut child in waiting {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a process failed: {status}").into());
        }
    }
    Ok(())
}

/// One of the three processes.
async fn child(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL")?;
    let local_bus = std::env::var("LOCAL_BUS").ok();
    let sink = SignalSink::default();
    // How this process reaches the others: NATS, this machine's bus, or both (a gateway).
    let mut bridges = Vec::new();
    let mut bus_handle = None;
    let on_nats = !(role == "emails" && local_bus.is_some());
    if on_nats {
        let nats = Nats::connect(&url).await?;
        bridges.push(nats.bridge(&sink, "circuit.*").await?);
    }
    if let Some(name) = &local_bus
        && role != "payments"
    {
        let bus = Bus::open(name).await?;
        bridges.push(bus.bridge(&sink, "circuit.*").await?);
        bus_handle = Some(bus);
    }
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    let start = Instant::now();
    let at = move || format!("[{:>5.2}s]", start.elapsed().as_secs_f64());
    let how = match (on_nats, &bus_handle) {
        (true, Some(_)) => "bridged to NATS and the local bus",
        (true, None) => "bridged to NATS",
        (false, _) => "bridged to the local bus only",
    };
    println!("{} {how}", at());

    if role == "payments" {
        payments(&sink, at).await?;
    } else {
        deferring(role, &sink, at).await?;
    }
    drop(bridges);
    Ok(())
}

/// Charges an order every 20 ms through a provider that is down from 300 ms to 1 s, behind a
/// circuit breaker that holds `circuit.open` after 3 failures.
async fn payments(
    sink: &SignalSink,
    at: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let breaker = CircuitBreaker::new(
        sink,
        CircuitBreakerOptions::default()
            .failures_within(3, Duration::from_secs(1))
            .open_for(Duration::from_millis(800))
            .probes(1, 1),
    )?;
    let start = Instant::now();
    let show = at.clone();
    let _transitions = sink.on_signal("circuit.*", move |signal| {
        let what = match signal.name().as_str() {
            "circuit.open" => "circuit OPEN: 3 failures within 1 s; holding circuit.open",
            "circuit.half_open" => "circuit half-open: one probe goes through",
            "circuit.closed" => "circuit closed: the probe succeeded",
            other => other,
        };
        println!("{} {what}", show());
    });
    let coordinator = EphemeralWorkCoordinator::with_admission(
        move |order: u32, ctx: OperationContext| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let t = start.elapsed();
            if t > Duration::from_millis(300) && t < Duration::from_secs(1) {
                ctx.signal("failure").map_err(|e| e.to_string())?;
                return Err(format!("order {order}: provider unavailable"));
            }
            Ok(())
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .cancel_on("circuit.open")
            .on_finalized(breaker.observer()),
        vec![breaker.admission()],
    )?;
    for order in 0..100 {
        coordinator.enqueue(order).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    coordinator.drain().await?;
    let s = coordinator.stats();
    println!(
        "{} done: {} charged, {} failed at the provider, {} refused while the circuit was open",
        at(),
        s.completed,
        s.failed,
        s.cancelled
    );
    // What this process shows, checked (CI runs the example with its output discarded; an
    // error here fails this process, and so the example): every order accounted for, the
    // outage opened the breaker, the open breaker refused orders, and a probe after the
    // outage closed it (the outage ends at 1 s, orders come until at least 2 s).
    if s.completed + s.failed + s.cancelled != 100
        || breaker.times_opened() == 0
        || s.cancelled == 0
        || breaker.state() != CircuitState::Closed
    {
        return Err(format!(
            "payments: expected the breaker to open, refuse and close again; saw {} charged, \
             {} failed, {} refused, opened {} time(s), now {}",
            s.completed,
            s.failed,
            s.cancelled,
            breaker.times_opened(),
            breaker.state()
        )
        .into());
    }
    Ok(())
}

/// Starts a job every 40 ms under `defer_on("circuit.open")`, and says when the mirrored
/// circuit opens and closes and how long the deferred jobs waited.
async fn deferring(
    role: &str,
    sink: &SignalSink,
    at: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let show = at.clone();
    let mut watch = sink.watch("circuit.open");
    let watched = sink.clone();
    // Whether the mirrored `circuit.open` ever arrived here.
    let seen_open = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&seen_open);
    let transitions = tokio::spawn(async move {
        let mut open = false;
        loop {
            watch.changed().await;
            let now = watched.has_signal("circuit.open");
            if now != open {
                open = now;
                // Relaxed: read after this task is aborted and the coordinator drained, long
                // after; nothing else is published through it.
                seen.fetch_or(open, Ordering::Relaxed);
                println!(
                    "{} {}",
                    show(),
                    if open {
                        "circuit.open arrived from payments: new work waits"
                    } else {
                        "circuit.open released: the waiting work starts"
                    }
                );
            }
        }
    });
    // Per job: how long it waited between enqueue and start.
    let waits = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&waits);
    let coordinator = EphemeralWorkCoordinator::new(
        move |enqueued: Instant, _ctx: OperationContext| {
            let waits = Arc::clone(&recorded);
            async move {
                waits
                    .lock()
                    .map_err(|_| "poisoned")?
                    .push(enqueued.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, &str>(())
            }
        },
        EphemeralOptions::default()
            .max_concurrency(4)
            .signals(sink.clone())
            .defer_on("circuit.open"),
    )?;
    for _ in 0..50 {
        coordinator.enqueue(Instant::now()).await?;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    coordinator.drain().await?;
    transitions.abort();
    let waits = waits.lock().map_err(|_| "poisoned")?.clone();
    let deferred: Vec<&Duration> = waits
        .iter()
        .filter(|w| **w > Duration::from_millis(50))
        .collect();
    let longest = deferred.iter().max().map_or(0, |w| w.as_millis());
    println!(
        "{} done: {} {role} jobs completed, {} of them waited for the circuit (longest {longest} ms), none failed",
        at(),
        coordinator.stats().completed,
        deferred.len(),
    );
    // What this process shows, checked (CI runs the example with its output discarded; an
    // error here fails this process, and so the example): the circuit.open held in payments
    // arrived here, work waited for it (it stays open 800 ms while a job comes every 40 ms),
    // it was released, and every job then ran: none failed.
    let stats = coordinator.stats();
    if !seen_open.load(Ordering::Relaxed)
        || deferred.is_empty()
        || sink.has_signal("circuit.open")
        || stats.completed != 50
        || stats.failed != 0
    {
        return Err(format!(
            "{role}: expected the circuit to arrive, hold work back and be released, and 50 \
             jobs completed; saw it arrive: {}, {} job(s) held back, still open: {}, {} \
             completed, {} failed",
            seen_open.load(Ordering::Relaxed),
            deferred.len(),
            sink.has_signal("circuit.open"),
            stats.completed,
            stats.failed
        )
        .into());
    }
    Ok(())
}
