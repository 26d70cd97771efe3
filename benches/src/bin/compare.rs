//! `compare`: runs ours and each baseline side by side and prints one JSON line per measurement.
//!
//! ```text
//! cargo run --release -p ephemeral-benches --bin compare -- [--quick] [--only <substr>] [--list]
//! ```
//!
//! JSON goes to stdout; progress, timings and notes go to stderr as `# ...` lines.

use std::io::Write;
use std::time::Instant;

use clap::Parser;
use ephemeral_benches::cli::Args;
use ephemeral_benches::measures::{self, Config, bus, memory, nats, nats_intake};

fn main() {
    let args = Args::parse();
    if let Some(workload) = &args.child {
        if bus::is_child(workload) {
            std::process::exit(bus::child_main(workload));
        }
        if nats_intake::is_child(workload) {
            std::process::exit(nats_intake::child_main());
        }
        if nats::is_child(workload) {
            std::process::exit(nats::child_main());
        }
        std::process::exit(memory::child_main(workload, args.quick));
    }
    let specs: Vec<_> = measures::all()
        .into_iter()
        .filter(|s| args.selects(s.name))
        .collect();
    if args.list {
        for spec in &specs {
            println!("{}", spec.name);
        }
        return;
    }
    if specs.is_empty() {
        eprintln!("no measurement matches {:?}; see --list", args.only);
        std::process::exit(2);
    }
    let cfg = Config { quick: args.quick };
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    for spec in specs {
        let t = Instant::now();
        let m = (spec.run)(&cfg);
        let _ = writeln!(stdout, "{}", m.to_json_line());
        let _ = stdout.flush();
        if let Some(note) = &m.note {
            eprintln!("# note {}: {note}", m.name);
        }
        eprintln!("# {} took {:.1}s", m.name, t.elapsed().as_secs_f64());
    }
    eprintln!(
        "# compare{} took {:.1}s",
        if cfg.quick { " --quick" } else { "" },
        started.elapsed().as_secs_f64()
    );
}
