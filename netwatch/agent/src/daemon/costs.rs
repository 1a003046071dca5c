//! What the agent costs and what it lost, gathered for the metrics exporter.

use crate::{
    ebpf::KernelPrograms,
    metrics::{AgentCosts, ProcessUsage},
};

/// Reads the kernel programs' accounting and this process's own resource use.
pub fn gather(
    probes: &KernelPrograms,
    bpf_stats_enabled: bool,
    overruns: u64,
    fast_link_checks: u64,
    events_received: u64,
) -> AgentCosts {
    AgentCosts {
        programs: probes.program_costs(),
        bpf_stats_enabled,
        netlink_overruns: overruns,
        kernel: probes.kernel_stats().unwrap_or_default(),
        tcp_events_received: events_received,
        fast_link_checks,
        process: process_usage().unwrap_or_default(),
    }
}

/// This process as /proc shows it: resident and virtual bytes (/proc/self/statm), user and
/// system CPU seconds and the start time (/proc/self/stat, with the boot time from /proc/stat).
fn process_usage() -> Option<ProcessUsage> {
    // SAFETY: sysconf has no preconditions.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64,
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
        )
    };
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (size, resident) = (pages.next()??, pages.next()??);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces: utime
    // and stime are the 14th and 15th fields overall, starttime the 22nd.
    let after_comm: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let field = |n: usize| after_comm.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, started) = (field(14)?, field(15)?, field(22)?);
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessUsage {
        resident_bytes: resident * page,
        virtual_bytes: size * page,
        cpu_seconds: (utime + stime) as f64 / ticks,
        start_time_seconds: btime as f64 + started as f64 / ticks,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_uses_some_memory_and_started_after_boot() {
        let usage = super::process_usage().expect("procfs is readable");
        assert!(usage.resident_bytes > 0 && usage.virtual_bytes >= usage.resident_bytes);
        assert!(usage.cpu_seconds >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(usage.start_time_seconds <= now + 1.0 && usage.start_time_seconds > now - 3600.0);
    }
}
