//! netwatch's kernel programs: a receive counter (at XDP or at tc ingress, as the agent
//! chooses), a tc egress counter of TCP data segments, and TCP tracepoints. Each entry point is one line that calls the function doing
//! the work; none of them ever changes what the kernel does with a packet.
#![no_std]
#![no_main]

mod events;
mod ingress;
mod maps;
mod rx;
mod skb;
mod tcp;
mod tx;
mod xdp;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, tracepoint, xdp},
    programs::{TcContext, TracePointContext, XdpContext},
};
use netwatch_common::TCX_NEXT;

#[xdp]
pub fn netwatch_xdp(ctx: XdpContext) -> u32 {
    rx::count_packet(&xdp::XdpPacket(&ctx));
    xdp_action::XDP_PASS
}

#[classifier]
pub fn netwatch_rx(ctx: TcContext) -> i32 {
    rx::count_packet(&ingress::TcPacket(&ctx));
    TCX_NEXT
}

#[classifier]
pub fn netwatch_tx(ctx: TcContext) -> i32 {
    tx::count_tx(&ctx);
    TCX_NEXT
}

#[tracepoint]
pub fn netwatch_tcp_retransmit(ctx: TracePointContext) -> u32 {
    tcp::on_retransmit(&ctx);
    0
}

#[tracepoint]
pub fn netwatch_tcp_reset(ctx: TracePointContext) -> u32 {
    tcp::on_reset_received(&ctx);
    0
}

#[tracepoint]
pub fn netwatch_sock_state(ctx: TracePointContext) -> u32 {
    tcp::on_sock_state(&ctx);
    0
}

// bpf_probe_read_kernel, which reads tracepoint records at run-time offsets, is GPL-only.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this: it is never called.
    loop {}
}
