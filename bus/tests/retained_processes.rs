//! Retained state across real processes, on the bus: the shared test bodies of
//! `retained::conformance` (the NATS backend runs the same ones). `harness = false`: the
//! binary re-executes itself as each child; see that module for the list.

use ephemeral_bus::{Bus, BusOptions};

fn main() {
    ephemeral_bus::retained::conformance::main(|| async {
        // Where buses live by default: in memory, so a commit costs no disk flush.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let bus = Bus::open_with("conformance", BusOptions::default().dir(dir.path()))
            .await
            .expect("open the bus");
        (bus, dir)
    });
}
