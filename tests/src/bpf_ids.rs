//! Whether a BPF program, known by id, still exists in the kernel.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use crate::sys_bpf::{bpf_fd, Attr, BPF_PROG_GET_FD_BY_ID};

/// Whether program `id` exists right now (BPF_PROG_GET_FD_BY_ID fails with ENOENT once it is
/// gone; the fd it returns otherwise is closed again at once).
pub fn prog_exists(id: u32) -> bool {
    let mut attr = Attr::new().u32_at(0, id);
    // SAFETY: this command's attr holds no pointers.
    match unsafe { bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr) } {
        Ok(_fd) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("BPF_PROG_GET_FD_BY_ID for program {id}: {e}"),
    }
}

/// Waits up to `limit` for program `id` to disappear; returns whether it did.
///
/// The kernel frees a program after an RCU grace period once its last reference is dropped,
/// so it can outlive the process that loaded it by a moment.
pub fn wait_prog_gone(id: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !prog_exists(id) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
