//! The properties the `frame` fuzz target checks, shared with `tests/fuzz_replay.rs`.

use bytes::BytesMut;
use ephemeral_bus::frame::{
    Frame, FrameCodec, FrameError, FramingError, LEN_PREFIX, decode, encode,
};
use tokio_util::codec::Decoder;

/// The bound the stream check gives its codec: small, so fuzzed lengths cross it often.
const MAX_FRAME: usize = 4096;

/// `decode` never panics on any bytes; whatever it accepts re-encodes to bytes that decode
/// again and encode to the same bytes (the encoding is canonical). And the same bytes read
/// as a stream, in reads of any size, cut into the frames their length prefixes say, each
/// decoded as `decode` decodes it alone.
pub(crate) fn frame(data: &[u8]) {
    stream(data);
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

/// What a stream reader must make of `data`: the frames (each as `decode` sees it alone),
/// then how the stream ends.
enum End {
    /// It ends between frames.
    Clean,
    /// It ends inside a frame.
    Cut,
    /// A length prefix above the bound.
    TooLong(usize),
}

fn stream(data: &[u8]) {
    let mut want = Vec::new();
    let mut at = 0;
    let end = loop {
        let Some(prefix) = data.get(at..at + LEN_PREFIX) else {
            break if at == data.len() {
                End::Clean
            } else {
                End::Cut
            };
        };
        let declared = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
        if declared > MAX_FRAME {
            break End::TooLong(declared);
        }
        let Some(whole) = data.get(at..at + LEN_PREFIX + declared) else {
            break End::Cut;
        };
        want.push(canonical(decode(whole)));
        at += LEN_PREFIX + declared;
    };
    // Two read sizes: one byte at a time, and a size taken from the data.
    let chunk = usize::from(data.first().copied().unwrap_or(0)).max(1);
    for chunk in [1, chunk] {
        let mut codec = FrameCodec::new(MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut failed = None;
        'read: for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(item)) => got.push(canonical(item)),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break 'read;
                    }
                }
            }
        }
        if failed.is_none() {
            loop {
                match codec.decode_eof(&mut buf) {
                    Ok(Some(item)) => got.push(canonical(item)),
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        assert_eq!(got, want, "frames read in chunks of {chunk} from {data:?}");
        match (&end, failed) {
            (End::Clean, None) | (End::Cut, Some(FramingError::Io(_))) => {}
            (End::TooLong(n), Some(FramingError::TooLong { declared, max })) => {
                assert_eq!((*n, MAX_FRAME), (declared, max));
            }
            (_, failed) => panic!("the stream {data:?} ended with {failed:?}"),
        }
    }
}

/// A decoded frame as its encoding (frames with a NaN header are not equal to themselves,
/// their encodings are), or the error.
fn canonical(decoded: Result<Frame, FrameError>) -> Result<Vec<u8>, FrameError> {
    decoded.map(|frame| {
        let mut bytes = Vec::new();
        encode(&frame, &mut bytes);
        bytes
    })
}
