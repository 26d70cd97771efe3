//! The property the `frame` fuzz target checks, shared with `tests/fuzz_replay.rs`.

use ephemeral_bus::frame::{decode, encode};

/// `decode` never panics on any bytes; whatever it accepts re-encodes to bytes that decode
/// again and encode to the same bytes (the encoding is canonical).
pub(crate) fn frame(data: &[u8]) {
    let Ok(frame) = decode(data) else {
        return;
    };
    let mut first = Vec::new();
    encode(&frame, &mut first);
    let again = decode(&first).expect("an encoded frame decodes");
    let mut second = Vec::new();
    encode(&again, &mut second);
    assert_eq!(first, second, "re-encoding is not stable for {data:?}");
}
