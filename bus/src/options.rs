//! `BusOptions`: where the bus lives and its limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::BusName;

/// The environment variable that overrides the parent directory of buses (default `/dev/shm`).
pub const BUS_DIR_ENV: &str = "EPHEMERAL_BUS_DIR";

/// Options for [`Bus::open_with`](crate::Bus::open_with).
///
/// The bus named `n` lives in the directory `<parent>/ephemeral-<n>`; the parent is, in order
/// of precedence, [`dir`](Self::dir), the `EPHEMERAL_BUS_DIR` environment variable (an empty
/// value counts as unset), then `/dev/shm` (memory-backed on Linux, so nothing touches a
/// disk). A missing parent is created mode 700 (only missing directories; an existing
/// parent keeps its mode).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_bus::BusOptions;
///
/// let options = BusOptions::default()
///     .max_payload(64 * 1024)
///     .send_timeout(Duration::from_millis(200));
/// assert_eq!(options.get_max_payload(), 64 * 1024);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct BusOptions {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) max_payload: usize,
    pub(crate) send_timeout: Duration,
    pub(crate) peer_queue_bytes: usize,
    pub(crate) handshake_timeout: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            dir: None,
            max_payload: 1024 * 1024,
            send_timeout: Duration::from_secs(1),
            peer_queue_bytes: 1024 * 1024,
            handshake_timeout: Duration::from_secs(1),
        }
    }
}

impl BusOptions {
    /// The parent directory of the bus directory (overrides `EPHEMERAL_BUS_DIR`).
    pub fn dir(mut self, parent: impl AsRef<Path>) -> Self {
        self.dir = Some(parent.as_ref().to_path_buf());
        self
    }

    /// The largest payload accepted, in bytes (default 1 MiB). Larger is
    /// [`BusError::PayloadTooLarge`](crate::BusError::PayloadTooLarge). Every peer of a bus
    /// should use the same value: a receiver refuses (and counts) larger frames.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes.min(u32::MAX as usize / 2);
        self
    }

    /// How long `publish` waits for a full subscriber (default 1 s). After that the message is
    /// dropped for that subscriber only, counted, and reported to it as `Lagged`; later
    /// publishes do not wait for it again until it has caught up. This is what keeps a stopped
    /// or dead subscriber from blocking publishers.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }

    /// Bytes queued in this process for one peer before `publish` waits (default 1 MiB),
    /// on top of the kernel's socket buffer.
    pub fn peer_queue_bytes(mut self, bytes: usize) -> Self {
        self.peer_queue_bytes = bytes.max(1);
        self
    }

    /// How long opening, subscribing or [`flush`](crate::Bus::flush) waits for the other
    /// peers to acknowledge (default 1 s, one bound for all of them together); a peer that
    /// does not answer in time (stopped, say) is not waited for again until it answers, so
    /// it costs one such wait, not one per call. Until a peer has told its subscriptions
    /// (one stopped since before this handle joined), nothing is published to it: see
    /// [`Bus::publish`](crate::Bus::publish).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The maximum payload in bytes.
    #[must_use]
    pub fn get_max_payload(&self) -> usize {
        self.max_payload
    }

    /// The directory of the bus `name`: `<parent>/ephemeral-<name>`, the parent chosen as
    /// described on [`BusOptions`]. A [`BusName`] has no `/` and no `.`, so the result is
    /// always directly inside the parent.
    #[must_use]
    pub fn bus_dir(&self, name: &BusName) -> PathBuf {
        self.parent().join(format!("ephemeral-{name}"))
    }

    pub(crate) fn parent(&self) -> PathBuf {
        parent_from(self.dir.as_deref(), std::env::var_os(BUS_DIR_ENV))
    }
}

/// The parent directory: the option, else the environment variable unless it is empty (an
/// empty `EPHEMERAL_BUS_DIR=` means "not set", never the current directory), else
/// `/dev/shm`.
fn parent_from(option: Option<&Path>, env: Option<std::ffi::OsString>) -> PathBuf {
    option
        .map(Path::to_path_buf)
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PARENT))
}

/// The parent directory of buses when neither the option nor the environment names one.
const DEFAULT_PARENT: &str = "/dev/shm";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_environment_variable_means_the_default_parent() {
        assert_eq!(parent_from(None, Some("".into())), Path::new("/dev/shm"));
        assert_eq!(parent_from(None, None), Path::new("/dev/shm"));
        assert_eq!(
            parent_from(None, Some("/run/b".into())),
            Path::new("/run/b")
        );
        assert_eq!(
            parent_from(Some(Path::new("/opt")), Some("/run/b".into())),
            Path::new("/opt")
        );
    }
}
