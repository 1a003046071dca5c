//! What the agent costs and what it lost, gathered for the metrics exporter.

use crate::{ebpf::KernelPrograms, metrics::AgentCosts};

/// Reads the kernel programs' accounting and this process's own resource use.
pub fn gather(
    probes: &KernelPrograms,
    bpf_stats_enabled: bool,
    overruns: u64,
    fast_link_checks: u64,
    events_received: u64,
) -> AgentCosts {
    let (rss_bytes, cpu_seconds) = process_usage().unwrap_or((0, 0.0));
    AgentCosts {
        programs: probes.program_costs(),
        bpf_stats_enabled,
        netlink_overruns: overruns,
        kernel: probes.kernel_stats().unwrap_or_default(),
        tcp_events_received: events_received,
        fast_link_checks,
        rss_bytes,
        cpu_seconds,
    }
}

/// Resident bytes (/proc/self/statm) and user+system CPU seconds (/proc/self/stat).
fn process_usage() -> Option<(u64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces:
    // utime and stime are the 14th and 15th fields overall.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((
        resident * page.max(1) as u64,
        (utime + stime) as f64 / ticks.max(1) as f64,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_uses_some_memory() {
        let (rss, cpu) = super::process_usage().expect("procfs is readable");
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }
}
