//! A link-flap storm: 100 carrier flaps in 10 s through the peer. What matters is not latency
//! but accounting: how many flaps each method saw against the true number, whether the final
//! verdict is right, and whether events were lost.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::topology::{Pair, PairOptions};
use anyhow::{Context as _, Result};
use netwatch_client::state::{Health, NetworkState, Subject};
use serde_json::json;

use super::Scenario;
use crate::bench::agent::{self, AgentOptions};
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::fmt_ns;
use crate::bench::sysfs::{self, Poller};
use crate::bench::Context;
use crate::clock::{now_ns, ns};
use crate::history::History;
use crate::metrics::{metric, scrape};
use crate::rtnl::{Listener, Rtnl};
use crate::traffic::background::Beacon;
use crate::verdicts::Subscription;

const FLAPS: u32 = 100;
const PERIOD: Duration = Duration::from_millis(100);
const DOWN_FOR: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(3600);
const METRICS: &str = "127.0.0.1:9477";

pub struct Storm {
    pub shared_index: bool,
}

struct Rig {
    sub: Subscription,
    raw: Listener,
    sysfs_fast: Poller,
    sysfs_slow: Poller,
    _beacon: Beacon,
    agent: crate::agent::Agent,
    rtnl_b: Rtnl,
    rtnl_a: Rtnl,
    pair: Pair,
}

/// What one source saw of one storm.
#[derive(Default, Clone, Copy)]
struct Count {
    /// Transitions to down (carrier off / not up).
    downs: u32,
    /// Carrier changes either way.
    changes: u32,
}

/// Counts down and up transitions in a sequence of "is up" observations, starting from up.
fn transitions(ups: impl Iterator<Item = bool>) -> Count {
    let mut count = Count::default();
    let mut last = true;
    for up in ups {
        if up != last {
            count.changes += 1;
            if !up {
                count.downs += 1;
            }
            last = up;
        }
    }
    count
}

/// The N of "flapping: N carrier changes" in a reason, if there is one.
fn flap_changes(reasons: &str) -> Option<u32> {
    let rest = reasons.split("flapping: ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

impl Scenario for Storm {
    fn name(&self) -> &'static str {
        if self.shared_index {
            "flap-storm-shared-ifindex"
        } else {
            "flap-storm"
        }
    }

    fn title(&self) -> &'static str {
        if self.shared_index {
            "Link-flap storm, 100 flaps in 10 s (shared ifindex: linkwatch coalesces)"
        } else {
            "Link-flap storm, 100 flaps in 10 s (distinct ifindexes)"
        }
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let rounds = cx.rounds(2, 1);
        report.notes.push(format!(
            "{rounds} storm(s). Each: the peer goes down and, {} ms later, up again, every {} ms, \
             {FLAPS} times ({} carrier changes), with a UDP datagram every 5 ms toward the watched \
             side. The agent runs with its default thresholds (flapping: 4 carrier changes in \
             10 s) and metrics on inside the namespace.",
            DOWN_FOR.as_millis(),
            PERIOD.as_millis(),
            2 * FLAPS
        ));
        report.notes.push(
            "\"Flaps seen\" counts transitions to down each method observed; netwatch's own \
             account is the N of its \"flapping: N carrier changes\" reason (its largest in the \
             storm), halved. The kernel's IFLA_CARRIER_CHANGES on the watched end is the \
             cross-check of the truth. A poller whose period matches the storm's can alias: \
             it may read the same phase every time and see no flap at all."
                .into(),
        );
        if self.shared_index {
            report.notes.push(
                "Here every method shares the watched device, and both netwatch's RTM_GETLINK \
                 and the pollers' reads of sysfs `carrier` flush linkwatch's pending event \
                 (`linkwatch_sync_dev`): the raw listener sees more events than the kernel would \
                 send unprompted (see the linkwatch-delayed scenario for the kernel's own timing)."
                    .into(),
            );
        }
        let pair = Pair::with(PairOptions {
            b_up: true,
            ipv6: false,
            shared_index: self.shared_index.then_some(2),
        });
        let mut rtnl_a = Rtnl::open_in(&pair.a)?;
        rtnl_a
            .set_up(1, true)
            .context("bringing lo up for the metrics")?;
        let agent = agent::start(
            &pair.a,
            AgentOptions {
                config: None,
                metrics: Some(METRICS.parse()?),
                log: cx.agent_log(self.name()),
            },
        )?;
        let sink = SocketAddr::new(IpAddr::V4(pair.a_v4), 9);
        let rig = Rig {
            _beacon: Beacon::start(&pair.b, &pair.a, sink, Duration::from_millis(5), LIMIT),
            raw: Listener::start(&pair.a, LIMIT)?,
            sysfs_fast: Poller::start(&pair.a, &pair.a_if, Duration::from_millis(100), LIMIT)?,
            sysfs_slow: Poller::start(&pair.a, &pair.a_if, Duration::from_secs(1), LIMIT)?,
            sub: Subscription::start(agent.socket())?,
            rtnl_b: Rtnl::open_in(&pair.b)?,
            agent,
            rtnl_a,
            pair,
        };
        let mut rig = rig;
        let link = Subject::Link(rig.pair.a_if.clone());
        let (a, b) = (rig.pair.a_index, rig.pair.b_index);
        let metrics_addr = METRICS.parse()?;
        let overruns = |rig: &Rig| {
            scrape(&rig.pair.a, metrics_addr)
                .ok()
                .and_then(|text| metric(&text, "netwatch_netlink_overruns_total", ""))
        };
        let mut columns = vec!["source".to_string()];
        let mut rows: Vec<Vec<String>> = [
            "injected (the truth)",
            "kernel IFLA_CARRIER_CHANGES on the watched end",
            "raw rtnetlink events",
            "sysfs, 100 ms poll",
            "sysfs, 1 s poll",
            "netwatch: flaps accounted (its flapping reason)",
            "netwatch: verdict changes sent to the subscriber",
            "netwatch: netlink overruns (events lost)",
            "raw listener: overruns (events lost)",
            "netwatch verdict 1 s after the storm",
            "netwatch: time to Up after the storm",
        ]
        .iter()
        .map(|s| vec![s.to_string()])
        .collect();
        let mut raw_rounds = Vec::new();
        let (mut all_right, mut all_counted, mut none_lost) = (true, true, true);
        for round in 1..=rounds {
            cx.check_interrupt()?;
            cx.progress(self.title(), round, rounds);
            if !rig
                .sub
                .wait_health(&link, Health::Up, Duration::from_secs(40))
            {
                report
                    .notes
                    .push(format!("storm {round}: the link was not Up before it"));
            }
            let changes_before = rig.rtnl_a.get(a)?.carrier_changes.unwrap_or(0);
            let overruns_before = overruns(&rig);
            let raw_before = rig.raw.overruns.load(std::sync::atomic::Ordering::Relaxed);
            let start = now_ns();
            for i in 0..FLAPS {
                let down_at = start + (PERIOD * i).as_nanos() as i64;
                std::thread::sleep(ns(down_at - now_ns()));
                rig.rtnl_b.set_up(b, false)?;
                std::thread::sleep(ns(down_at + DOWN_FOR.as_nanos() as i64 - now_ns()));
                rig.rtnl_b.set_up(b, true)?;
            }
            let end = now_ns();
            std::thread::sleep(Duration::from_secs(1));
            let window_end = now_ns();
            let settled = rig.agent.get().ok();
            let changes_after = rig.rtnl_a.get(a)?.carrier_changes.unwrap_or(0);
            let overruns_after = overruns(&rig);
            let raw_lost = rig.raw.overruns.load(std::sync::atomic::Ordering::Relaxed) - raw_before;
            // Evidence before the storm counts as "up": each count starts from up.
            let raw = transitions(
                rig.raw
                    .events
                    .between(start, window_end)
                    .into_iter()
                    .filter(|(_, e)| e.ifindex == a)
                    .map(|(_, e)| e.has_carrier()),
            );
            let poll = |h: &History<sysfs::Seen>| {
                transitions(
                    h.between(start, window_end)
                        .into_iter()
                        .map(|(_, s)| s.is_up()),
                )
            };
            let (fast, slow) = (poll(&rig.sysfs_fast.seen), poll(&rig.sysfs_slow.seen));
            let states = rig.sub.seen.between(start, window_end);
            let sent = states
                .iter()
                .filter(|(_, s)| s.subjects.contains(&link))
                .count();
            let nw_downs = transitions(
                states
                    .iter()
                    .map(|(_, s)| s.health(&link) != Some(Health::Down)),
            )
            .downs;
            let accounted = states
                .iter()
                .map(|(_, s)| s.reasons(&link))
                .chain(settled.iter().map(|s| reasons(s, &link)))
                .filter_map(|r| flap_changes(&r))
                .max()
                .unwrap_or(0);
            let verdict_after = settled.as_ref().and_then(|s| s.verdict(&link).cloned());
            let right = verdict_after.as_ref().is_some_and(|v| {
                v.health == Health::Degraded && v.reasons.iter().any(|r| r.contains("flapping"))
            });
            let up = rig.sub.seen.wait_first(
                window_end,
                Instant::now() + Duration::from_secs(40),
                |_, s| s.health(&link) == Some(Health::Up),
            );
            let kernel = changes_after.wrapping_sub(changes_before);
            let lost = overruns_after
                .zip(overruns_before)
                .map(|(after, before)| after - before);
            all_right &= right;
            all_counted &= accounted / 2 >= FLAPS;
            none_lost &= lost == Some(0.0);

            columns.push(format!("storm {round}"));
            let pairs = |c: Count| format!("{} flaps ({} changes)", c.downs, c.changes);
            let cells = [
                format!(
                    "{FLAPS} flaps ({} changes) in {}",
                    2 * FLAPS,
                    fmt_ns(end - start)
                ),
                format!("{} flaps ({kernel} changes)", kernel / 2),
                format!(
                    "{} ({} link messages)",
                    pairs(raw),
                    rig.raw
                        .events
                        .between(start, window_end)
                        .iter()
                        .filter(|(_, e)| e.ifindex == a)
                        .count()
                ),
                pairs(fast),
                pairs(slow),
                format!("{} flaps ({accounted} changes)", accounted / 2),
                format!("{sent} changes, {nw_downs} of them to Down"),
                lost.map_or_else(|| "metrics unreadable".to_string(), |l| format!("{l:.0}")),
                raw_lost.to_string(),
                verdict_after.as_ref().map_or_else(
                    || "unknown".to_string(),
                    |v| format!("{} ({})", v.health, v.reasons.join("; ")),
                ),
                up.as_ref().map_or_else(
                    || "not Up within 40 s".to_string(),
                    |(at, _)| fmt_ns(at - end),
                ),
            ];
            for (row, cell) in rows.iter_mut().zip(cells) {
                row.push(cell);
            }
            raw_rounds.push(json!({
                "round": round, "start_ns": start, "end_ns": end,
                "injected_flaps": FLAPS, "kernel_carrier_changes": kernel,
                "raw_flaps": raw.downs, "raw_changes": raw.changes, "raw_overruns": raw_lost,
                "sysfs_100ms_flaps": fast.downs, "sysfs_1s_flaps": slow.downs,
                "netwatch_flap_changes": accounted, "netwatch_changes_sent": sent,
                "netwatch_downs_sent": nw_downs, "netwatch_overruns": lost,
                "verdict_after": verdict_after.as_ref().map(|v| json!({"health": v.health.to_string(), "reasons": v.reasons})),
                "time_to_up_ns": up.map(|(at, _)| at - end),
            }));
        }
        report.facts.push(Facts {
            title: "What each method saw of the storm".into(),
            headers: columns,
            rows,
        });
        let check = |what: &str, goal: &str, pass: bool, miss: &str| Target {
            what: what.into(),
            goal: goal.into(),
            figure: if pass { "yes".into() } else { "no".into() },
            pass,
            miss_by: (!pass).then(|| miss.to_string()),
        };
        report.targets.extend([
            check(
                "netwatch accounts for every flap",
                &format!("{FLAPS} flaps per storm"),
                all_counted,
                "see the storm table",
            ),
            check(
                "final verdict 1 s after the storm",
                "Degraded (flapping)",
                all_right,
                "see the storm table",
            ),
            check(
                "no netlink events lost by netwatch",
                "0 overruns",
                none_lost,
                "overruns counted",
            ),
        ]);
        report.raw = json!({ "storms": raw_rounds });
        Ok(())
    }
}

fn reasons(state: &NetworkState, subject: &Subject) -> String {
    state
        .verdict(subject)
        .map(|v| v.reasons.join("; "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_count_downs_and_changes_from_up() {
        let count = transitions([true, false, false, true, false, true].into_iter());
        assert_eq!((count.downs, count.changes), (2, 4));
        assert_eq!(transitions(std::iter::empty()).changes, 0);
    }

    #[test]
    fn the_flap_count_is_read_from_the_reason() {
        assert_eq!(
            flap_changes("flapping: 198 carrier changes in the last 10s"),
            Some(198)
        );
        assert_eq!(
            flap_changes("no carrier; flapping: 7 carrier changes"),
            Some(7)
        );
        assert_eq!(flap_changes("received traffic 0.1s ago"), None);
    }
}
