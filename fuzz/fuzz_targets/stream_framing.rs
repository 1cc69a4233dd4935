//! A TCP/TLS byte stream split into frames the way the stream driver does it: a PROXY protocol
//! header, when the bytes start like one, must never claim more than the bytes at hand or the
//! driver's cap; every frame length must be positive, within the bytes at hand and at most
//! `MAX_FRAME`, and every frame then goes through the message parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turn_server::proto::framing::{frame_len, MAX_FRAME};
use turn_server::proto::fuzzing::parse_message;
use turn_server::proto::proxy_header::{self, ProxyParse, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let ProxyParse::Parsed { header_len, .. } = proxy_header::parse(data) {
        assert!(header_len > 0 && header_len <= data.len() && header_len <= MAX_HEADER, "header {header_len}");
        rest = &data[header_len..];
    }
    while let Ok(Some(len)) = frame_len(rest) {
        assert!(len > 0 && len <= rest.len() && len <= MAX_FRAME, "frame_len {len} of {}", rest.len());
        parse_message(&rest[..len]);
        rest = &rest[len..];
    }
});
