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
    println!("\nsent: {}", readings.stats().sent);
    for (name, s) in [
        ("display", display),
        ("plotter", plotter),
        ("controller", controller),
    ] {
        println!(
            "{name:>10}: {} delivered, {} expired (skipped), {} dropped, {} callback panics",
            s.delivered, s.expired, s.dropped, s.failed
        );
    }
    Ok(())
}
