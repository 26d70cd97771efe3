//! The baselines: what a Rust user would write instead of `ephemeral`, written in full.
//!
//! * [`pool`]: a 16-task `async_channel` pool, `Semaphore` + `tokio::spawn` per item, tower
//!   `Buffer` + `ConcurrencyLimit` with client tasks.
//! * [`window`]: `Mutex<VecDeque<(String, Instant)>>` as a signal window, and its
//!   `*`/`?` wildcard scan.
//! * [`fanout`]: lossless fan-out to several receivers (used with `tokio::sync::broadcast` and
//!   with our subscriptions alike, so both sides run the same harness).

pub mod fanout;
pub mod pool;
pub mod window;
