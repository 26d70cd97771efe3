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

    let mut chains = Vec::new();
    for signal in sink.sense("*") {
        let chain: Vec<String> = signal.causes().iter().map(|c| c.to_string()).collect();
        println!("{:<22} caused by {:?}", signal.name().as_str(), chain);
        chains.push((signal.name().to_string(), chain));
    }
    println!("refused:");
    let refused = refused.lock().expect("not poisoned").clone();
    for reason in &refused {
        println!("  {reason}");
    }

    // A leaf signal ends a chain: nothing may be raised as caused by it.
    let leaf = sink.raise_with(Signal::build("report.done")?.leaf())?;
    let followup = sink.raise_caused(Signal::build("report.followup")?, &leaf);
    match &followup {
        Ok(_) => println!("unexpected: a reaction to a leaf was accepted"),
        Err(e) => println!("after a leaf: {e}"),
    }
    let stats = sink.stats();
    println!("{} signals raised, {} live", stats.raised, stats.live);

    // What this example shows, checked (CI runs it with its output discarded): the chain
    // disk.full -> alert.disk -> page.oncall was raised with its causes, the cycle and the
    // chain past max depth were both refused (and nothing else was), and the leaf ended its
    // chain.
    let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    chains.sort();
    let expected = {
        let mut expected = vec![
            ("alert.disk".to_owned(), owned(&["disk.full"])),
            ("disk.full".to_owned(), owned(&[])),
            (
                "page.oncall".to_owned(),
                owned(&["disk.full", "alert.disk"]),
            ),
        ];
        expected.sort();
        expected
    };
    let refusals_ok = refused.len() == 2
        && refused.iter().any(|r| r.contains("cycle"))
        && refused.iter().any(|r| r.contains("max_depth"));
    if chains != expected || !refusals_ok || followup.is_ok() {
        return Err(format!(
            "expected the chain {expected:?}, a cycle and a depth refused and the leaf's \
             follow-up refused; saw {chains:?}, refused {refused:?}, follow-up accepted: {}",
            followup.is_ok()
        )
        .into());
    }
    Ok(())
}
