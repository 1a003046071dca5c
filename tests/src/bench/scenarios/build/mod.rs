//! The build cache issue's table, for real: Debian's ccache builds zstd's C library (26
//! files) through `netwatch cache-server` on build hosts in namespaces of their own, each
//! with its own agent, in front of two nginx mirrors in two more (tests/src/build_site.rs),
//! and the same builds with ccache talking straight to the primary (its own
//! `remote_storage`, no netwatch), under named network profiles (profile.rs). Per profile:
//! cold (host A, everything empty), warm (host B: every hit from the mirrors), failure (host
//! C, its link to the primary cut a third of the way in); with the first profile also outage
//! (host D, new flags, cut off a third of the way in, and how long until every entry reached
//! every mirror once it was back).
//!
//! The original design's table (docs/origins/network-aware-builds.md) claimed cold 45 s, warm
//! 8 s and "network failure recovery" 12 s for its own system; those were simulated.

mod profile;

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::Scenario;
use crate::bench::report::{Facts, ScenarioReport, Target};
use crate::bench::stats::fmt_bytes;
use crate::bench::Context;
use crate::build_hosts::{Build, BuildHost, CodeBase, Tool};
use crate::build_site::SiteHost;
use crate::mirrors::TxCounters;
use netwatch_client::state::{Health, Subject};
use profile::{Profile, Shaped};

/// Build hosts A-D go through netwatch (cold, warm, failure, outage); E is ccache straight
/// to the primary.
const HOSTS: [&str; 5] = ["A", "B", "C", "D", "E"];
const MIRRORS: [&str; 2] = ["primary", "secondary"];
const FLAGS: &str = "-O1";
/// Other code generation: every key of the outage build is new to the mirrors.
const OUTAGE_FLAGS: &str = "-O2";
/// How long the write-back after an outage may take before the scenario gives up.
const FLUSH_LIMIT: Duration = Duration::from_secs(120);

pub struct BuildScenario;

impl Scenario for BuildScenario {
    fn name(&self) -> &'static str {
        "build"
    }

    fn title(&self) -> &'static str {
        "ccache builds through netwatch cache-server against ccache straight to one nginx mirror, per network profile"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let profiles = profile::select(&cx.options.profiles)?;
        let code = CodeBase::zstd();
        let rounds = cx.rounds(1, 1);
        report.notes.push(format!(
            "Debian's ccache (remote_only) builds zstd's C library ({} files, {FLAGS}, two \
             compilers at once) on build hosts in namespaces of their own, each joined to two \
             nginx mirrors by links of its own, each link behind a tbf cap, each nginx behind \
             a delay line, with random loss from nftables; each host's agent watches each \
             mirror as an endpoint. \"netwatch\" is a `netwatch cache-server` on a new host \
             with an empty store; \"direct\" is ccache with `remote_storage` pointing straight \
             at the primary. Hits are ccache's own remote hits; bytes are what each mirror \
             sent on all its links (IFLA_STATS64). Profiles: {}.",
            code.sources.len(),
            profiles
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join("; ")
        ));
        report.notes.push(
            "The original design's table claimed cold 45 s, warm 8 s and network failure \
             recovery 12 s for its own system; those figures were simulated."
                .to_string(),
        );
        let mut raw = Vec::new();
        for round in 1..=rounds {
            for (index, profile) in profiles.iter().enumerate() {
                cx.check_interrupt()?;
                cx.progress(&format!("build, {}", profile.name), round, rounds);
                let outcome = run_profile(profile, &code, index == 0)?;
                outcome.report(profile, round, report);
                raw.push(outcome.json(profile, round));
            }
        }
        report.raw = json!({ "files": code.sources.len(), "runs": raw });
        Ok(())
    }
}

/// One build's figures.
#[derive(Debug, Default, Clone)]
struct Figures {
    seconds: f64,
    hits: u64,
    compiled: u64,
    errors: u64,
    /// Bytes each mirror sent during the build.
    sent: [u64; 2],
}

impl Figures {
    fn of(build: &Build, before: [TxCounters; 2], after: [TxCounters; 2]) -> Self {
        Figures {
            seconds: build.took.as_secs_f64(),
            hits: build.hits(),
            compiled: build.misses(),
            errors: build.errors(),
            sent: std::array::from_fn(|i| after[i].bytes - before[i].bytes),
        }
    }

    fn cell(&self) -> String {
        format!(
            "{:.2} s, {} hits, {} compiled{}",
            self.seconds,
            self.hits,
            self.compiled,
            if self.errors > 0 {
                format!(", {} ERRORS", self.errors)
            } else {
                String::new()
            }
        )
    }

    fn json(&self) -> Value {
        json!({"seconds": self.seconds, "hits": self.hits, "compiled": self.compiled,
               "errors": self.errors, "sent_bytes": self.sent})
    }
}

/// What one profile's builds gave.
#[derive(Debug, Default)]
struct Outcome {
    cold: Figures,
    warm: Figures,
    failure: Figures,
    direct_cold: Figures,
    direct_warm: Figures,
    direct_failure: Figures,
    /// How long after the cut the agent called the primary Down.
    down_after: Option<Duration>,
    /// Lookups sent to the primary after the agent called it Down.
    asked_after_down: u64,
    outage: Option<OutageFigures>,
}

#[derive(Debug)]
struct OutageFigures {
    netwatch: Figures,
    direct: Figures,
    queued: u64,
    flushed_after: Duration,
    /// Entries the outage build stored that were on every mirror once it flushed.
    complete: bool,
}

fn sent(shaped: &Shaped) -> [TxCounters; 2] {
    std::array::from_fn(|m| shaped.site.sent(m))
}

fn primary_down(host: &SiteHost) -> bool {
    let primary = Subject::Endpoint(MIRRORS[0].to_string());
    host.agent().get().is_ok_and(|s| {
        s.verdict(&primary)
            .is_some_and(|v| v.health == Health::Down)
    })
}

fn run_profile(profile: &Profile, code: &CodeBase, with_outage: bool) -> Result<Outcome> {
    let mut shaped = Shaped::start(profile, &HOSTS, &MIRRORS)?;
    shaped.site.start_agents();
    let shaped = shaped;
    let site = &shaped.site;
    let flags = profile.server_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut outcome = Outcome::default();
    let measured = |host: &BuildHost, build_flags: &str| {
        let before = sent(&shaped);
        let build = host.build(code, build_flags, &Tool::Ccache);
        Figures::of(&build, before, sent(&shaped))
    };

    let a = BuildHost::start_with(site.host("A"), &flags);
    outcome.cold = measured(&a, FLAGS);
    a.wait_written_back(FLUSH_LIMIT);
    let b = BuildHost::start_with(site.host("B"), &flags);
    outcome.warm = measured(&b, FLAGS);

    // Host E builds with ccache straight to the primary, a new ccache directory each time.
    let e = site.host("E");
    outcome.direct_cold = measured(&BuildHost::direct(e, &shaped.primary_url("E")), FLAGS);
    outcome.direct_warm = measured(&BuildHost::direct(e, &shaped.primary_url("E")), FLAGS);

    // The host's link to the primary cut a third of the way in, through netwatch, then
    // straight.
    let c_host = site.host("C");
    let c = BuildHost::start_with(c_host, &flags);
    let before = sent(&shaped);
    let running = c.start_build(code, FLAGS, &Tool::Ccache);
    wait_done(|| running.done(), code.sources.len() / 3);
    c_host.cut(0);
    let cut_at = Instant::now();
    let asked = |host: &BuildHost| host.mirror_figure(&host.status(), MIRRORS[0], "asked");
    let mut asked_at_down = None;
    while cut_at.elapsed() < Duration::from_secs(10) {
        if primary_down(c_host) {
            outcome.down_after = Some(cut_at.elapsed());
            asked_at_down = Some(asked(&c));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let build = running.finish(&c);
    outcome.failure = Figures::of(&build, before, sent(&shaped));
    outcome.asked_after_down = asked_at_down.map_or(0, |at| asked(&c) - at);
    c_host.restore(0);
    let direct = BuildHost::direct(e, &shaped.primary_url("E"));
    let before = sent(&shaped);
    let running = direct.start_build(code, FLAGS, &Tool::Ccache);
    wait_done(|| running.done(), code.sources.len() / 3);
    e.cut(0);
    let build = running.finish(&direct);
    outcome.direct_failure = Figures::of(&build, before, sent(&shaped));
    e.restore(0);

    if with_outage {
        outcome.outage = Some(outage(&shaped, &flags, code)?);
    }
    Ok(outcome)
}

fn wait_done(done: impl Fn() -> usize, wanted: usize) {
    let started = Instant::now();
    while done() < wanted && started.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The host cut off a third of the way into a build of new keys, through netwatch (D) and
/// straight (E); then how long until every entry D queued reached every mirror.
fn outage(shaped: &Shaped, flags: &[&str], code: &CodeBase) -> Result<OutageFigures> {
    let site = &shaped.site;
    let stored_before: Vec<usize> = site.mirrors.iter().map(|m| entries(m.root())).collect();
    let d_host = site.host("D");
    let d = BuildHost::start_with(d_host, flags);
    let before = sent(shaped);
    let running = d.start_build(code, OUTAGE_FLAGS, &Tool::Ccache);
    wait_done(|| running.done(), code.sources.len() / 3);
    d_host.isolate();
    let build = running.finish(&d);
    let netwatch = Figures::of(&build, before, sent(shaped));
    let queued = d.status()["stores"].as_u64().unwrap_or(0);
    d_host.reconnect();
    let back = Instant::now();
    d.wait_written_back(FLUSH_LIMIT);
    let flushed_after = back.elapsed();
    let complete = site
        .mirrors
        .iter()
        .zip(&stored_before)
        .all(|(m, before)| entries(m.root()) == before + queued as usize);

    let e = site.host("E");
    let direct = BuildHost::direct(e, &shaped.primary_url("E"));
    let before = sent(shaped);
    let running = direct.start_build(code, OUTAGE_FLAGS, &Tool::Ccache);
    wait_done(|| running.done(), code.sources.len() / 3);
    e.isolate();
    let build = running.finish(&direct);
    let direct = Figures::of(&build, before, sent(shaped));
    e.reconnect();
    Ok(OutageFigures {
        netwatch,
        direct,
        queued,
        flushed_after,
        complete,
    })
}

/// The build cache entries on a mirror.
fn entries(root: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                .sum()
        })
    }
    walk(&root.join("buildcache"))
}

impl Outcome {
    fn report(&self, profile: &Profile, round: usize, report: &mut ScenarioReport) {
        let bytes = |f: &Figures| {
            MIRRORS
                .iter()
                .zip(f.sent)
                .map(|(name, sent)| format!("{name} {}", fmt_bytes(sent)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut facts = Facts {
            title: format!("round {round}, {}", profile.describe()),
            headers: [
                "build",
                "netwatch cache-server",
                "sent by the mirrors",
                "ccache straight to the primary",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    "cold".into(),
                    self.cold.cell(),
                    bytes(&self.cold),
                    self.direct_cold.cell(),
                ],
                vec![
                    "warm".into(),
                    self.warm.cell(),
                    bytes(&self.warm),
                    self.direct_warm.cell(),
                ],
                vec![
                    "failure (primary cut at 1/3)".into(),
                    self.failure.cell(),
                    bytes(&self.failure),
                    self.direct_failure.cell(),
                ],
            ],
        };
        if let Some(outage) = &self.outage {
            facts.rows.push(vec![
                format!(
                    "outage (host cut at 1/3, {OUTAGE_FLAGS}); {} entries written back {:.2} s after the links came back{}",
                    outage.queued,
                    outage.flushed_after.as_secs_f64(),
                    if outage.complete { "" } else { ", SOME MISSING" }
                ),
                outage.netwatch.cell(),
                bytes(&outage.netwatch),
                outage.direct.cell(),
            ]);
        }
        report.facts.push(facts);
        report.notes.push(format!(
            "{}: the agent called the primary Down {} after the cut; lookups sent to it after: {}",
            profile.name,
            self.down_after
                .map_or("not within 10 s".to_string(), |d| format!(
                    "{} ms",
                    d.as_millis()
                )),
            self.asked_after_down
        ));
        let p = profile.name;
        report.targets.push(Target::at_least(
            &format!("{p}: cold over warm (how many times faster warm is)"),
            ">= 3x",
            Some(self.cold.seconds / self.warm.seconds.max(1e-9)),
            3.0,
            "x",
        ));
        report.targets.push(Target::value_below(
            &format!("{p}: failure over warm"),
            "<= 1.2x",
            Some(self.failure.seconds / self.warm.seconds.max(1e-9)),
            1.2 + 1e-9,
            "x",
        ));
        let errors = [&self.cold, &self.warm, &self.failure]
            .iter()
            .map(|f| f.errors)
            .sum::<u64>()
            + self.outage.as_ref().map_or(0, |o| o.netwatch.errors);
        report.targets.push(Target::value_below(
            &format!("{p}: build errors through netwatch"),
            "0",
            Some(errors as f64),
            0.5,
            "",
        ));
        report.targets.push(Target::value_below(
            &format!("{p}: lookups sent to the cut primary after the agent called it Down"),
            "0",
            self.down_after.map(|_| self.asked_after_down as f64),
            0.5,
            "",
        ));
        if let Some(outage) = &self.outage {
            report.targets.push(Target::value_below(
                &format!(
                    "{p}: outage build's entries missing from a mirror once the links came back"
                ),
                "0",
                Some(if outage.complete { 0.0 } else { 1.0 }),
                0.5,
                "",
            ));
        }
    }

    fn json(&self, profile: &Profile, round: usize) -> Value {
        json!({
            "round": round,
            "profile": profile.name,
            "cold": self.cold.json(),
            "warm": self.warm.json(),
            "failure": self.failure.json(),
            "direct_cold": self.direct_cold.json(),
            "direct_warm": self.direct_warm.json(),
            "direct_failure": self.direct_failure.json(),
            "down_after_ms": self.down_after.map(|d| d.as_millis() as u64),
            "asked_after_down": self.asked_after_down,
            "outage": self.outage.as_ref().map(|o| json!({
                "netwatch": o.netwatch.json(), "direct": o.direct.json(), "queued": o.queued,
                "flushed_after_s": o.flushed_after.as_secs_f64(), "complete": o.complete,
            })),
        })
    }
}
