//! The socket protocol both ways: a request line as the agent reads it from any local user,
//! and a reply line as a client reads it from the agent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netwatch_client::protocol::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    let _ = Request::parse(data);
    let _ = serde_json::from_slice::<Reply>(data);
});
