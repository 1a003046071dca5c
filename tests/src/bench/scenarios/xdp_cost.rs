//! The receive counter alone, at XDP and at tc, measured by the kernel with BPF_PROG_TEST_RUN:
//! a million runs on one frame, without the device, the stack or the hook's own path around
//! it, with the
//! kernel's run-time accounting (bpf stats) off and on. Beside the overhead scenario's
//! in-place figure it tells how much of that is the program and how much the stats' clock
//! reads.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context as _, Result};
use netwatch_agent::ebpf::{enable_run_time_stats, KernelPrograms, RxHook};

use crate::bench::report::Facts;
use crate::bench::stats::median;

const REPEAT: u32 = 1_000_000;
const TRIALS: usize = 5;
/// The frame's source address, and the peer watched in the second case.
const SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// One measured case: what it is, and the median ns per run over `TRIALS`.
pub struct BareCost {
    pub case: String,
    pub ns: f64,
}

/// The bare program's cost at `hook` in each case, and the facts table that shows them.
pub fn measure(hook: RxHook) -> Result<(Vec<BareCost>, Facts)> {
    let mut programs = KernelPrograms::load(netwatch::KERNEL_PROGRAMS)
        .context("loading the kernel programs for BPF_PROG_TEST_RUN")?;
    let mut costs = Vec::new();
    for (size, watched) in [(64, false), (1514, false), (64, true)] {
        let peers: &[IpAddr] = if watched { &[IpAddr::V4(SOURCE)] } else { &[] };
        programs.watch_peers(peers)?;
        let frame = frame(size);
        for stats in [false, true] {
            // Held for the measurement: the kernel accounts run time while any holder lives.
            let _stats = stats.then(enable_run_time_stats).transpose()?;
            let mut trials = Vec::with_capacity(TRIALS);
            for _ in 0..TRIALS {
                let mean: Duration = programs.rx_test_run(hook, &frame, REPEAT)?;
                trials.push(mean.as_nanos() as f64);
            }
            costs.push(BareCost {
                case: format!(
                    "{size}-byte frame, {}, bpf stats {}",
                    if watched {
                        "its source watched"
                    } else {
                        "no peer watched"
                    },
                    if stats { "on" } else { "off" }
                ),
                ns: median(&trials).unwrap_or(f64::NAN),
            });
        }
    }
    let facts = Facts {
        title: format!(
            "The receive counter at {} alone (BPF_PROG_TEST_RUN, {REPEAT} runs, median of \
             {TRIALS})",
            match hook {
                RxHook::Tc => "tc",
                RxHook::Xdp(_) => "XDP",
            }
        ),
        headers: vec!["case".into(), "ns per run".into()],
        rows: costs
            .iter()
            .map(|c| vec![c.case.clone(), format!("{:.1}", c.ns)])
            .collect(),
    };
    Ok((costs, facts))
}

/// An Ethernet frame of `size` bytes carrying an IPv4 TCP segment from [`SOURCE`].
fn frame(size: usize) -> Vec<u8> {
    let mut frame = vec![0u8; size.max(54)];
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((size.max(54) - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&SOURCE.octets());
    ip[16..20].copy_from_slice(&[198, 18, 200, 2]);
    frame
}
