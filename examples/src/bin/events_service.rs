//! An event detector broadcasting system events to a logger and an alerter, each a service,
//! with graceful shutdown.
//!
//! Run with `cargo run -p ephemeral-examples --bin events_service`. It shuts down by itself
//! after two seconds (or on Ctrl-C / SIGTERM): the detector stops first and closes the
//! channel, then the logger and the alerter drain what is left and stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ephemeral::{Buffer, Channel, ChannelOptions, Lagged, SignalSink, Subscriber};
use ephemeral_atoms::service::{
    HostOptions, Service, ServiceContext, ServiceError, ServiceHost, Step,
};

#[derive(Debug, Clone)]
enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone)]
struct SystemEvent {
    seq: u32,
    severity: Severity,
    what: String,
}

/// Watches the (simulated) system and broadcasts what it sees.
struct Detector {
    events: Channel<SystemEvent>,
    seq: u32,
}

impl Service for Detector {
    fn name(&self) -> &str {
        "detector"
    }

    // Start after the consumers, so that they are subscribed before the first event.
    fn dependencies(&self) -> Vec<String> {
        vec!["logger".into(), "alerter".into()]
    }

    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.seq += 1;
        let (severity, what) = match self.seq % 7 {
            0 => (Severity::Critical, "disk /var is 97% full".to_string()),
            3 | 5 => (
                Severity::Warning,
                format!("cpu load {}%", 80 + self.seq % 15),
            ),
            _ => (Severity::Info, format!("heartbeat {}", self.seq)),
        };
        let event = SystemEvent {
            seq: self.seq,
            severity,
            what,
        };
        self.events
            .send(event)
            .await
            .map_err(|e| ServiceError::from_error(&e))?;
        Ok(Step::Continue)
    }

    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        // No more events: the consumers drain what they hold, then their streams end.
        self.events.close();
        println!("[detector] stopped after {} events", self.seq);
        Ok(())
    }
}

/// Subscribes in `start`, so it never misses an event sent after the host started it.
struct Consumer {
    name: &'static str,
    events: Channel<SystemEvent>,
    subscriber: Option<Subscriber<SystemEvent>>,
    handle: fn(&ServiceContext, &SystemEvent),
    /// Events handled, live or drained at shutdown.
    handled: Arc<AtomicU64>,
}

impl Consumer {
    fn take(&self, ctx: &ServiceContext, item: Result<SystemEvent, Lagged>) {
        match item {
            Ok(event) => {
                (self.handle)(ctx, &event);
                self.handled.fetch_add(1, Ordering::Relaxed);
            }
            Err(lag) => println!("[{}] {lag}", self.name),
        }
    }
}

impl Service for Consumer {
    fn name(&self) -> &str {
        self.name
    }

    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.subscriber = Some(self.events.subscribe());
        Ok(())
    }

    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        let Some(subscriber) = self.subscriber.as_mut() else {
            return Err("not subscribed".into());
        };
        // `recv` is cancel-safe: if shutdown drops this step, nothing is lost.
        match subscriber.recv().await {
            Some(item) => {
                self.take(ctx, item);
                Ok(Step::Continue)
            }
            None => Ok(Step::Done),
        }
    }

    async fn stop(&mut self, ctx: &ServiceContext) -> Result<(), ServiceError> {
        if let Some(mut subscriber) = self.subscriber.take() {
            let mut drained = 0;
            while let Some(item) = subscriber.try_recv() {
                self.take(ctx, item);
                drained += 1;
            }
            let stats = subscriber.stats();
            println!(
                "[{}] stopped: {} delivered, {} dropped, {} drained at shutdown",
                self.name, stats.delivered, stats.dropped, drained
            );
        }
        Ok(())
    }
}

fn log_event(_ctx: &ServiceContext, event: &SystemEvent) {
    println!(
        "[logger] #{:<3} {:?}: {}",
        event.seq, event.severity, event.what
    );
}

fn alert(ctx: &ServiceContext, event: &SystemEvent) {
    match event.severity {
        Severity::Info => {}
        Severity::Warning => println!("[alerter] warning: {}", event.what),
        Severity::Critical => {
            println!("[alerter] PAGE ON-CALL: {}", event.what);
            if let Err(e) = ctx.raise("alert.critical") {
                eprintln!("[alerter] could not raise the alert signal: {e}");
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::default();
    let events = Channel::with_options(
        ChannelOptions::default()
            .buffer(Buffer::bounded(64)?)
            .on_error(|failure| eprintln!("delivery failed: {failure}")),
    )?;

    let mut host = ServiceHost::new(
        HostOptions::default()
            .signals(sink.clone())
            .shutdown_on_os_signals(true)
            .shutdown_timeout(Duration::from_secs(5)),
    );
    let (logged, alerted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    host.add(Detector {
        events: events.clone(),
        seq: 0,
    })?
    .add(Consumer {
        name: "logger",
        events: events.clone(),
        subscriber: None,
        handle: log_event,
        handled: logged.clone(),
    })?
    .add(Consumer {
        name: "alerter",
        events: events.clone(),
        subscriber: None,
        handle: alert,
        handled: alerted.clone(),
    })?;

    // Stand-in for Ctrl-C, so the example ends by itself.
    let shutdown = host.shutdown_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("--- shutting down ---");
        shutdown.cancel();
    });

    let report = host.run().await?;
    print!("{report}");
    println!(
        "channel: {} sent; signals: {} critical alert(s), {} service(s) stopped",
        events.stats().sent,
        sink.count("alert.critical"),
        sink.count("service.*.stopped"),
    );
    // What this example shows, checked (CI runs it with its output discarded): the three
    // services stopped cleanly (none failed or had to be aborted), and both consumers handled
    // every event sent, live or drained at shutdown, so the alerter paged once per critical
    // event (every 7th). How many events there were depends on timing.
    let sent = events.stats().sent;
    let (logged, alerted) = (
        logged.load(Ordering::Relaxed),
        alerted.load(Ordering::Relaxed),
    );
    let clean = report.did_not_stop().is_empty()
        && report.services.iter().all(|s| s.failures == 0)
        && sink.count("service.*.stopped") == 3;
    let pages = sink.count("alert.critical") as u64;
    if !clean || sent == 0 || logged != sent || alerted != sent || pages != sent / 7 {
        return Err(format!(
            "expected a clean stop of 3 services and every event handled by both consumers, \
             one page per critical event; saw {sent} sent, {logged} logged, {alerted} seen by \
             the alerter, {pages} page(s), report:\n{report}"
        )
        .into());
    }
    Ok(())
}
