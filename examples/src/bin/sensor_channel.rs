//! An expiring channel of sensor readings: a reading older than 300 ms is worthless, so it
//! is skipped (and counted) rather than delivered late.
//!
//! Run with `cargo run -p ephemeral-examples --bin sensor_channel`; it finishes by itself in
//! about two seconds. Three sensors publish; a live display reads everything promptly; a
//! controller that stalls now and then never acts on stale readings; a flaky plotter whose
//! callback panics on bad readings is reported to the error callback and keeps going.

use std::time::Duration;

use ephemeral::{Buffer, Channel, ChannelOptions, Overflow};

#[derive(Debug, Clone)]
struct Reading {
    sensor: &'static str,
    seq: u32,
    celsius: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The plotter's expected panics reach the channel's error callback; keep the default
    // panic report (and backtrace) for anything else.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("out of range") {
            default_hook(info);
        }
    }));

    let readings = Channel::<Reading>::with_options(
        ChannelOptions::default()
            .expire_after(Duration::from_millis(300))
            .buffer(Buffer::bounded(256)?)
            .overflow(Overflow::Wait)
            .send_timeout(Duration::from_secs(1))
            .on_error(|failure| println!("  ! {failure}")),
    )?;

    // A display: reads every reading as it comes.
    let display = readings.consume(|r: Reading| {
        if r.seq.is_multiple_of(10) {
            println!("display: {} #{} {:.1} °C", r.sensor, r.seq, r.celsius);
        }
    })?;

    // A plotter whose callback cannot cope with out-of-range values.
    let plotter = readings.consume(|r: Reading| {
        assert!(
            r.celsius < 90.0,
            "{} reading {:.1} °C is out of range",
            r.sensor,
            r.celsius
        );
    })?;

    // A controller that stalls for 500 ms every 20 readings: what it finds afterwards is
    // stale and is skipped, never acted on.
    let mut controller = readings.subscribe();
    let control = tokio::spawn(async move {
        let mut acted = 0u32;
        while let Some(item) = controller.recv().await {
            let reading = item?;
            acted += 1;
            if acted.is_multiple_of(20) {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if reading.celsius > 90.0 {
                println!(
                    "controller: venting {} ({:.1} °C)",
                    reading.sensor, reading.celsius
                );
            }
        }
        Ok::<_, ephemeral::Lagged>(controller.stats())
    });

    let sensors = ["boiler", "intake", "exhaust"];
    let publishers: Vec<_> = sensors
        .iter()
        .enumerate()
        .map(|(i, &sensor)| {
            let readings = readings.clone();
            tokio::spawn(async move {
                for seq in 1..=60u32 {
                    let spike = sensor == "exhaust" && seq.is_multiple_of(25);
                    let celsius = if spike {
                        95.0
                    } else {
                        20.0 + 10.0 * i as f64 + f64::from(seq % 7)
                    };
                    let reading = Reading {
                        sensor,
                        seq,
                        celsius,
                    };
                    if let Err(e) = readings.send(reading).await {
                        println!("{sensor}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await?;
    }
    readings.close();

    let display = display.finished().await;
    let plotter = plotter.finished().await;
    let controller = control.await??;
    let sent = readings.stats().sent;
    println!("\nsent: {sent}");
    let consumers = [
        ("display", display),
        ("plotter", plotter),
        ("controller", controller),
    ];
    for (name, s) in &consumers {
        println!(
            "{name:>10}: {} delivered, {} expired (skipped), {} dropped, {} callback panics",
            s.delivered, s.expired, s.dropped, s.failed
        );
    }
    // What this example shows, checked (CI runs it with its output discarded): all 180
    // readings were sent and each consumer accounted for every one, delivered or skipped as
    // expired, none dropped (the senders wait); the stalling controller skipped stale readings
    // (a 500 ms stall outlasts the 300 ms expiry while the sensors keep publishing); and the
    // plotter's panics were reported while it went on to the last reading.
    let accounted = consumers
        .iter()
        .all(|(_, s)| s.delivered + s.expired == sent && s.dropped == 0);
    let (plotter, controller) = (&consumers[1].1, &consumers[2].1);
    if sent != 180 || !accounted || controller.expired == 0 || plotter.failed == 0 {
        return Err(format!(
            "expected 180 readings, each consumer accounting for all of them, the controller \
             skipping stale ones and the plotter's panics reported; saw {sent} sent and {:?}",
            consumers
                .iter()
                .map(|(name, s)| format!(
                    "{name}: {} delivered, {} expired, {} dropped, {} failed",
                    s.delivered, s.expired, s.dropped, s.failed
                ))
                .collect::<Vec<_>>()
        )
        .into());
    }
    Ok(())
}
