//! A TCP/TLS byte stream split into frames the way the stream driver does it: every frame length
//! must be positive, within the bytes at hand and at most `MAX_FRAME`, and every frame then goes
//! through the message parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_server::proto::framing::{frame_len, MAX_FRAME};
use turn_server::proto::fuzzing::parse_message;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(len)) = frame_len(rest) {
        assert!(len > 0 && len <= rest.len() && len <= MAX_FRAME, "frame_len {len} of {}", rest.len());
        parse_message(&rest[..len]);
        rest = &rest[len..];
    }
});
