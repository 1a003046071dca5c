//! One netlink message as the kernel sends it on the agent's event socket.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = netwatch_agent::netlink::decode_bytes(data);
});
