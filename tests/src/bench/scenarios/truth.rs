//! The truth suite (tests/src/truth) as a benchmark: every fault scenario once per round,
//! its outcomes as a confusion matrix of expected against observed verdicts, and each
//! step's time to the right verdict beside the targets. Then a 300-pair netlink
//! storm: how soon the agent's view equals the kernel's, and its file descriptors after.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::truth::{confusion_matrix, matrix_headers, scenarios, Outcome};
use anyhow::Result;

use super::{Scenario, Target};
use crate::bench::{
    report::{Facts, ScenarioReport},
    Context,
};

pub struct Truth;

impl Scenario for Truth {
    fn name(&self) -> &'static str {
        "truth"
    }

    fn title(&self) -> &'static str {
        "verdict truth: real faults, the right verdict, how soon, and no flip-flops"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let rounds = cx.rounds(1, 1);
        let all = scenarios::all();
        let mut outcomes: Vec<Outcome> = Vec::new();
        let total = rounds * all.len();
        for round in 0..rounds {
            for (i, (name, run)) in all.iter().enumerate() {
                cx.progress(self.title(), round * all.len() + i + 1, total);
                match catch_unwind(AssertUnwindSafe(run)) {
                    Ok(found) => outcomes.extend(found),
                    Err(panic) => report.notes.push(format!(
                        "round {}: scenario \"{name}\" failed: {}",
                        round + 1,
                        panic_text(&panic)
                    )),
                }
            }
        }
        report.facts.push(Facts {
            title: format!(
                "Confusion matrix: {} verdicts judged at the end of each step ({rounds} round(s))",
                outcomes.len()
            ),
            headers: matrix_headers(),
            rows: confusion_matrix(&outcomes),
        });
        report.facts.push(steps_table(&outcomes));
        let wrong = outcomes
            .iter()
            .filter(|o| o.observed != Some(o.expected))
            .count();
        let false_downs = outcomes.iter().filter(|o| o.false_down).count();
        let false_degraded = outcomes.iter().filter(|o| o.false_degraded).count();
        let flips: usize = outcomes.iter().map(|o| o.flips).sum();
        for (what, count) in [
            ("final verdicts that were wrong", wrong),
            ("false Down verdicts", false_downs),
            ("false Degraded verdicts", false_degraded),
            ("flip-flops after the right verdict", flips),
        ] {
            report.targets.push(Target {
                what: what.into(),
                goal: "0".into(),
                figure: count.to_string(),
                pass: count == 0,
                miss_by: (count > 0).then(|| format!("{count} over")),
            });
        }
        for outcome in &outcomes {
            report.targets.push(Target::below(
                &format!(
                    "{} / {}: {} {} within",
                    outcome.scenario, outcome.step, outcome.subject, outcome.expected
                ),
                &format!("<= {:.0} s", outcome.within.as_secs_f64()),
                outcome
                    .counted()
                    .filter(|_| outcome.right())
                    .map(|d| d.as_nanos() as i64),
                outcome.within.as_nanos() as i64 + 1,
            ));
        }
        storm(cx, report);
        Ok(())
    }
}

fn steps_table(outcomes: &[Outcome]) -> Facts {
    Facts {
        title: "Every step: expected against observed, and how soon it was right".into(),
        headers: [
            "scenario",
            "step",
            "subject",
            "expected",
            "observed",
            "right after",
            "target",
            "flips",
            "false Down",
            "false Degraded",
        ]
        .map(String::from)
        .to_vec(),
        rows: outcomes
            .iter()
            .map(|o| {
                vec![
                    o.scenario.clone(),
                    o.step.clone(),
                    o.subject.to_string(),
                    o.expected.to_string(),
                    o.observed.map_or("none".into(), |h| h.to_string()),
                    o.time_text(),
                    format!("{:.0} s", o.within.as_secs_f64()),
                    o.flips.to_string(),
                    if o.false_down { "yes" } else { "no" }.into(),
                    if o.false_degraded { "yes" } else { "no" }.into(),
                ]
            })
            .collect(),
    }
}

fn storm(cx: &Context, report: &mut ScenarioReport) {
    let pairs = if cx.options.quick { 100 } else { 300 };
    let storm = match catch_unwind(|| scenarios::netlink_storm(pairs)) {
        Ok(storm) => storm,
        Err(panic) => {
            report
                .notes
                .push(format!("the netlink storm failed: {}", panic_text(&panic)));
            return;
        }
    };
    report.facts.push(Facts {
        title: format!(
            "Netlink storm: {pairs} veth pairs created, brought up and deleted, 4 KiB event buffer"
        ),
        headers: [
            "overruns logged",
            "agent = kernel after",
            "links (agent / kernel)",
            "fds before",
            "fds after",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![vec![
            storm.overruns.to_string(),
            storm.converged_after.map_or("never".into(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1e3)
            }),
            format!("{} / {}", storm.agent_links.len(), storm.kernel_links.len()),
            storm.fds_before.to_string(),
            storm.fds_after.to_string(),
        ]],
    });
    report.targets.push(Target::below(
        "storm: the agent's interfaces equal the kernel's, after the storm's end",
        "< 1 s",
        storm.converged_after.map(|d| d.as_nanos() as i64),
        Duration::from_secs(1).as_nanos() as i64,
    ));
    let leaked = storm.fds_after.saturating_sub(storm.fds_before);
    report.targets.push(Target {
        what: "storm: file descriptors held beyond the idle count".into(),
        goal: "0".into(),
        figure: leaked.to_string(),
        pass: leaked == 0,
        miss_by: (leaked > 0).then(|| format!("{leaked} over")),
    });
}

/// What a panic said.
pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
        .lines()
        .take(3)
        .collect::<Vec<_>>()
        .join(" / ")
}
