//! Fuzz target: see `bus/tests/support/frame_check.rs` for the property checked.
#![no_main]

#[path = "../../bus/tests/support/frame_check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::frame(data));
