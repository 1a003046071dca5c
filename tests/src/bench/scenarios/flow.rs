//! Faults on an active TCP flow to a configured endpoint: a blackhole (every packet from the
//! client dropped at the server's input) and random loss, each timed to Down or Degraded and
//! back to Up.
//!
//! The drops sit in the receiver's input hook: a drop in the sender's own output hook gives
//! the sender a local error, not retransmits.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::topology::{Pair, PairOptions};
use anyhow::Result;
use netwatch_client::state::{Health, Subject};
use serde_json::json;

use super::{after, nft, p50_below, p50_sooner, Scenario, NETWATCH, NETWATCH_SINCE, PROBE, SNMP};
use crate::bench::agent::{self, AgentOptions};
use crate::bench::probe::{ProbeLoop, PROBE_EVERY};
use crate::bench::report::{ScenarioReport, Table};
use crate::bench::snmp::SnmpPoller;
use crate::bench::Context;
use crate::traffic::background::{ReconnectingFlow, Server};
use crate::verdicts::Subscription;

const PORT: u16 = 8080;
const LIMIT: Duration = Duration::from_secs(3600);
const TABLE: &str = "nwbench";
/// Least pause before an injection, on top of a random part as long as the slowest period.
const PAUSE_MIN: Duration = Duration::from_millis(100);
const NETWATCH_DOWN: &str = "netwatch, at a socket subscriber: Down";

pub enum FlowScenario {
    Blackhole,
    /// Random loss, in percent.
    Loss(u32),
}

/// Dropped in field order: watchers and traffic first, namespaces last.
struct Rig {
    sub: Subscription,
    snmp: SnmpPoller,
    probe: ProbeLoop,
    flow: ReconnectingFlow,
    server: Server,
    agent: crate::agent::Agent,
    pair: Pair,
}

impl Scenario for FlowScenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Blackhole => "blackhole",
            Self::Loss(5) => "loss-5",
            Self::Loss(20) => "loss-20",
            Self::Loss(_) => "loss",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Blackhole => "Blackhole of an endpoint under an active TCP flow",
            Self::Loss(5) => "Random loss of 5% on an active flow",
            Self::Loss(20) => "Random loss of 20% on an active flow",
            Self::Loss(_) => "Random loss on an active flow",
        }
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let blackhole = matches!(self, Self::Blackhole);
        let rounds = cx.rounds(10, 3);
        let endpoint = Subject::Endpoint("mirror".into());
        let methods: &[&str] = if blackhole {
            &[NETWATCH, NETWATCH_DOWN, NETWATCH_SINCE, SNMP, PROBE]
        } else {
            &[NETWATCH, NETWATCH_SINCE, SNMP, PROBE]
        };
        let fault_title = match self {
            Self::Blackhole => "Blackhole: time to the first non-Up verdict, and to Down",
            Self::Loss(_) => "Loss: time to Degraded (or Down)",
        };
        report
            .tables
            .push(Table::new("fault", fault_title, methods));
        report
            .tables
            .push(Table::new("recovery", "Recovery: time to Up", methods));
        if blackhole {
            report.tables[0].row(NETWATCH).note = Some("first non-Up verdict".into());
            report.tables[1].rows.retain(|r| r.method != NETWATCH_DOWN);
        }
        if !blackhole {
            let probe = report.tables[0].row(PROBE);
            probe.note = Some("ran alongside, not waited for".into());
            report.tables[1].rows.retain(|r| r.method != PROBE);
        }
        let rule = match self {
            Self::Blackhole => "drop".to_string(),
            Self::Loss(percent) => format!("numgen random mod 100 < {percent} drop"),
        };
        report.notes.push(format!(
            "{rounds} rounds. A TCP flow (16 KiB every 10 ms) runs from the watched namespace to \
             the endpoint `mirror` in the peer namespace; the fault is an nft rule in the peer's \
             input hook, `ip saddr CLIENT {rule}`. Latency runs from just before `nft` is started \
             (its own start-up, a few ms, is counted against every method alike)."
        ));
        report.notes.push(format!(
            "/proc/net/snmp notices at the first 1 s poll whose RetransSegs grew, and recovers at \
             the first poll that did not grow. The fault and its removal each come after a random \
             pause as long as the slowest periodic method's period ({}), so they land at a random \
             phase of it. Each round starts on a fresh connection that is moving data.",
            if blackhole {
                "the probe's 10 s"
            } else {
                "the 1 s poll"
            }
        ));
        if blackhole {
            report.notes.push(
                "netwatch first shows a blackhole as Degraded (\"no reply\": 2 retransmits with \
                 nothing received in between) and calls it Down once that silence has lasted 2 s \
                 (docs/verdict.md): both are timed, and the target is shown against each."
                    .into(),
            );
            report.notes.push(
                "Recovery: after the blackhole lifts, TCP tries again only at its backed-off RTO, \
                 so passive evidence waits for that retransmit; the agent also sees the probe \
                 loop's connects (they run on the same host). The rx stall the blackhole caused \
                 leaves the link Degraded, and Degraded gives way to Up only after the verdict's \
                 3 s recovery hold (docs/verdict.md), which every netwatch recovery here includes."
                    .into(),
            );
        }
        if !blackhole {
            report.notes.push(
                "The probe loop ran alongside but was not waited for: a connect whose SYN is \
                 lost is retried within its 3 s timeout, so loss seldom fails a probe."
                    .into(),
            );
        }

        let pair = Pair::with(PairOptions {
            b_up: true,
            ipv6: false,
            shared_index: None,
        });
        let target = SocketAddr::new(IpAddr::V4(pair.b_v4), PORT);
        let config = format!("[[endpoint]]\nname = \"mirror\"\naddress = \"{target}\"\n");
        let agent = agent::start(
            &pair.a,
            AgentOptions {
                config: Some(&config),
                metrics: None,
                log: cx.agent_log(self.name()),
            },
        )?;
        let server = Server::start(&pair.b, target, LIMIT);
        let flow = start_flow(&pair, target);
        let sub = Subscription::start(agent.socket())?;
        let mut rig = Rig {
            snmp: SnmpPoller::start(&pair.a, Duration::from_secs(1), LIMIT),
            probe: ProbeLoop::start(&pair.a, target, LIMIT),
            sub,
            flow,
            server,
            agent,
            pair,
        };
        if !rig
            .sub
            .wait_health(&endpoint, Health::Up, Duration::from_secs(30))
        {
            anyhow::bail!(
                "the agent never called the endpoint Up with the flow running: {:?}",
                rig.agent.get().map(|s| s.endpoints)
            );
        }
        let add = format!(
            "table ip {TABLE} {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    ip saddr {} {rule}\n  }}\n}}\n",
            rig.pair.a_v4
        );
        let delete = format!("delete table ip {TABLE}\n");
        // The probe is waited for only in the blackhole; elsewhere the 1 s poll is the slowest.
        let period = if blackhole {
            PROBE_EVERY
        } else {
            Duration::from_secs(1)
        };
        let mut rounds_raw = Vec::new();
        for round in 1..=rounds {
            cx.check_interrupt()?;
            cx.progress(self.title(), round, rounds);
            // A random pause as long as the slowest periodic method's period, so faults land
            // at a uniformly random phase of it (not just after the poll that ended the last
            // wait).
            std::thread::sleep(cx.jitter.between(PAUSE_MIN, PAUSE_MIN + period));
            if !flowing(&rig.server, Duration::from_secs(20)) {
                report.notes.push(format!(
                    "round {round}: the flow was not moving before the fault"
                ));
            }
            if !rig
                .sub
                .wait_health(&endpoint, Health::Up, Duration::from_secs(20))
            {
                report.notes.push(format!(
                    "round {round}: the endpoint was not Up before the fault"
                ));
            }
            let (t0, t0_done) = nft(&rig.pair.b, &add)?;
            let deadline = Instant::now() + Duration::from_secs(20);
            let nw = rig.sub.seen.wait_first(t0, deadline, |_, s| {
                matches!(s.health(&endpoint), Some(Health::Degraded | Health::Down))
            });
            let nw_down = if blackhole {
                rig.sub.seen.wait_first(t0, deadline, |_, s| {
                    s.health(&endpoint) == Some(Health::Down)
                })
            } else {
                None
            };
            let snmp = rig
                .snmp
                .retrans
                .wait_first(t0, deadline, |prev, cur| prev.is_some_and(|p| cur > p));
            // The probe is waited for only where it can notice.
            let probe = if blackhole {
                rig.probe.outcomes.wait_first(t0, deadline, |_, ok| !ok)
            } else {
                None
            };
            std::thread::sleep(cx.jitter.between(PAUSE_MIN, PAUSE_MIN + period));
            let (t1, _) = nft(&rig.pair.b, &delete)?;
            let probe = if blackhole {
                probe
            } else {
                rig.probe
                    .outcomes
                    .between(t0, t1)
                    .into_iter()
                    .find(|(_, ok)| !ok)
            };
            let table = &mut report.tables[0];
            table.record(NETWATCH, after(t0, nw.as_ref().map(|(at, _)| *at)));
            table.record(
                NETWATCH_SINCE,
                after(t0, nw.as_ref().and_then(|(_, s)| s.since_ns(&endpoint))),
            );
            table.record(SNMP, after(t0, snmp.map(|(at, _)| at)));
            table.record(PROBE, after(t0, probe.map(|(at, _)| at)));
            if blackhole {
                table.record(
                    NETWATCH_DOWN,
                    after(t0, nw_down.as_ref().map(|(at, _)| *at)),
                );
            }

            let deadline = Instant::now() + Duration::from_secs(30);
            let nw_up = rig
                .sub
                .seen
                .wait_first(t1, deadline, |_, s| s.health(&endpoint) == Some(Health::Up));
            let snmp_up = rig
                .snmp
                .retrans
                .wait_first(t1, deadline, |prev, cur| prev.is_some_and(|p| cur == p));
            let table = &mut report.tables[1];
            table.record(NETWATCH, after(t1, nw_up.as_ref().map(|(at, _)| *at)));
            table.record(
                NETWATCH_SINCE,
                after(t1, nw_up.as_ref().and_then(|(_, s)| s.since_ns(&endpoint))),
            );
            table.record(SNMP, after(t1, snmp_up.map(|(at, _)| at)));
            if blackhole {
                let probe_up = rig.probe.outcomes.wait_first(
                    t1,
                    Instant::now() + Duration::from_secs(15),
                    |_, ok| *ok,
                );
                table.record(PROBE, after(t1, probe_up.map(|(at, _)| at)));
            }
            // A fresh connection for the next round: after a long blackhole the old one would
            // sit in TCP's backed-off RTO for seconds, sending nothing for the next fault to hit.
            rig.flow = start_flow(&rig.pair, target);
            rounds_raw.push(json!({
                "round": round,
                "t0_ns": t0,
                "nft_ns": t0_done - t0,
                "t1_ns": t1,
                "down_reasons": nw_down.as_ref().map(|(_, s)| s.reasons(&endpoint)),
                "fault_health": nw.as_ref().and_then(|(_, s)| s.health(&endpoint)).map(|h| h.to_string()),
                "fault_reasons": nw.as_ref().map(|(_, s)| s.reasons(&endpoint)),
                "link_at_fault": nw.as_ref().map(|(_, s)| s.reasons(&Subject::Link(rig.pair.a_if.clone()))),
            }));
        }
        report.raw = json!({ "rounds": rounds_raw });
        let fault = &mut report.tables[0];
        match self {
            Self::Blackhole => {
                // The target is judged on both: the first notice a consumer gets
                // (Degraded, "no reply") and Down itself, so neither hides the other.
                let probe = fault.get(PROBE).cloned();
                for (method, what) in [
                    (NETWATCH, "netwatch first non-Up verdict"),
                    (NETWATCH_DOWN, "netwatch Down"),
                ] {
                    let row = fault.row(method);
                    let under = p50_below(row, what, "< 1 s", Duration::from_secs(1));
                    let sooner = p50_sooner(row, probe.as_ref(), what, 10.0);
                    row.targets.extend([under, sooner]);
                }
            }
            Self::Loss(5) => {
                let nw = fault.row(NETWATCH);
                let target = p50_below(nw, "netwatch Degraded", "< 3 s", Duration::from_secs(3));
                nw.targets.push(target);
            }
            Self::Loss(_) => {}
        }
        Ok(())
    }
}

/// The flow every round runs: 16 KiB every 10 ms from the watched namespace to the endpoint.
fn start_flow(pair: &Pair, target: SocketAddr) -> ReconnectingFlow {
    ReconnectingFlow::start(&pair.a, target, 16 * 1024, Duration::from_millis(10), LIMIT)
}

/// Waits until the server receives steadily (at least 64 KiB in 200 ms); false after `limit`.
fn flowing(server: &Server, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let before = server.received.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        if server.received.load(Ordering::Relaxed) - before >= 64 * 1024 {
            return true;
        }
    }
    false
}
