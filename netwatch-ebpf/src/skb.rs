//! Reading headers of a socket buffer at the tc hooks.

use aya_ebpf::{
    bindings::bpf_hdr_start_off::BPF_HDR_START_NET, helpers::bpf_skb_load_bytes_relative,
    programs::TcContext,
};

/// The one place tc programs read packet bytes: `N` bytes at `offset` from the network
/// header, through the helper that checks bounds and reaches past the linear part.
#[inline(always)]
pub fn load<const N: usize>(ctx: &TcContext, offset: u32) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    let rc = unsafe {
        bpf_skb_load_bytes_relative(
            ctx.skb.skb as *const _,
            offset,
            bytes.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    (rc == 0).then_some(bytes)
}
