//! Reads the few struct member offsets netwatch needs from the kernel's BTF
//! (/sys/kernel/btf/vmlinux), so the kernel programs follow a socket to its network
//! namespace, and read a buffer's segment count and a socket's RTO backoff, on any kernel
//! layout. The format: Documentation/bpf/btf.rst.
//!
//! Written here rather than taken from a crate: five offsets need ~150 lines, and the one
//! maintained BTF crate (btf-rs) is LGPL, which a statically linked MIT/Apache binary avoids.

use std::collections::HashMap;

use netwatch_common::{NetnsFilter, SocketOffsets};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;

/// A struct's members as (byte offset, type id): the named ones by name, and the anonymous
/// structs and unions whose members C reaches as its own.
#[derive(Default)]
struct Members {
    named: HashMap<String, (u32, u32)>,
    anonymous: Vec<(u32, u32)>,
}

/// What netwatch keeps of one BTF type.
enum Type {
    Aggregate(Members),
    Typedef(u32),
    Other,
}

/// The structs, unions and typedefs of a BTF blob.
pub struct Btf {
    /// By type id; id 0 is `void`.
    types: Vec<Type>,
    /// Named structs and unions to their type id.
    by_name: HashMap<String, u32>,
}

impl Btf {
    /// Parses `data`; `None` if it is not BTF this reader understands.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
        if u16_at(0)? != MAGIC {
            return None;
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let str_off = u32_at(16)? as usize;
        let types = hdr_len + type_off;
        let strings = hdr_len + str_off;
        let name = |offset: u32| -> Option<String> {
            let start = strings + offset as usize;
            let end = start + data.get(start..)?.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&data[start..end]).into_owned())
        };
        let mut table = vec![Type::Other];
        let mut by_name = HashMap::new();
        let mut at = types;
        while at < types + type_len {
            let (name_off, info) = (u32_at(at)?, u32_at(at + 4)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfields = info >> 31 == 1;
            at += 12;
            let extra = match kind {
                1 | 14 | 17 => 4,             // int, var, decl_tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => vlen * 12, // struct, union, datasec, enum64
                6 | 13 => vlen * 8,           // enum, func_proto
                2 | 7..=12 | 16 | 18 => 0, // ptr, fwd, typedef, qualifiers, func, float, type_tag
                _ => return None,
            };
            let id = table.len() as u32;
            table.push(match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Members::default();
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset_bits = u32_at(m + 8)?;
                        let bits = if bitfields {
                            offset_bits & 0xff_ffff
                        } else {
                            offset_bits
                        };
                        let member = (bits / 8, u32_at(m + 4)?);
                        match u32_at(m)? {
                            0 => members.anonymous.push(member),
                            named => {
                                members.named.insert(name(named)?, member);
                            }
                        }
                    }
                    if name_off != 0 {
                        // The first definition wins; later duplicates are rare and equal.
                        by_name.entry(name(name_off)?).or_insert(id);
                    }
                    Type::Aggregate(members)
                }
                KIND_TYPEDEF => Type::Typedef(u32_at(at - 4)?),
                _ => Type::Other,
            });
            at += extra;
        }
        Some(Self {
            types: table,
            by_name,
        })
    }

    /// Offset and type of `member` in the aggregate `id` (through typedefs), looking inside
    /// anonymous structs and unions too, as C does.
    fn member(&self, mut id: u32, member: &str) -> Option<(u32, u32)> {
        loop {
            match self.types.get(id as usize)? {
                Type::Typedef(target) => id = *target,
                Type::Aggregate(members) => {
                    if let Some(found) = members.named.get(member) {
                        return Some(*found);
                    }
                    return members.anonymous.iter().find_map(|(offset, anonymous)| {
                        let (inner, ty) = self.member(*anonymous, member)?;
                        Some((offset + inner, ty))
                    });
                }
                Type::Other => return None,
            }
        }
    }

    /// Byte offset of `path` (member, member of that member...) in `struct name`.
    pub fn path_offset(&self, name: &str, path: &[&str]) -> Option<u32> {
        let mut id = *self.by_name.get(name)?;
        let mut total = 0;
        for member in path {
            let (offset, ty) = self.member(id, member)?;
            total += offset;
            id = ty;
        }
        Some(total)
    }
}

/// The filter that makes the TCP programs count only sockets of the namespace with inode
/// `inum`: `sk->__sk_common.skc_net.net->ns.inum`. `None` if this kernel's BTF lacks a piece.
pub fn netns_filter(btf: &Btf, inum: u32) -> Option<NetnsFilter> {
    // skc_net is a possible_net_t: a typedef of an anonymous struct wrapping the pointer.
    Some(NetnsFilter {
        enabled: 1,
        inum,
        sk_net: btf.path_offset("sock", &["__sk_common", "skc_net", "net"])?,
        net_inum: btf.path_offset("net", &["ns", "inum"])?,
    })
}

/// Where a retransmitted buffer's segment count (`TCP_SKB_CB(skb)->tcp_gso_segs`, what
/// `tcp_skb_pcount()` returns) and the socket's RTO backoff are. `None` if a piece is missing.
pub fn socket_offsets(btf: &Btf) -> Option<SocketOffsets> {
    Some(SocketOffsets {
        enabled: 1,
        skb_gso_segs: btf.path_offset("sk_buff", &["cb"])?
            + btf.path_offset("tcp_skb_cb", &["tcp_gso_segs"])?,
        icsk_backoff: btf.path_offset("inet_connection_sock", &["icsk_backoff"])?,
        _pad: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct outer { int a; struct inner in; }`, a bitfield struct, and
    /// `struct wrap { int a; union { int x; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0outer\0a\0in\0inner\0x\0y\0bits\0wrap\0";
        let at = |s: &str| {
            strings
                .windows(s.len() + 1)
                .position(|w| &w[..s.len()] == s.as_bytes() && w[s.len()] == 0)
                .unwrap() as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            words
                .iter()
                .for_each(|w| types.extend_from_slice(&w.to_le_bytes()))
        };
        push(&[0, 1 << 24, 4, 0x20]); // [1] int, 4 bytes
        push(&[at("inner"), 4 << 24 | 2, 8]); // [2] struct inner { x @0, y @32 bits }
        push(&[at("x"), 1, 0]);
        push(&[at("y"), 1, 32]);
        push(&[at("outer"), 4 << 24 | 2, 12]); // [3] struct outer { a @0, in @32 bits }
        push(&[at("a"), 1, 0]);
        push(&[at("in"), 2, 32]);
        push(&[at("bits"), 1 << 31 | 4 << 24 | 1, 4]); // [4] bitfield struct: 3 bits at bit 8
        push(&[at("x"), 1, 3 << 24 | 8]);
        push(&[0, 5 << 24 | 1, 4]); // [5] anonymous union { x @0 }
        push(&[at("x"), 1, 0]);
        push(&[at("wrap"), 4 << 24 | 2, 8]); // [6] struct wrap { a @0, <anonymous> @32 bits }
        push(&[at("a"), 1, 0]);
        push(&[0, 5, 32]);
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]); // version, flags
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn member_offsets_are_read_in_bytes() {
        let btf = Btf::parse(&blob()).expect("valid BTF");
        assert_eq!(btf.path_offset("outer", &["in"]), Some(4));
        assert_eq!(btf.path_offset("inner", &["y"]), Some(4));
        assert_eq!(btf.path_offset("bits", &["x"]), Some(1));
        assert_eq!(btf.path_offset("outer", &["nope"]), None);
        assert_eq!(btf.path_offset("outer", &["in", "y"]), Some(8));
    }

    #[test]
    fn members_of_anonymous_unions_are_found_as_c_finds_them() {
        let btf = Btf::parse(&blob()).expect("valid BTF");
        assert_eq!(btf.path_offset("wrap", &["x"]), Some(4));
        assert_eq!(btf.path_offset("wrap", &["a"]), Some(0));
    }

    #[test]
    fn not_btf_is_refused() {
        assert!(Btf::parse(b"hello world, this is not btf").is_none());
    }

    #[test]
    fn this_kernels_socket_namespace_offsets_are_found() {
        let Ok(data) = std::fs::read(VMLINUX_BTF) else {
            return; // a kernel without BTF: the agent then counts every namespace
        };
        let btf = Btf::parse(&data).expect("the kernel's BTF parses");
        let filter = netns_filter(&btf, 1).expect("sock, net and ns_common are described");
        assert!(filter.sk_net > 0 && filter.net_inum > 0, "{filter:?}");
        let offsets = socket_offsets(&btf).expect("sk_buff, tcp_skb_cb and icsk are described");
        // cb[] sits past the list pointers and the socket pointer; tcp_gso_segs after seq
        // and end_seq.
        assert!(
            offsets.skb_gso_segs >= 32 && offsets.icsk_backoff > 0,
            "{offsets:?}"
        );
    }
}
