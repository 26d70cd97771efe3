//! The demo and the runnable examples of `ephemeral`.
//!
//! Run the demo with `cargo run --release -p ephemeral-examples --bin demo`, and an example
//! with `cargo run -p ephemeral-examples --example <name>`. Nothing depends on this crate.

#![forbid(unsafe_code)]
