//! "Another tool's" XDP program: a two-instruction XDP_PASS program loaded and attached with the
//! raw bpf(2) syscall, the way a tool that netwatch does not know would do it.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::netns::NetNs;
use crate::sys_bpf::{bpf_fd, prog_id, Attr, BPF_LINK_CREATE, BPF_PROG_LOAD};

const BPF_PROG_TYPE_XDP: u32 = 6;
/// enum bpf_attach_type: BPF_XDP.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_PASS: i32 = 2;

/// An XDP program attached through a BPF link; dropping the guard closes the link, which
/// detaches the program, and the program fd, which frees it.
#[derive(Debug)]
pub struct ForeignXdp {
    // Field order is drop order: the link goes before the program.
    _link: OwnedFd,
    _prog: OwnedFd,
    /// The program's kernel id, as netlink reports it on the interface.
    pub prog_id: u32,
}

impl ForeignXdp {
    /// Loads the program and attaches it in SKB (generic) mode to link `ifindex` of `ns`.
    pub fn attach(ns: &NetNs, ifindex: u32) -> Self {
        ns.run(|| Self::attach_here(ifindex))
    }

    /// Like [`ForeignXdp::attach`], from a thread already inside the link's namespace.
    pub fn attach_here(ifindex: u32) -> Self {
        let prog = load();
        let prog_id = prog_id(&prog).expect("BPF_OBJ_GET_INFO_BY_FD on the foreign program");
        // struct { prog_fd; target_ifindex; attach_type; flags; } link_create
        let mut attr = Attr::new()
            .u32_at(0, prog.as_raw_fd() as u32)
            .u32_at(4, ifindex)
            .u32_at(8, BPF_XDP)
            .u32_at(12, XDP_FLAGS_SKB_MODE);
        // SAFETY: this command's attr holds no pointers.
        let link = unsafe { bpf_fd(BPF_LINK_CREATE, &mut attr) }
            .unwrap_or_else(|e| panic!("BPF_LINK_CREATE of an XDP link on ifindex {ifindex}: {e}"));
        ForeignXdp {
            _link: link,
            _prog: prog,
            prog_id,
        }
    }
}

/// BPF_PROG_LOAD of `r0 = XDP_PASS; exit`, named "other_tool".
fn load() -> OwnedFd {
    // struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }
    let insn = |code: u8, imm: i32| u64::from(code) | (u64::from(imm as u32) << 32);
    let insns = [
        insn(0xb7, XDP_PASS), // BPF_ALU64 | BPF_MOV | BPF_K: r0 = imm
        insn(0x95, 0),        // BPF_JMP | BPF_EXIT
    ];
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    // Offsets in the BPF_PROG_LOAD part of union bpf_attr: prog_type 0, insn_cnt 4, insns 8,
    // license 16, log_level 24, log_size 28, log_buf 32, prog_name 48, expected_attach_type 68.
    let mut attr = Attr::new()
        .u32_at(0, BPF_PROG_TYPE_XDP)
        .u32_at(4, insns.len() as u32)
        .u64_at(8, insns.as_ptr() as u64)
        .u64_at(16, license.as_ptr() as u64)
        .u32_at(24, 1)
        .u32_at(28, log.len() as u32)
        .u64_at(32, log.as_mut_ptr() as u64)
        .bytes_at(48, b"other_tool\0")
        .u32_at(68, BPF_XDP);
    // SAFETY: insns, license and log outlive the call; the sizes passed are theirs.
    unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) }.unwrap_or_else(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        panic!(
            "BPF_PROG_LOAD of the foreign XDP program: {e}\nverifier log:\n{}",
            String::from_utf8_lossy(&log[..end])
        )
    })
}
