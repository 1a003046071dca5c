//! The one harness of netwatch's privileged integration tests and of its benchmarks
//! ([`bench`], run by the `netwatch-bench` binary): namespaces, veth topologies built over
//! rtnetlink, bounded traffic, nftables faults, a foreign XDP program, the agent process and
//! the verdicts it serves, one clock and one source of random bytes.
//!
//! Every test builds its own namespaces (`nwt-<pid>-<n>`) and tears them down on drop, so the
//! host's interfaces, routes and firewall are never touched. Traffic only flows between those
//! namespaces, on addresses from 198.18.0.0/15 and fd00:6e77::/32.

pub mod agent;
pub mod bench;
pub mod bpf_ids;
pub mod build_hosts;
pub mod build_site;
pub mod cli;
pub mod clock;
pub mod connects;
pub mod download;
pub mod dual;
pub mod foreign_xdp;
pub mod history;
pub mod metrics;
pub mod mirrors;
pub mod netns;
pub mod nft;
pub mod outage_site;
pub mod random;
pub mod rtnl;
pub mod servers;
mod sys_bpf;
pub mod topology;
pub mod traffic;
pub mod truth;
pub mod users;
pub mod verdicts;
pub mod worker;

use std::sync::atomic::{AtomicU32, Ordering};

/// A number unique within this test process; names and address blocks derive from it, so tests
/// running in parallel never share a namespace, a /24 or a /64.
pub fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Panics, with what is missing, unless the process can load eBPF and manage namespaces.
///
/// A privileged test never passes silently without privileges: `cargo xtask test` decides whether
/// to run these tests at all.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "netwatch-tests need root (euid is {euid}): run them with `cargo xtask test`"
    );
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux");
    assert!(
        btf.exists(),
        "netwatch-tests need a kernel with BTF ({} is missing)",
        btf.display()
    );
}
