//! Fuzz target: see `core/tests/support/fuzz_checks.rs` for the property checked.
#![no_main]

#[path = "../../core/tests/support/fuzz_checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::pattern(data));
