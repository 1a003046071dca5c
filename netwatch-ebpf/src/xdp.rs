//! The receive counter at the XDP hook: what `rx.rs` needs, read from the packet's bytes.

use aya_ebpf::programs::XdpContext;
use netwatch_common::{DestKey, AF_INET, AF_INET6};

use crate::rx::Received;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// Source address offsets within the IPv4 and IPv6 headers.
const IPV4_SADDR: usize = 12;
const IPV6_SADDR: usize = 8;

pub struct XdpPacket<'a>(pub &'a XdpContext);

impl Received for XdpPacket<'_> {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.0.ingress_ifindex() as u32
    }

    /// The program is not frags-aware, so the kernel hands it linear packets: this is the
    /// whole length.
    #[inline(always)]
    fn len(&self) -> u64 {
        (self.0.data_end() - self.0.data()) as u64
    }

    /// Behind at most one VLAN tag.
    #[inline(always)]
    fn source(&self) -> Option<DestKey> {
        let mut ethertype = u16::from_be(self.read::<u16>(12)?);
        let mut l3 = ETH_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = u16::from_be(self.read::<u16>(16)?);
            l3 += 4;
        }
        let mut key = DestKey {
            family: 0,
            _pad: 0,
            addr: [0; 16],
        };
        match ethertype {
            ETH_P_IP => {
                key.family = AF_INET;
                let v4 = self.read::<[u8; 4]>(l3 + IPV4_SADDR)?;
                key.addr[..4].copy_from_slice(&v4);
            }
            ETH_P_IPV6 => {
                key.family = AF_INET6;
                key.addr = self.read::<[u8; 16]>(l3 + IPV6_SADDR)?;
            }
            _ => return None,
        }
        Some(key)
    }
}

impl XdpPacket<'_> {
    /// The one place packet bytes are read: bounds-checked against the packet's end, as the
    /// verifier requires.
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let start = self.0.data() + offset;
        if start + core::mem::size_of::<T>() > self.0.data_end() {
            return None;
        }
        Some(unsafe { core::ptr::read_unaligned(start as *const T) })
    }
}
