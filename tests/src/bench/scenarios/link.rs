//! Link events: admin down and up of the watched link, and carrier loss through its veth peer,
//! with distinct ifindexes (the kernel reports at once) and with a shared ifindex (linkwatch
//! delays the event by up to a second).
//!
//! In the delayed case the methods cannot share one device: an RTM_GETLINK (netwatch's fast
//! path) and a read of sysfs `carrier` both flush the pending event (`linkwatch_sync_dev`),
//! so a raw listener beside them would see the kernel's event early. There, three identical
//! pairs are flapped in lockstep: one watched by netwatch, one with only the raw listener
//! (the kernel's own timing), one with the sysfs pollers.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::topology::{Pair, PairOptions};
use anyhow::{Context as _, Result};
use netwatch_client::state::{Health, Subject};
use serde_json::json;

use super::{
    after, p50_sooner, p99_below, Scenario, NETWATCH, NETWATCH_SINCE, RAW, SYSFS_100MS, SYSFS_1S,
};
use crate::bench::agent::{self, AgentOptions};
use crate::bench::report::{ScenarioReport, Table};
use crate::bench::sysfs::Poller;
use crate::bench::Context;
use crate::clock::{now_ns, ns};
use crate::rtnl::{Listener, Rtnl};
use crate::traffic::background::Beacon;
use crate::verdicts::Subscription;

const DIFF: &str = "netwatch minus raw rtnetlink, same round";
const RAW_WATCHED: &str =
    "raw rtnetlink in netwatch's namespace (flushed early by its RTM_GETLINK)";
const RAW_KERNEL: &str = "raw rtnetlink event (kernel's own timing, control pair)";
/// Every method has this long to notice a link event (the 1 s poller needs up to 1 s).
const NOTICE: Duration = Duration::from_secs(5);
/// The bounds of every thread and child of a family: far beyond any default run.
const LIMIT: Duration = Duration::from_secs(3600);
/// The ifindex both ends get in the linkwatch-delayed case (the first after `lo`).
const SHARED_INDEX: u32 = 2;
/// The brief's recipe for the delayed case: the peer goes down this long after it came up.
const UP_BEFORE_DOWN: Duration = Duration::from_millis(300);
/// Linkwatch handles non-urgent events at most once a second (net/core/link_watch.c); the
/// next round's up waits this long after the last event so that the up itself is not delayed.
const LINKWATCH_GAP: Duration = Duration::from_millis(1050);
/// Least pause before an injection, on top of a random part as long as the slowest poll.
const PAUSE_MIN: Duration = Duration::from_millis(100);

/// Rounds come every second or two, far faster than the 4-changes-in-10-s flap rule allows;
/// it is switched off here (the flap-storm scenarios run with the defaults).
const NO_FLAP_RULE: &str = "[thresholds]\nflap_changes = 1000000\n";

pub enum LinkScenario {
    AdminDown,
    CarrierLoss,
    CarrierLossShared,
}

/// One veth pair a round flaps: its peer end's request socket and index.
struct Flapped {
    rtnl: Rtnl,
    index: u32,
}

/// Everything a link family runs, dropped in field order: watchers first, namespaces last.
struct Rig {
    sub: Subscription,
    /// The raw listener in the watched namespace.
    raw: Listener,
    /// In the delayed case, the raw listener of the control pair; else none.
    raw_control: Option<Listener>,
    sysfs_fast: Poller,
    sysfs_slow: Poller,
    _beacon: Beacon,
    agent: crate::agent::Agent,
    rtnl_a: Rtnl,
    /// The watched pair's peer first, then the control pairs' peers.
    peers: Vec<Flapped>,
    pair: Pair,
    /// The control pairs (the delayed case only): raw listener, sysfs pollers.
    controls: Vec<Pair>,
}

impl Rig {
    fn start(cx: &Context, name: &str, shared: bool) -> Result<Rig> {
        let options = PairOptions {
            b_up: true,
            ipv6: false,
            shared_index: shared.then_some(SHARED_INDEX),
        };
        let pair = Pair::with(options);
        let controls: Vec<Pair> = if shared {
            vec![Pair::with(options), Pair::with(options)]
        } else {
            Vec::new()
        };
        let agent = agent::start(
            &pair.a,
            AgentOptions {
                config: Some(NO_FLAP_RULE),
                metrics: None,
                log: cx.agent_log(name),
            },
        )?;
        let sink = SocketAddr::new(IpAddr::V4(pair.a_v4), 9);
        let beacon = Beacon::start(&pair.b, &pair.a, sink, Duration::from_millis(5), LIMIT);
        let raw = Listener::start(&pair.a, LIMIT)?;
        let raw_control = match controls.first() {
            Some(control) => Some(Listener::start(&control.a, LIMIT)?),
            None => None,
        };
        let polled = controls.get(1).unwrap_or(&pair);
        let sysfs_fast = Poller::start(&polled.a, &polled.a_if, Duration::from_millis(100), LIMIT)?;
        let sysfs_slow = Poller::start(&polled.a, &polled.a_if, Duration::from_secs(1), LIMIT)?;
        let sub = Subscription::start(agent.socket())?;
        let rtnl_a = Rtnl::open_in(&pair.a)?;
        let mut peers = Vec::new();
        for p in std::iter::once(&pair).chain(&controls) {
            peers.push(Flapped {
                rtnl: Rtnl::open_in(&p.b)?,
                index: p.b_index,
            });
        }
        let rig = Rig {
            sub,
            raw,
            raw_control,
            sysfs_fast,
            sysfs_slow,
            _beacon: beacon,
            agent,
            rtnl_a,
            peers,
            pair,
            controls,
        };
        if !rig
            .sub
            .wait_health(&rig.link(), Health::Up, Duration::from_secs(30))
        {
            anyhow::bail!(
                "the agent never called {} Up with traffic flowing: {:?}",
                rig.pair.a_if,
                rig.agent.get().map(|s| s.links)
            );
        }
        Ok(rig)
    }

    fn link(&self) -> Subject {
        Subject::Link(self.pair.a_if.clone())
    }

    /// Sets every flapped peer up or down, the watched one first; the time of each syscall.
    fn set_peers(&mut self, up: bool) -> Result<Vec<i64>> {
        self.peers
            .iter_mut()
            .map(|p| {
                p.rtnl.set_up(p.index, up).with_context(|| {
                    format!(
                        "setting peer {} {}",
                        p.index,
                        if up { "up" } else { "down" }
                    )
                })
            })
            .collect()
    }
}

impl Scenario for LinkScenario {
    fn name(&self) -> &'static str {
        match self {
            Self::AdminDown => "admin-down",
            Self::CarrierLoss => "carrier-loss",
            Self::CarrierLossShared => "carrier-loss-shared-ifindex",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::AdminDown => "Admin down and up of a link",
            Self::CarrierLoss => "Carrier loss through the peer (distinct ifindexes)",
            Self::CarrierLossShared => "Carrier loss, linkwatch-delayed (shared ifindex)",
        }
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let shared = matches!(self, Self::CarrierLossShared);
        let rounds = cx.rounds(100, 5);
        if shared {
            let methods = [
                NETWATCH,
                NETWATCH_SINCE,
                RAW_KERNEL,
                RAW_WATCHED,
                SYSFS_100MS,
                SYSFS_1S,
            ];
            report
                .tables
                .push(Table::new("fault", "Carrier loss: time to Down", &methods));
        } else {
            let methods = [NETWATCH, NETWATCH_SINCE, RAW, SYSFS_100MS, SYSFS_1S, DIFF];
            let fault_title = match self {
                Self::AdminDown => "Admin down: time to Down",
                _ => "Carrier loss: time to Down",
            };
            report
                .tables
                .push(Table::new("fault", fault_title, &methods));
            report
                .tables
                .push(Table::new("recovery", "Recovery: time to Up", &methods));
            for table in &mut report.tables {
                let diff = table.row(DIFF);
                diff.plot = false;
                diff.note = Some("per round; not plotted".into());
            }
        }
        report.notes.push(format!(
            "{rounds} rounds in fresh namespaces, agent started once. A UDP datagram every 5 ms \
             from the peer keeps the watched link receiving (in place of `ping -i 0.005`). \
             Faults are timed just before the netlink syscall that makes them, after a random \
             pause of 0.1-1.1 s so that they land at a random phase of the pollers."
        ));
        report.notes.push(
            "The agent runs with `flap_changes` raised: rounds come every 1-2 s, which its \
             4-changes-in-10-s flap rule would otherwise (rightly) call flapping. The flap-storm \
             scenarios use the defaults."
                .into(),
        );
        if shared {
            report.notes.push(format!(
                "All veth ends have ifindex {SHARED_INDEX}, so the kernel treats them as \
                 non-urgent and batches their events (net/core/link_watch.c). Each round brings \
                 the peer up at least {} ms after the previous event, then takes it down {} ms \
                 later: the down lands inside linkwatch's one-second window. An RTM_GETLINK \
                 (netwatch's fast path) or a read of sysfs `carrier` flushes a pending event \
                 (`linkwatch_sync_dev`), so three identical pairs are flapped in lockstep: one \
                 watched by netwatch, one with only a raw rtnetlink listener (the kernel's own \
                 timing, the baseline of the target), one with the sysfs pollers. Recovery is \
                 not timed here (the up is not delayed); see the distinct-ifindex scenario.",
                LINKWATCH_GAP.as_millis(),
                UP_BEFORE_DOWN.as_millis()
            ));
        }
        let mut rig = Rig::start(cx, self.name(), shared)?;
        let link = rig.link();
        let a = rig.pair.a_index;
        let mut rounds_raw = Vec::new();
        for round in 1..=rounds {
            cx.check_interrupt()?;
            cx.progress(self.title(), round, rounds);
            // A random pause as long as the slowest poll period: otherwise the fault lands at
            // the same phase of each poller every round (right after the poll that ended the
            // last wait).
            std::thread::sleep(
                cx.jitter
                    .between(PAUSE_MIN, PAUSE_MIN + Duration::from_secs(1)),
            );
            if !shared
                && !rig
                    .sub
                    .wait_health(&link, Health::Up, Duration::from_secs(10))
            {
                report.notes.push(format!(
                    "round {round}: the link was not Up before the fault"
                ));
            }
            // The fault: one time per flapped pair (watched, then controls).
            let round_start = now_ns();
            let t0s = match self {
                Self::AdminDown => vec![rig.rtnl_a.set_up(a, false)?],
                Self::CarrierLoss => rig.set_peers(false)?,
                Self::CarrierLossShared => {
                    let up = rig.set_peers(true)?;
                    std::thread::sleep(ns(up[0] + UP_BEFORE_DOWN.as_nanos() as i64 - now_ns()));
                    rig.set_peers(false)?
                }
            };
            let t0 = t0s[0];
            let deadline = Instant::now() + NOTICE;
            let nw = rig
                .sub
                .seen
                .wait_first(t0, deadline, |_, s| s.health(&link) == Some(Health::Down));
            let is_fault = |e: &crate::rtnl::LinkEvent, index: u32| {
                e.ifindex == index
                    && match self {
                        Self::AdminDown => !e.admin_up(),
                        _ => !e.has_carrier(),
                    }
            };
            let raw = rig
                .raw
                .events
                .wait_first(t0, deadline, |_, e| is_fault(e, a));
            let t_polled = *t0s.get(2).unwrap_or(&t0);
            // A poller that never saw the link up since the round began cannot see it go
            // down (in the delayed case the peer is up for only 300 ms): a miss, at once.
            let polled = |poller: &Poller| {
                let saw_up = !shared
                    || poller
                        .seen
                        .between(round_start, t_polled)
                        .iter()
                        .any(|(_, s)| s.is_up());
                saw_up
                    .then(|| {
                        poller
                            .seen
                            .wait_first(t_polled, deadline, |_, s| !s.is_up())
                    })
                    .flatten()
            };
            let (fast, slow) = (polled(&rig.sysfs_fast), polled(&rig.sysfs_slow));
            let table = &mut report.tables[0];
            let nw_at = nw.as_ref().map(|(at, _)| *at);
            table.record(NETWATCH, after(t0, nw_at));
            table.record(
                NETWATCH_SINCE,
                after(t0, nw.as_ref().and_then(|(_, s)| s.since_ns(&link))),
            );
            table.record(SYSFS_100MS, after(t_polled, fast.map(|(at, _)| at)));
            table.record(SYSFS_1S, after(t_polled, slow.map(|(at, _)| at)));
            let mut last_event = raw.as_ref().map(|(at, _)| *at);
            if let Some(control) = &rig.raw_control {
                let index = rig.controls[0].a_index;
                let kernel = control
                    .events
                    .wait_first(t0s[1], deadline, |_, e| is_fault(e, index));
                table.record(
                    RAW_KERNEL,
                    after(t0s[1], kernel.as_ref().map(|(at, _)| *at)),
                );
                table.record(RAW_WATCHED, after(t0, raw.as_ref().map(|(at, _)| *at)));
                last_event = last_event.max(kernel.map(|(at, _)| at));
            } else {
                table.record(RAW, after(t0, raw.as_ref().map(|(at, _)| *at)));
                let diff = match (nw_at, &raw) {
                    (Some(nw), Some((raw, _))) => Some(nw - raw),
                    _ => None,
                };
                table.record(DIFF, diff);
            }
            rounds_raw.push(json!({
                "round": round, "t0_ns": t0s,
                "reasons": nw.as_ref().map(|(_, s)| s.reasons(&link)),
            }));

            if shared {
                // The next up must come a full linkwatch period after this round's events.
                let last = last_event.unwrap_or_else(now_ns);
                std::thread::sleep(ns(last + LINKWATCH_GAP.as_nanos() as i64 - now_ns()));
                continue;
            }
            // Recovery, after the same random pause.
            std::thread::sleep(
                cx.jitter
                    .between(PAUSE_MIN, PAUSE_MIN + Duration::from_secs(1)),
            );
            let t1 = match self {
                Self::AdminDown => rig.rtnl_a.set_up(a, true)?,
                _ => rig.set_peers(true)?[0],
            };
            let deadline = Instant::now() + NOTICE;
            let nw = rig
                .sub
                .seen
                .wait_first(t1, deadline + Duration::from_secs(10), |_, s| {
                    s.health(&link) == Some(Health::Up)
                });
            let raw = rig
                .raw
                .events
                .wait_first(t1, deadline, |_, e| e.ifindex == a && e.is_up());
            let fast = rig
                .sysfs_fast
                .seen
                .wait_first(t1, deadline, |_, s| s.is_up());
            let slow = rig
                .sysfs_slow
                .seen
                .wait_first(t1, deadline, |_, s| s.is_up());
            let table = &mut report.tables[1];
            let nw_at = nw.as_ref().map(|(at, _)| *at);
            table.record(NETWATCH, after(t1, nw_at));
            table.record(
                NETWATCH_SINCE,
                after(t1, nw.as_ref().and_then(|(_, s)| s.since_ns(&link))),
            );
            table.record(RAW, after(t1, raw.as_ref().map(|(at, _)| *at)));
            table.record(SYSFS_100MS, after(t1, fast.map(|(at, _)| at)));
            table.record(SYSFS_1S, after(t1, slow.map(|(at, _)| at)));
            let diff = match (nw_at, &raw) {
                (Some(nw), Some((raw, _))) => Some(nw - raw),
                _ => None,
            };
            table.record(DIFF, diff);
        }
        if shared {
            // Leave the peers up, as the rig found them.
            let _ = rig.set_peers(true);
        }
        report.raw = json!({
            "rounds": rounds_raw,
            "raw_listener_overruns": rig.raw.overruns.load(std::sync::atomic::Ordering::Relaxed),
        });
        judge(self, report);
        Ok(())
    }
}

/// Puts the targets beside the figures.
fn judge(scenario: &LinkScenario, report: &mut ScenarioReport) {
    let fault = &mut report.tables[0];
    match scenario {
        LinkScenario::CarrierLossShared => {
            let kernel = fault.get(RAW_KERNEL).cloned();
            let nw = fault.row(NETWATCH);
            let target = p50_sooner(nw, kernel.as_ref(), "netwatch", 10.0);
            nw.targets.push(target);
        }
        _ => {
            let goals = [
                (NETWATCH, "netwatch end to end", "< 5 ms", 5),
                (DIFF, "netwatch minus raw rtnetlink", "within 1 ms", 1),
            ];
            for (name, what, goal, ms) in goals {
                let row = fault.row(name);
                let target = p99_below(row, what, goal, Duration::from_millis(ms));
                row.targets.push(target);
            }
        }
    }
}
