//! A client event as the Socket.IO gateway hands it to the request parser: the first byte picks
//! the event name, the rest is the JSON payload (or no payload when it is not JSON). The parser
//! must return an input or an error reply for every payload, and an error reply must serialise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::socket::{parse, ClientEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else { return };
    let event = ClientEvent::ALL[usize::from(pick) % ClientEvent::ALL.len()];
    let value = serde_json::from_slice::<serde_json::Value>(payload).ok();
    match parse(event, "fuzz-user", "fuzz-sid", value, 4096) {
        Ok(_) => {}
        Err(reply) => {
            let _ = reply.to_json();
        }
    }
});
