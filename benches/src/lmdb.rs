//! LMDB opened exactly as the bus store opens it (`ephemeral-bus`, `db/open.rs`): the same
//! map size, reader slots and durability flag, so a raw-LMDB baseline pays what the store
//! pays for the database itself and nothing else.

use std::path::Path;

/// The bus store's map size (1 GiB).
pub const MAP_SIZE: usize = 1 << 30;

/// Opens (creating) an LMDB environment in `dir`, which must exist.
///
/// # Panics
///
/// When LMDB refuses: a benchmark has nothing to measure then.
#[must_use]
pub fn open(dir: &Path) -> heed::Env {
    let mut options = heed::EnvOpenOptions::new();
    options.map_size(MAP_SIZE).max_readers(1024).max_dbs(16);
    // SAFETY: as in the bus store (ephemeral-bus, db/open.rs): `NO_META_SYNC` only weakens
    // durability across an operating-system crash, and the environment is a fresh directory
    // of this benchmark that nothing else maps or writes; each path is opened once.
    #[allow(unsafe_code)]
    unsafe {
        options.flags(heed::EnvFlags::NO_META_SYNC);
    }
    #[allow(unsafe_code)]
    let env = unsafe { options.open(dir) };
    env.expect("open an LMDB environment")
}
