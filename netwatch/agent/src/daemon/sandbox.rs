//! The seccomp filter the agent runs under once attached: an allow-list of the system calls
//! it still makes (measured with strace over the privileged tests, then reasoned about),
//! with arguments narrowed where that is cheap: files open read-only, sockets of the four
//! families it uses, bpf() only to read and update maps and attach to new interfaces. Any
//! other call fails with EPERM: no exec, no ptrace, no mount, no writing files, no loading
//! programs. Applied to every thread (TSYNC), after NoNewPrivs.

use std::collections::BTreeMap;

use seccompiler::{
    apply_filter_all_threads, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Calls allowed with any arguments.
const ANY: &[i64] = &[
    // memory
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    // threads, time, signals, exit
    libc::SYS_futex,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_sigaltstack,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // descriptors
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_access,
    libc::SYS_pipe2,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_poll,
    libc::SYS_ppoll,
    // sockets already of an allowed family
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_shutdown,
    // identity and capabilities (reading them, and lowering a thread's own)
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_getrandom,
    libc::SYS_uname,
    libc::SYS_prlimit64,
];

/// bpf() commands (include/uapi/linux/bpf.h): maps, program info, links to new interfaces.
const BPF_COMMANDS: &[u64] = &[
    1,  // BPF_MAP_LOOKUP_ELEM
    2,  // BPF_MAP_UPDATE_ELEM
    3,  // BPF_MAP_DELETE_ELEM
    4,  // BPF_MAP_GET_NEXT_KEY
    15, // BPF_OBJ_GET_INFO_BY_FD
    28, // BPF_LINK_CREATE
];

/// Socket families: Unix (clients), IPv4 and IPv6 (probes, name look-ups), netlink.
const FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// ioctl requests: an interface's index by name (attaching tc), non-blocking and close-on-exec.
const IOCTLS: &[u64] = &[libc::SIOCGIFINDEX, libc::FIONBIO, libc::FIOCLEX];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("building the seccomp filter failed: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("installing the seccomp filter failed: {0}")]
    Install(#[from] seccompiler::Error),
}

/// Installs the filter on every thread. Needs NoNewPrivs (or CAP_SYS_ADMIN). Returns false
/// where this architecture has no filter (the agent then runs without one, and says so).
pub fn install() -> Result<bool, SandboxError> {
    let Ok(arch) = TargetArch::try_from(std::env::consts::ARCH) else {
        return Ok(false);
    };
    let program: BpfProgram = filter(arch)?.try_into()?;
    apply_filter_all_threads(&program)?;
    Ok(true)
}

fn filter(arch: TargetArch) -> Result<SeccompFilter, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ANY.iter().map(|call| (*call, Vec::new())).collect();
    rules.insert(libc::SYS_bpf, one_of(0, BPF_COMMANDS)?);
    rules.insert(libc::SYS_socket, one_of(0, FAMILIES)?);
    rules.insert(libc::SYS_ioctl, one_of(1, IOCTLS)?);
    // Read-only opens: /proc/self (its own costs), /etc (name look-ups).
    rules.insert(
        libc::SYS_openat,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(libc::O_ACCMODE as u64),
            libc::O_RDONLY as u64,
        )?])?],
    );
    // Thread names (tokio's workers), and nothing else of prctl.
    rules.insert(libc::SYS_prctl, one_of(0, &[libc::PR_SET_NAME as u64])?);
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
}

/// Rules allowing the call when argument `arg` is one of `values`.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values
        .iter()
        .map(|value| {
            SeccompRule::new(vec![SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                *value,
            )?])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_compiles_for_this_machine() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a supported arch");
        let program: Result<BpfProgram, _> = filter(arch).unwrap().try_into();
        assert!(program.is_ok_and(|p| !p.is_empty()));
    }
}
