//! Any byte string handed to the STUN/TURN message parser must be parsed or refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = turn_server::proto::fuzzing::parse_message(data);
});
