//! Side-by-side measurements of `ephemeral` against the baselines a Rust user would otherwise
//! reach for. See the `compare` binary.

#![forbid(unsafe_code)]
