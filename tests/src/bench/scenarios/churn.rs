//! Answers during churn: a client asks for the state every 10 ms (a `get` on a new
//! connection, as `netwatch status` does) while 300 veth pairs are created, brought up and
//! deleted in the agent's namespace. The target: p99 under 50 ms. Each storm runs twice: with
//! names the agent watches, and with container-like `veth*` names, which it leaves out by
//! default (no XDP, not listed): the agent's CPU during each is reported. With
//! `NETWATCH_BEFORE_BIN` naming an older agent binary, the same storm runs against it too, in
//! the same process, for a before and after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns::block_on_here;
use crate::topology::{add_veth, delete_link, set_link_up, Pair};
use anyhow::Result;
use netwatch_client::Client;

use super::Scenario;
use crate::agent::try_binary;
use crate::bench::agent::{self, ticks_per_second, usage, AgentOptions};
use crate::bench::report::{Facts, ScenarioReport, Table, Target};
use crate::bench::stats::{fmt_ns, Summary};
use crate::bench::Context;

/// The older agent to compare with, if set.
pub const BEFORE_BIN: &str = "NETWATCH_BEFORE_BIN";

const PAIRS: u32 = 300;
const EVERY: Duration = Duration::from_millis(10);
const AFTER: &str = "netwatch (this build)";
const BEFORE: &str = "netwatch before (NETWATCH_BEFORE_BIN)";

pub struct Churn;

/// The storms' interface names: watched ones, and container-like ones the default
/// `[interfaces] exclude` leaves out.
const NAMINGS: [(&str, &str); 2] = [("ch*, watched", "ch"), ("veth*, left out", "veth")];

/// What one storm's client saw, and what the storm cost the agent.
struct Gets {
    latencies: Vec<i64>,
    failures: usize,
    storm: Duration,
    agent_cpu: Duration,
}

impl Scenario for Churn {
    fn name(&self) -> &'static str {
        "churn"
    }

    fn title(&self) -> &'static str {
        "socket get latency during a 300-pair netlink storm"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let rounds = cx.rounds(2, 1);
        let mut agents: Vec<(&str, PathBuf)> = vec![(AFTER, try_binary()?)];
        if let Some(before) = std::env::var_os(BEFORE_BIN) {
            agents.push((BEFORE, PathBuf::from(before)));
        } else {
            report.notes.push(format!(
                "No older agent to compare with: set {BEFORE_BIN} to one's binary for a before \
                 and after."
            ));
        }
        let methods: Vec<&str> = agents.iter().map(|(m, _)| *m).collect();
        let mut table = Table::new(
            "get",
            "A get during the storm: time to the answer",
            &methods,
        );
        let mut facts = Facts {
            title: format!(
                "Each storm: {PAIRS} veth pairs created, brought up and deleted; a get every {} ms",
                EVERY.as_millis()
            ),
            headers: [
                "agent",
                "names",
                "storm",
                "agent CPU",
                "gets",
                "failed",
                "p50",
                "p99",
                "max",
            ]
            .map(String::from)
            .to_vec(),
            rows: Vec::new(),
        };
        let total = rounds * agents.len() * NAMINGS.len();
        let mut done = 0;
        for _ in 0..rounds {
            for ((method, bin), (names, prefix)) in agents
                .iter()
                .flat_map(|agent| NAMINGS.iter().map(move |naming| (agent, naming)))
            {
                cx.check_interrupt()?;
                done += 1;
                cx.progress(self.title(), done, total);
                let gets = storm(cx, bin, prefix)?;
                // The target is about watched interfaces, the harder case.
                if *prefix == NAMINGS[0].1 {
                    for latency in &gets.latencies {
                        table.record(method, Some(*latency));
                    }
                }
                let summary = Summary::of(&gets.latencies);
                let cell =
                    |f: fn(&Summary) -> i64| summary.as_ref().map_or("-".into(), |s| fmt_ns(f(s)));
                facts.rows.push(vec![
                    method.to_string(),
                    names.to_string(),
                    format!("{:.1} s", gets.storm.as_secs_f64()),
                    format!("{:.2} s", gets.agent_cpu.as_secs_f64()),
                    gets.latencies.len().to_string(),
                    gets.failures.to_string(),
                    cell(|s| s.p50),
                    cell(|s| s.p99),
                    cell(|s| s.max),
                ]);
            }
        }
        let p99 = table
            .get(AFTER)
            .and_then(|row| row.summary())
            .map(|s| s.p99);
        report.targets.push(Target::below(
            "a get during a 300-pair storm, p99",
            "< 50 ms",
            p99,
            50_000_000,
        ));
        report.tables.push(table);
        report.facts.push(facts);
        Ok(())
    }
}

/// Starts `bin` in a fresh namespace, runs one storm of links named `PREFIX{i}a`/`b` there
/// while a client asks every `EVERY`, and returns what the client saw during the storm.
fn storm(cx: &Context, bin: &Path, prefix: &str) -> Result<Gets> {
    let pair = Pair::new();
    let agent = agent::start_binary(
        Some(bin),
        &pair.b,
        AgentOptions {
            config: None,
            metrics: None,
            log: cx.agent_log(&format!("churn-{prefix}")),
        },
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let asking = Arc::clone(&stop);
    let socket = agent.socket().to_path_buf();
    let client = std::thread::spawn(move || ask_until(&socket, &asking));
    // A moment of quiet answers first, so the storm's are the ones measured.
    std::thread::sleep(Duration::from_millis(300));
    let (cpu_before, _) = usage(agent.pid())?;
    let started = Instant::now();
    pair.b.block_on(async {
        for i in 0..PAIRS {
            let (index, peer) = (1000 + 2 * i, 1001 + 2 * i);
            add_veth(
                &format!("{prefix}{i}a"),
                index,
                &format!("{prefix}{i}b"),
                peer,
            )
            .await;
            set_link_up(index, true).await;
            set_link_up(peer, true).await;
        }
        for i in 0..PAIRS {
            delete_link(1000 + 2 * i).await;
        }
    });
    let storm = started.elapsed();
    // The events the storm queued are the agent's to handle too: let it drain them.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu_after, _) = usage(agent.pid())?;
    let agent_cpu = Duration::from_secs_f64((cpu_after - cpu_before) as f64 / ticks_per_second());
    stop.store(true, Ordering::Relaxed);
    let asked = client.join().unwrap_or_default();
    drop(agent);
    let during: Vec<&(Instant, Option<i64>)> = asked
        .iter()
        .filter(|(at, _)| *at >= started && *at <= started + storm)
        .collect();
    Ok(Gets {
        latencies: during.iter().filter_map(|(_, l)| *l).collect(),
        failures: during.iter().filter(|(_, l)| l.is_none()).count(),
        storm,
        agent_cpu,
    })
}

/// A get every `EVERY` until `stop`: when each was sent, and how long its answer took (`None`
/// for a failure). A slow answer delays the next get, as it would a user's.
fn ask_until(socket: &Path, stop: &AtomicBool) -> Vec<(Instant, Option<i64>)> {
    let mut asked = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let socket = socket.to_path_buf();
        let answered = block_on_here(async move {
            let mut client = Client::connect(&socket).await.ok()?;
            client.get().await.ok()
        });
        let took = i64::try_from(sent.elapsed().as_nanos()).unwrap_or(i64::MAX);
        asked.push((sent, answered.map(|_| took)));
        if let Some(rest) = EVERY.checked_sub(sent.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    asked
}
