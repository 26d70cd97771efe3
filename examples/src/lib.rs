//! The demo and the runnable examples of `ephemeral`.
//!
//! Run the demo with `cargo run -p ephemeral-examples --bin demo`, and an example
//! with `cargo run -p ephemeral-examples --bin <name>`. Nothing depends on this crate.

#![forbid(unsafe_code)]

/// The code blocks of README.md, compiled and run as doctests so the first example a newcomer
/// reads always works.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
