//! What netwatch costs: ns per run of each eBPF program (the kernel's bpf stats, through the
//! agent's metrics), TCP throughput over a veth with and without its XDP program, and the
//! agent's CPU and memory, idle and under a bulk flow.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::topology::{rx_prog_id, Pair, PairOptions};
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
use netwatch_agent::ebpf::{RxHook, XdpMode};

const METRICS: &str = "127.0.0.1:9477";
const PORT: u16 = 5201;
const LIMIT: Duration = Duration::from_secs(3600);
const RUN_TIME: &str = "netwatch_bpf_program_run_time_seconds_total";
const RUNS: &str = "netwatch_bpf_program_runs_total";
const XDP_PROGRAM: &str = "netwatch_xdp";
const RX_PROGRAM: &str = "netwatch_rx";

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
        "Overhead: eBPF programs, throughput with the receive counter, agent CPU and memory"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let quick = cx.options.quick;
        let idle_span = Duration::from_secs(if quick { 5 } else { 30 });
        let settle = Duration::from_secs(if quick { 5 } else { 10 });
        let bulk_span = Duration::from_secs(if quick { 4 } else { 10 });
        // Leg-to-leg noise here is 10-15%: 15 pairs bring the median's standard error to about 4% (from 6% with 7).
        let pairs = cx.rounds(15, 2).min(30);
        let leg = Duration::from_secs_f64(if quick { 1.5 } else { 3.0 });
        let warmup = Duration::from_millis(500);
        report.notes.push(format!(
            "Two identical veth pairs; the agent watches one (its receive counter on the \
             receiving end), the other has none. Idle: {} s with no traffic, from {} s after the \
             agent was ready. Bulk: {} s of one TCP stream \
             into the watched end. Throughput: {pairs} alternating pairs of {:.1} s runs, the \
             order swapped every pair; the ratio is with the receive counter over without, \
             the median of the pairs, with the defaults (tc ingress), with rx_hook = \
             \"xdp\" (generic) and with xdp_mode = \"native\" (veth has native XDP). CPU is user+system time from /proc/PID/stat over wall time, in % of one core; \
             RSS is VmRSS.",
            idle_span.as_secs(),
            settle.as_secs(),
            bulk_span.as_secs(),
            leg.as_secs_f64()
        ));
        report.notes.push(
            "eBPF cost is the kernel's own accounting (BPF_ENABLE_STATS, which the agent holds \
             with [metrics] program_costs = true, as it runs for the idle leg and a bulk leg \
             per hook), read from the agent's metrics before and after each bulk run. The \
             throughput legs run under agents without the accounting. On a veth, either hook \
             runs once per skb, and an skb there is often a GSO super-packet of tens of KB. \
             The target is judged per run (what one packet costs where the hook sees \
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
                config: Some("[agent]\nrx_hook = \"xdp\"\n[metrics]\nprogram_costs = true\n"),
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
        let xdp_bulk = bulk_run(
            &watched,
            &server_watched,
            to_watched,
            metrics_addr,
            pid,
            bulk_span,
        )?;
        drop(agent);
        let agent = agent::start(
            &watched.a,
            AgentOptions {
                config: Some("[agent]\nrx_hook = \"tc\"\n[metrics]\nprogram_costs = true\n"),
                metrics: Some(metrics_addr),
                log: cx.agent_log(&format!("{}-tc-costs", self.name())),
            },
        )?;
        std::thread::sleep(settle);
        let tc_bulk = bulk_run(
            &watched,
            &server_watched,
            to_watched,
            metrics_addr,
            agent.pid(),
            bulk_span,
        )?;
        let (bulk_cpu, bulk_rss) = (xdp_bulk.cpu, xdp_bulk.rss);
        let xdp_ns = xdp_bulk.ns_per_run(XDP_PROGRAM);
        let tc_ns = tc_bulk.ns_per_run(RX_PROGRAM);

        cx.check_interrupt()?;
        cx.progress(self.title(), 3, 3);
        // Throughput as a user gets it: the defaults (the counter at tc ingress), without
        // the accounting's clock reads; then with the counter at XDP instead.
        drop(agent);
        let legs = Legs {
            watched: &watched,
            plain: &plain,
            server_watched: &server_watched,
            server_plain: &server_plain,
            to_watched,
            to_plain,
            pairs,
            warmup,
            leg,
        };
        let tc = legs.measure(cx, None, &format!("{}-defaults", self.name()))?;
        let xdp = legs.measure(
            cx,
            Some("[agent]\nrx_hook = \"xdp\"\n"),
            &format!("{}-xdp", self.name()),
        )?;
        // Native XDP, where a driver has it (veth does): the packet is seen before a socket
        // buffer exists on the receiving side.
        let native = legs.measure(
            cx,
            Some("[agent]\nrx_hook = \"xdp\"\nxdp_mode = \"native\"\n"),
            &format!("{}-xdp-native", self.name()),
        )?;
        let ratio = median(&xdp.ratios);
        let tc_ratio = median(&tc.ratios);
        let native_ratio = median(&native.ratios);

        let max_rss = idle_rss.max(bulk_rss).max(tc_bulk.rss) as f64 / 1e6;
        for (hook, bulk) in [("XDP", &xdp_bulk), ("tc ingress", &tc_bulk)] {
            report.facts.push(Facts {
                title: format!(
                    "eBPF programs, over the bulk run with the receive counter at {hook} \
                     (kernel bpf stats)"
                ),
                headers: vec!["program".into(), "runs".into(), "ns per run".into()],
                rows: bulk.rows.clone(),
            });
        }
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
                    format!("bulk TCP flow, {} s, XDP", bulk_span.as_secs()),
                    format!("{bulk_cpu:.2}"),
                    fmt_bytes(bulk_rss),
                ],
                vec![
                    format!("bulk TCP flow, {} s, tc ingress", bulk_span.as_secs()),
                    format!("{:.2}", tc_bulk.cpu),
                    fmt_bytes(tc_bulk.rss),
                ],
            ],
        });
        for (hook, measured, median_ratio) in [
            ("XDP (generic, rx_hook = \"xdp\")", &xdp, ratio),
            ("tc ingress (the default)", &tc, tc_ratio),
            ("XDP native (xdp_mode = \"native\")", &native, native_ratio),
        ] {
            let mut rows = measured.rows.clone();
            rows.push(vec![
                "median ratio".into(),
                String::new(),
                String::new(),
                median_ratio.map_or_else(|| "–".to_string(), |r| format!("{r:.3}")),
            ]);
            report.facts.push(Facts {
                title: format!(
                    "TCP throughput over a veth, with the receive counter at {hook} and without"
                ),
                headers: vec![
                    "pair".into(),
                    "with".into(),
                    "without".into(),
                    "ratio".into(),
                ],
                rows,
            });
        }
        report.targets.extend([
            Target::value_below("XDP cost per packet (skb)", "< 50 ns", xdp_ns, 50.0, "ns"),
            Target::value_below(
                "tc ingress counter cost per packet (skb)",
                "< 50 ns",
                tc_ns,
                50.0,
                "ns",
            ),
            Target::at_least(
                "throughput with XDP / without (median)",
                ">= 0.97",
                ratio,
                0.97,
                "",
            ),
            Target::at_least(
                "throughput with the tc ingress counter (the default) / without (median)",
                ">= 0.97",
                tc_ratio,
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
            "programs": xdp_bulk.json,
            "programs_tc": tc_bulk.json,
            "idle": {"cpu_percent": idle_cpu, "rss_bytes": idle_rss, "seconds": idle_span.as_secs()},
            "bulk": {"cpu_percent": bulk_cpu, "rss_bytes": bulk_rss, "seconds": bulk_span.as_secs()},
            "bulk_tc": {"cpu_percent": tc_bulk.cpu, "rss_bytes": tc_bulk.rss},
            "throughput_ratios": xdp.ratios,
            "throughput_ratios_tc": tc.ratios,
            "throughput_ratios_xdp_native": native.ratios,
        });
        // The programs alone, once no agent holds the bpf stats.
        for (hook, name, in_place) in [
            (RxHook::Xdp(XdpMode::Generic), "XDP", xdp_ns),
            (RxHook::Tc, "tc ingress", tc_ns),
        ] {
            let (bare, facts) = super::xdp_cost::measure(hook)?;
            report.facts.push(facts);
            report.targets.push(Target::value_below(
                &format!("{name} counter alone (BPF_PROG_TEST_RUN, 64-byte frame, bpf stats off)"),
                "< 50 ns",
                bare.first().map(|c| c.ns),
                50.0,
                "ns",
            ));
            if let (Some(off), Some(on)) = (bare.first(), bare.get(1)) {
                let stats_ns = on.ns - off.ns;
                report.notes.push(format!(
                    "The bpf stats' own clock reads add {stats_ns:.1} ns per run to the {name} \
                     counter alone ({:.1} ns with them, {:.1} ns without); the in-place figure \
                     includes them, and the hook's path around the program. The agent leaves \
                     the stats off unless [metrics] program_costs asks for them, so what a \
                     packet pays in place by default is the in-place figure less that: the \
                     target row marked \"less the stats' clock reads\" (a difference of \
                     medians, so an estimate).",
                    on.ns, off.ns
                ));
                report.targets.push(Target::value_below(
                    &format!("{name} cost per packet (skb) in place, less the stats' clock reads"),
                    "< 50 ns",
                    in_place.map(|ns| ns - stats_ns),
                    50.0,
                    "ns",
                ));
            }
        }
        Ok(())
    }
}

/// The throughput legs: one TCP stream into the watched pair and one into the plain pair,
/// alternating, under an agent started for each hook.
struct Legs<'a> {
    watched: &'a Pair,
    plain: &'a Pair,
    server_watched: &'a Server,
    server_plain: &'a Server,
    to_watched: SocketAddr,
    to_plain: SocketAddr,
    pairs: usize,
    warmup: Duration,
    leg: Duration,
}

/// Ratios with over without, and the table's rows.
struct Measured {
    ratios: Vec<f64>,
    rows: Vec<Vec<String>>,
}

impl Legs<'_> {
    /// `pairs` alternating runs under an agent with `config` (`None`: the defaults).
    fn measure(&self, cx: &mut Context, config: Option<&str>, log: &str) -> Result<Measured> {
        let agent = agent::start(
            &self.watched.a,
            AgentOptions {
                config,
                metrics: None,
                log: cx.agent_log(log),
            },
        )?;
        // Measured with the counter in place, or not at all.
        let (ns, index) = (&self.watched.a, self.watched.a_index);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ns.block_on(rx_prog_id(index)).is_none() {
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "the agent ({}) attached no receive counter to the watched veth in 10 s: \
                     see {log}",
                    config.unwrap_or("defaults")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut measured = Measured {
            ratios: Vec::new(),
            rows: Vec::new(),
        };
        for i in 0..self.pairs {
            cx.check_interrupt()?;
            let with = || {
                throughput(
                    &self.watched.b,
                    self.server_watched,
                    self.to_watched,
                    self.warmup,
                    self.leg,
                )
            };
            let without = || {
                throughput(
                    &self.plain.b,
                    self.server_plain,
                    self.to_plain,
                    self.warmup,
                    self.leg,
                )
            };
            let (with, without) = if i % 2 == 0 {
                let with = with();
                (with, without())
            } else {
                let without = without();
                (with(), without)
            };
            let ratio = with / without;
            measured.ratios.push(ratio);
            measured.rows.push(vec![
                format!("{}", i + 1),
                fmt_bits_per_s(with),
                fmt_bits_per_s(without),
                format!("{ratio:.3}"),
            ]);
        }
        drop(agent);
        Ok(measured)
    }
}

/// One bulk run's cost: the agent's CPU and RSS, and what each eBPF program cost in the
/// kernel's accounting (the agent must hold the bpf stats).
struct BulkRun {
    cpu: f64,
    rss: u64,
    rows: Vec<Vec<String>>,
    json: Vec<serde_json::Value>,
}

impl BulkRun {
    fn ns_per_run(&self, program: &str) -> Option<f64> {
        self.json
            .iter()
            .find(|p| p["program"] == program)
            .and_then(|p| p["ns_per_run"].as_f64())
    }
}

/// One TCP stream into the watched end for `span`, under the agent `pid` serving metrics at
/// `metrics_addr`.
fn bulk_run(
    watched: &Pair,
    server: &Server,
    to: SocketAddr,
    metrics_addr: SocketAddr,
    pid: u32,
    span: Duration,
) -> Result<BulkRun> {
    let before = scrape(&watched.a, metrics_addr)?;
    let bytes_before = server.received.load(Ordering::Relaxed);
    let bulk = Bulk::start(&watched.b, to, span + Duration::from_secs(5));
    let (cpu, rss) = cost_over(pid, span)?;
    drop(bulk);
    let after = scrape(&watched.a, metrics_addr)?;
    // Wire-sized segments the flow carried: a 1500-byte MTU with TCP timestamps.
    let segments = (server.received.load(Ordering::Relaxed) - bytes_before) / 1448;
    let mut run = BulkRun {
        cpu,
        rss,
        rows: Vec::new(),
        json: Vec::new(),
    };
    for program in programs(&after, RUNS) {
        let label = format!("program=\"{program}\"");
        let delta = |name: &str| {
            Some(metric(&after, name, &label)? - metric(&before, name, &label).unwrap_or(0.0))
        };
        let (runs, seconds) = (delta(RUNS).unwrap_or(0.0), delta(RUN_TIME).unwrap_or(0.0));
        let per_run = (runs > 0.0).then(|| seconds * 1e9 / runs);
        run.rows.push(vec![
            program.clone(),
            format!("{runs:.0}"),
            per_run.map_or_else(|| "not run".to_string(), |ns| format!("{ns:.0} ns")),
        ]);
        run.json.push(
            json!({"program": program, "runs": runs, "run_time_s": seconds, "ns_per_run": per_run}),
        );
        if (program == XDP_PROGRAM || program == RX_PROGRAM) && segments > 0 && runs > 0.0 {
            let per_segment = seconds * 1e9 / segments as f64;
            run.rows.push(vec![
                format!("{program}, per 1448-byte TCP segment (context, not judged)"),
                format!("{segments} segments in {runs:.0} skbs"),
                format!("{per_segment:.1} ns"),
            ]);
        }
    }
    Ok(run)
}
