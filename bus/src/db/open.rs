//! Opening the LMDB environment: the one place with `unsafe` in the bus.

use std::path::Path;

use heed::{Env, EnvFlags, EnvOpenOptions};

/// The size of the memory map: the most the database can hold. The file grows as it is
/// used; the map only reserves address space. Every process maps the same size, so none
/// ever has to resize its map under the others.
pub(crate) const MAP_SIZE: usize = 1 << 30;

/// Reader slots: one per thread that reads (slots are per thread and reused), for every
/// process of the bus together.
const MAX_READERS: u32 = 1024;

/// Named tables.
const MAX_DBS: u32 = 16;

/// Opens the environment in `dir` (which must exist).
pub(crate) fn open_env(dir: &Path) -> heed::Result<Env> {
    let mut options = EnvOpenOptions::new();
    options
        .map_size(MAP_SIZE)
        .max_readers(MAX_READERS)
        .max_dbs(MAX_DBS);
    // SAFETY (both blocks): the measured need is in the benches (store_engines: LMDB reads
    // 5x and writes 2x faster than SQLite in WAL mode across processes). What `heed` asks
    // of us:
    // * `flags(NO_META_SYNC)`: only weakens durability across an operating-system crash
    //   (the last transaction may be undone; the database stays consistent), never memory
    //   safety. Our default directory is memory-backed (`/dev/shm`) anyway.
    // * `open`: the memory map must not be changed under us by anything but LMDB. The file
    //   lives in the bus directory, which is created mode 700 and refused unless owned by
    //   this uid (checked explicitly, see `dir::check_owner`), and nothing in this crate
    //   writes to it except through LMDB. Opening the same path twice in one process is
    //   what LMDB forbids; `heed` keeps a process-wide table of open environments and hands
    //   back the one already open, and `db::registry` opens each path once anyway.
    // The tests `retained_processes` (a writer SIGKILLed mid-write, many processes at
    // once) exercise exactly these conditions.
    #[allow(unsafe_code)]
    unsafe {
        options.flags(EnvFlags::NO_META_SYNC);
    }
    #[allow(unsafe_code)]
    unsafe {
        options.open(dir)
    }
}
