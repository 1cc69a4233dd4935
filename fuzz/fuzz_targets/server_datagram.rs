//! Any datagram arriving at the relay (STUN request, indication, ChannelData, garbage) goes
//! through the sans-IO server core; it must answer, drop or relay it, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = turn_server::proto::fuzzing::server_datagram(data);
});
