//! What netwatch costs: ns per run of each eBPF program (the kernel's bpf stats, through the
//! agent's metrics), TCP throughput over a veth with and without its XDP program, and the
//! agent's CPU and memory, idle and under a bulk flow.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::topology::{Pair, PairOptions};
use anyhow::{Context as _, Result};
use serde_json::json;

use super::Scenario;
use crate::bench::agent::{self, ticks_per_second, usage, AgentOptions};
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::{fmt_bits_per_s, fmt_bytes, median};
use crate::bench::Context;
use crate::metrics::{metric, programs, scrape};
use crate::rtnl::Rtnl;
use crate::traffic::background::{throughput, Bulk, Server};

const METRICS: &str = "127.0.0.1:9477";
const PORT: u16 = 5201;
const LIMIT: Duration = Duration::from_secs(3600);
const RUN_TIME: &str = "netwatch_bpf_program_run_time_seconds_total";
const RUNS: &str = "netwatch_bpf_program_runs_total";
const XDP_PROGRAM: &str = "netwatch_xdp";

pub struct Overhead;

/// Agent CPU % of one core and RSS over `span`, while whatever the caller started runs.
fn cost_over(pid: u32, span: Duration) -> Result<(f64, u64)> {
    let (ticks0, _) = usage(pid)?;
    let start = Instant::now();
    std::thread::sleep(span);
    let (ticks1, rss) = usage(pid)?;
    let cpu = (ticks1 - ticks0) as f64 / ticks_per_second() / start.elapsed().as_secs_f64() * 100.0;
    Ok((cpu, rss))
}

impl Scenario for Overhead {
    fn name(&self) -> &'static str {
        "overhead"
    }

    fn title(&self) -> &'static str {
        "Overhead: eBPF programs, XDP throughput, agent CPU and memory"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let quick = cx.options.quick;
        let idle_span = Duration::from_secs(if quick { 5 } else { 30 });
        let settle = Duration::from_secs(if quick { 5 } else { 10 });
        let bulk_span = Duration::from_secs(if quick { 4 } else { 10 });
        let pairs = cx.rounds(7, 2).min(20);
        let leg = Duration::from_secs_f64(if quick { 1.5 } else { 3.0 });
        let warmup = Duration::from_millis(500);
        report.notes.push(format!(
            "Two identical veth pairs; the agent watches one (XDP in generic mode on its receiving \
             end), the other has none. Idle: {} s with no traffic, from {} s after the \
             agent was ready. Bulk: {} s of one TCP stream \
             into the watched end. Throughput: {pairs} alternating pairs of {:.1} s runs, the \
             order swapped every pair; the ratio is with XDP over without, the median of the \
             pairs. CPU is user+system time from /proc/PID/stat over wall time, in % of one core; \
             RSS is VmRSS.",
            idle_span.as_secs(),
            settle.as_secs(),
            bulk_span.as_secs(),
            leg.as_secs_f64()
        ));
        report.notes.push(
            "eBPF cost is the kernel's own accounting (BPF_ENABLE_STATS, which the agent holds \
             with [metrics] program_costs = true, as it runs for the idle and bulk legs), read \
             from the agent's metrics before and after the bulk run. The throughput legs run \
             under a second agent with the defaults, which leave the accounting off. On a \
             veth, generic XDP runs once per skb, and an skb there is often a GSO super-packet \
             of tens of KB. The target is judged per run (what one packet costs where XDP sees \
             wire packets); the cost per TCP segment the bulk flow carried is shown beside it \
             for context only."
                .into(),
        );
        let options = PairOptions {
            b_up: true,
            ipv6: false,
            shared_index: None,
        };
        let watched = Pair::with(options);
        let plain = Pair::with(options);
        Rtnl::open_in(&watched.a)?
            .set_up(1, true)
            .context("bringing lo up for the metrics")?;
        let metrics_addr: SocketAddr = METRICS.parse()?;
        let agent = agent::start(
            &watched.a,
            AgentOptions {
                config: Some("[metrics]\nprogram_costs = true\n"),
                metrics: Some(metrics_addr),
                log: cx.agent_log(self.name()),
            },
        )?;
        let pid = agent.pid();
        let to_watched = SocketAddr::new(IpAddr::V4(watched.a_v4), PORT);
        let to_plain = SocketAddr::new(IpAddr::V4(plain.a_v4), PORT);
        let server_watched = Server::start(&watched.a, to_watched, LIMIT);
        let server_plain = Server::start(&plain.a, to_plain, LIMIT);

        cx.progress(self.title(), 1, 3);
        // The agent's start-up work (loading, the first full netlink dump) is not idling.
        std::thread::sleep(settle);
        let (idle_cpu, idle_rss) = cost_over(pid, idle_span)?;

        cx.check_interrupt()?;
        cx.progress(self.title(), 2, 3);
        let before = scrape(&watched.a, metrics_addr)?;
        let bytes_before = server_watched.received.load(Ordering::Relaxed);
        let bulk = Bulk::start(&watched.b, to_watched, bulk_span + Duration::from_secs(5));
        let (bulk_cpu, bulk_rss) = cost_over(pid, bulk_span)?;
        drop(bulk);
        let after = scrape(&watched.a, metrics_addr)?;
        // Wire-sized segments the flow carried: a 1500-byte MTU with TCP timestamps.
        let segments = (server_watched.received.load(Ordering::Relaxed) - bytes_before) / 1448;
        let mut program_rows = Vec::new();
        let mut program_json = Vec::new();
        let mut xdp_ns = None;
        for program in programs(&after, RUNS) {
            let label = format!("program=\"{program}\"");
            let delta = |name: &str| {
                Some(metric(&after, name, &label)? - metric(&before, name, &label).unwrap_or(0.0))
            };
            let (runs, seconds) = (delta(RUNS).unwrap_or(0.0), delta(RUN_TIME).unwrap_or(0.0));
            let per_run = (runs > 0.0).then(|| seconds * 1e9 / runs);
            program_rows.push(vec![
                program.clone(),
                format!("{runs:.0}"),
                per_run.map_or_else(|| "not run".to_string(), |ns| format!("{ns:.0} ns")),
            ]);
            program_json.push(json!({"program": program, "runs": runs, "run_time_s": seconds, "ns_per_run": per_run}));
            if program == XDP_PROGRAM {
                xdp_ns = per_run;
                if segments > 0 && runs > 0.0 {
                    let per_segment = seconds * 1e9 / segments as f64;
                    program_rows.push(vec![
                        format!("{program}, per 1448-byte TCP segment (context, not judged)"),
                        format!("{segments} segments in {runs:.0} skbs"),
                        format!("{per_segment:.1} ns"),
                    ]);
                }
            }
        }

        cx.check_interrupt()?;
        cx.progress(self.title(), 3, 3);
        // Throughput as a user gets it: the defaults, without the accounting's clock reads.
        drop(agent);
        let agent = agent::start(
            &watched.a,
            AgentOptions {
                config: None,
                metrics: None,
                log: cx.agent_log(&format!("{}-defaults", self.name())),
            },
        )?;
        let mut ratios = Vec::new();
        let mut throughput_rows = Vec::new();
        for i in 0..pairs {
            cx.check_interrupt()?;
            let measure_with_xdp =
                || throughput(&watched.b, &server_watched, to_watched, warmup, leg);
            let measure_without_xdp = || throughput(&plain.b, &server_plain, to_plain, warmup, leg);
            let (with, without) = if i % 2 == 0 {
                let with = measure_with_xdp();
                (with, measure_without_xdp())
            } else {
                let without = measure_without_xdp();
                (measure_with_xdp(), without)
            };
            let ratio = with / without;
            ratios.push(ratio);
            throughput_rows.push(vec![
                format!("{}", i + 1),
                fmt_bits_per_s(with),
                fmt_bits_per_s(without),
                format!("{ratio:.3}"),
            ]);
        }
        let ratio = median(&ratios);

        let max_rss = idle_rss.max(bulk_rss) as f64 / 1e6;
        report.facts.push(Facts {
            title: "eBPF programs, over the bulk run (kernel bpf stats)".into(),
            headers: vec!["program".into(), "runs".into(), "ns per run".into()],
            rows: program_rows,
        });
        report.facts.push(Facts {
            title: "Agent cost".into(),
            headers: vec!["load".into(), "CPU, % of one core".into(), "RSS".into()],
            rows: vec![
                vec![
                    format!("idle, {} s", idle_span.as_secs()),
                    format!("{idle_cpu:.2}"),
                    fmt_bytes(idle_rss),
                ],
                vec![
                    format!("bulk TCP flow, {} s", bulk_span.as_secs()),
                    format!("{bulk_cpu:.2}"),
                    fmt_bytes(bulk_rss),
                ],
            ],
        });
        throughput_rows.push(vec![
            "median ratio".into(),
            String::new(),
            String::new(),
            ratio.map_or_else(|| "–".to_string(), |r| format!("{r:.3}")),
        ]);
        report.facts.push(Facts {
            title: "TCP throughput over a veth, with and without XDP".into(),
            headers: vec![
                "pair".into(),
                "with XDP".into(),
                "without".into(),
                "ratio".into(),
            ],
            rows: throughput_rows,
        });
        report.targets.extend([
            Target::value_below("XDP cost per packet (skb)", "< 50 ns", xdp_ns, 50.0, "ns"),
            Target::at_least(
                "throughput with XDP / without (median)",
                ">= 0.97",
                ratio,
                0.97,
                "",
            ),
            Target::value_below("agent CPU, idle", "< 0.5 %", Some(idle_cpu), 0.5, "%"),
            Target::value_below(
                "agent RSS (largest seen)",
                "< 30 MB",
                Some(max_rss),
                30.0,
                "MB",
            ),
        ]);
        report.raw = json!({
            "programs": program_json,
            "idle": {"cpu_percent": idle_cpu, "rss_bytes": idle_rss, "seconds": idle_span.as_secs()},
            "bulk": {"cpu_percent": bulk_cpu, "rss_bytes": bulk_rss, "seconds": bulk_span.as_secs()},
            "throughput_ratios": ratios,
        });
        drop(agent);
        // The program alone, once the agent no longer holds the bpf stats.
        let (bare, facts) = super::xdp_cost::measure()?;
        report.facts.push(facts);
        let bare_64 = bare.first().map(|c| c.ns);
        report.targets.push(Target::value_below(
            "XDP counter alone (BPF_PROG_TEST_RUN, 64-byte frame, bpf stats off)",
            "< 50 ns",
            bare_64,
            50.0,
            "ns",
        ));
        if let (Some(off), Some(on)) = (bare.first(), bare.get(1)) {
            let stats_ns = on.ns - off.ns;
            report.notes.push(format!(
                "The bpf stats' own clock reads add {stats_ns:.1} ns per run to the XDP counter \
                 alone ({:.1} ns with them, {:.1} ns without); the in-place figure above \
                 includes them, and generic XDP's path around the program. The agent leaves \
                 the stats off unless [metrics] program_costs asks for them, so what a packet \
                 pays in place by default is the in-place figure less that: the target row \
                 marked \"less the stats' clock reads\" (a difference of medians, so an \
                 estimate).",
                on.ns, off.ns
            ));
            report.targets.push(Target::value_below(
                "XDP cost per packet (skb) in place, less the stats' clock reads",
                "< 50 ns",
                xdp_ns.map(|ns| ns - stats_ns),
                50.0,
                "ns",
            ));
        }
        Ok(())
    }
}
