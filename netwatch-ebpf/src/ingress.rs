//! The receive counter at tc ingress (tcx): what `rx.rs` needs, read from the socket buffer.
//! Where a driver has no native XDP, generic XDP copies every non-linear buffer before its
//! program runs; tc ingress sees the same packets without that copy.

use aya_ebpf::programs::TcContext;
use netwatch_common::{DestKey, AF_INET, AF_INET6};

use crate::{rx::Received, skb::load};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
/// Source address offsets within the IPv4 and IPv6 headers.
const IPV4_SADDR: u32 = 12;
const IPV6_SADDR: u32 = 8;

pub struct TcPacket<'a>(pub &'a TcContext);

impl Received for TcPacket<'_> {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        unsafe { (*self.0.skb.skb).ifindex }
    }

    /// tcx runs ingress programs with the Ethernet header pushed back on, so the buffer's
    /// length counts it, as the device does.
    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(unsafe { (*self.0.skb.skb).len })
    }

    /// The kernel has already taken any VLAN tag off, so the protocol is the packet's own.
    #[inline(always)]
    fn source(&self) -> Option<DestKey> {
        let protocol = unsafe { (*self.0.skb.skb).protocol };
        let mut key = DestKey {
            family: 0,
            _pad: 0,
            addr: [0; 16],
        };
        match u16::from_be(protocol as u16) {
            ETH_P_IP => {
                key.family = AF_INET;
                let v4: [u8; 4] = load(self.0, IPV4_SADDR)?;
                key.addr[..4].copy_from_slice(&v4);
            }
            ETH_P_IPV6 => {
                key.family = AF_INET6;
                key.addr = load(self.0, IPV6_SADDR)?;
            }
            _ => return None,
        }
        Some(key)
    }
}
