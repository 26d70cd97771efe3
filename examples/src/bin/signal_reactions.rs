//! The signal-reaction showcase: listeners that react to signals by raising more signals,
//! and the propagation guards that keep such chains from looping forever.
//!
//! A `disk.full` signal makes a listener raise `alert.disk` (caused by it), which makes
//! another raise `page.oncall`; a reaction that would raise `disk.full` again is refused as a
//! cycle, a chain past the sink's max depth is refused as too deep, and nothing follows a leaf.
//!
//! `cargo run -p ephemeral-examples --bin signal_reactions`; it finishes at once.

use std::sync::{Arc, Mutex};

use ephemeral::{Signal, SignalSink, SinkOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = SignalSink::new(SinkOptions::default().max_depth(3))?;
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();

    // disk.full -> alert.disk
    let s = sink.clone();
    let _alert = sink.on_signal("disk.full", move |cause| {
        let _ = s.raise_caused(Signal::build("alert.disk").expect("a valid name"), cause);
    });
    // alert.* -> page.oncall
    let s = sink.clone();
    let _page = sink.on_signal("alert.*", move |cause| {
        let _ = s.raise_caused(Signal::build("page.oncall").expect("a valid name"), cause);
    });
    // page.oncall -> disk.full again: a cycle, refused with the reason.
    let (s, r) = (sink.clone(), refused.clone());
    let _cycle = sink.on_signal("page.oncall", move |cause| {
        if let Err(e) = s.raise_caused(Signal::build("disk.full").expect("a valid name"), cause) {
            r.lock().expect("not poisoned").push(e.to_string());
        }
    });
    // page.oncall -> escalate.manager -> ... a chain past max depth 3, refused.
    let (s, r) = (sink.clone(), refused.clone());
    let _escalate = sink.on_signal("page.oncall,escalate.*", move |cause| {
        let next = format!("escalate.level{}", cause.causes().len() + 1);
        if let Err(e) = s.raise_caused(Signal::build(&next).expect("a valid name"), cause) {
            r.lock().expect("not poisoned").push(e.to_string());
        }
    });

    sink.raise("disk.full")?;

    for signal in sink.sense("*") {
        let chain: Vec<&str> = signal.causes().iter().map(|c| c.as_str()).collect();
        println!("{:<22} caused by {:?}", signal.name().as_str(), chain);
    }
    println!("refused:");
    for reason in refused.lock().expect("not poisoned").iter() {
        println!("  {reason}");
    }

    // A leaf signal ends a chain: nothing may be raised as caused by it.
    let leaf = sink.raise_with(Signal::build("report.done")?.leaf())?;
    match sink.raise_caused(Signal::build("report.followup")?, &leaf) {
        Ok(_) => println!("unexpected: a reaction to a leaf was accepted"),
        Err(e) => println!("after a leaf: {e}"),
    }
    let stats = sink.stats();
    println!("{} signals raised, {} live", stats.raised, stats.live);
    Ok(())
}
