//! Progress signals for any byte stream: a download, a file copy, an upload.
//!
//! # When to use it
//!
//! Wrap a `Stream` of byte chunks (`Result<B, E>` with `B: AsRef<[u8]>`, the shape of
//! `reqwest::Response::bytes_stream`, `tokio_util::io::ReaderStream` and most HTTP bodies) in
//! [`Progress`] and it raises, on the sink:
//!
//! * `progress.<name>.started` on the first poll,
//! * `progress.<name>.percent:<n>` each time a multiple of `step` percent is passed (only
//!   when the total size is known),
//! * `progress.<name>.done` (header `bytes`) at the end of the stream,
//! * `progress.<name>.failed` (header `error`) on the first error item, or when the stream is
//!   dropped after its first poll (once `started` was raised) and before its end (header
//!   `error = "dropped"`). A stream dropped before its first poll never started: it raises
//!   nothing at all.
//!
//! On a sink that takes no header (`max_headers(0)`), `done` and `failed` are raised without
//! theirs rather than not at all.
//!
//! The wrapper never changes the stream: every item, errors included, passes through in
//! order, and a stream that goes on after an error goes on through it. After `failed` no
//! other progress signal is raised (no `percent`, no `done`).
//!
//! This is the .NET original's signaling HTTP client without tying you to one HTTP crate.
//! Signals are raised synchronously as chunks pass; the wrapper adds no task and no buffer.

mod stream;

pub use stream::{Progress, ProgressError};
