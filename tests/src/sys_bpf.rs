//! The raw bpf(2) system call, for the few commands the tests need without a loader library.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `union bpf_attr`, as bytes: each command fills the fields it uses at their offsets
/// (include/uapi/linux/bpf.h). Larger than any field used here; the kernel accepts a shorter
/// attr than its own and requires the unused tail of a longer one to be zero.
#[repr(C, align(8))]
pub struct Attr([u8; 128]);

impl Attr {
    pub fn new() -> Self {
        Attr([0; 128])
    }

    pub fn u32_at(mut self, offset: usize, value: u32) -> Self {
        self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        self
    }

    pub fn u64_at(mut self, offset: usize, value: u64) -> Self {
        self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        self
    }

    pub fn bytes_at(mut self, offset: usize, value: &[u8]) -> Self {
        self.0[offset..offset + value.len()].copy_from_slice(value);
        self
    }
}

pub const BPF_PROG_LOAD: libc::c_int = 5;
pub const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
pub const BPF_LINK_CREATE: libc::c_int = 28;

/// Runs bpf(`cmd`, `attr`); the result is a non-negative integer, usually a new fd.
///
/// # Safety
/// Every pointer stored in `attr` must be valid for the command for the duration of the call.
pub unsafe fn bpf(cmd: libc::c_int, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live buffer of the size passed; the caller vouches for its pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Like [`bpf`] for commands that return a new file descriptor.
///
/// # Safety
/// As for [`bpf`].
pub unsafe fn bpf_fd(cmd: libc::c_int, attr: &mut Attr) -> io::Result<OwnedFd> {
    // SAFETY: forwarded to the caller.
    let fd = unsafe { bpf(cmd, attr)? };
    // SAFETY: these commands return a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The id of the program behind `prog_fd` (BPF_OBJ_GET_INFO_BY_FD; `id` follows `type` in
/// struct bpf_prog_info).
pub fn prog_id(prog_fd: &OwnedFd) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut info = [0u32; 2];
    let mut attr = Attr::new()
        .u32_at(0, prog_fd.as_raw_fd() as u32)
        .u32_at(4, std::mem::size_of_val(&info) as u32)
        .u64_at(8, info.as_mut_ptr() as u64);
    // SAFETY: `info` outlives the call and info_len is its size.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(info[1])
}
