//! Small, composable building blocks on the public API of [`ephemeral`].
//!
//! # Overview
//!
//! Each atom is a module with its own docs, example and tests, and raises signals into a
//! [`SignalSink`](ephemeral::SignalSink) when one is given. Atoms use only the public API of
//! the core crate, so anything they do, your own code can do too.
//!
//! The atoms planned for this crate (retry, batching, rate limiting, services, presets and a
//! sliding cache) land one module at a time; modules listed here are the ones that exist.
//!
//! # Supported Rust
//!
//! Rust 1.95 or later (edition 2024).

#![forbid(unsafe_code)]

pub mod service;
