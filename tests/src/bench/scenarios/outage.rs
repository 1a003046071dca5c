//! The original design's comparison, measured: an outage during a transfer, plain backoff
//! against network-aware retry (issue 4). The same download, the same cut, one after the
//! other: attempts spent, whether it succeeded, and how soon the transfer resumed.

use std::time::Duration;

use crate::download::{outage_comparison, DownloadOutcome};
use anyhow::Result;

use super::{Scenario, Target};
use crate::bench::{
    report::{Facts, ScenarioReport},
    Context,
};

const SIZE: u64 = 12 << 20;
const CUT_AFTER: Duration = Duration::from_millis(700);

pub struct Outage;

impl Scenario for Outage {
    fn name(&self) -> &'static str {
        "outage"
    }

    fn title(&self) -> &'static str {
        "outage during a transfer: plain backoff against network-aware retry"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        // The 30 s; a quick run takes 5 s, which already outlasts plain backoff.
        let outage = if cx.options.quick {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(30)
        };
        let rounds = cx.rounds(1, 1);
        let mut facts = Facts {
            title: format!(
                "{} s outage, {} MiB download, policy: 3 attempts, 200 ms initial backoff",
                outage.as_secs(),
                SIZE >> 20
            ),
            headers: [
                "round",
                "retry",
                "attempts",
                "succeeded",
                "waited for network",
                "agent Up -> retry",
                "link-up -> retry",
            ]
            .map(String::from)
            .to_vec(),
            rows: Vec::new(),
        };
        let mut worst_resume: Option<i64> = None;
        let mut worst_attempts = 0;
        for round in 1..=rounds {
            cx.progress(self.title(), round, rounds);
            let (aware, plain) = outage_comparison(SIZE, CUT_AFTER, outage);
            for (name, outcome) in [("network-aware", &aware), ("plain backoff", &plain)] {
                facts.rows.push(row(round, name, outcome));
            }
            let resume = aware.resume_after_up().map(|d| d.as_nanos() as i64);
            worst_resume = worst_resume.max(resume).or(resume);
            worst_attempts = worst_attempts.max(aware.report.attempts);
            if !aware.completed {
                report.notes.push(format!(
                    "round {round}: the network-aware download failed: {:?}",
                    aware.error
                ));
            }
        }
        report.facts.push(facts);
        report.targets.push(Target::below(
            "network-aware: agent Up to the retry starting (worst round)",
            "< 100 ms",
            worst_resume,
            100_000_000,
        ));
        report.targets.push(Target {
            what: "network-aware: attempts spent on the outage (worst round)".into(),
            goal: "at most 1".into(),
            figure: worst_attempts.saturating_sub(1).to_string(),
            pass: worst_attempts <= 2,
            miss_by: (worst_attempts > 2).then(|| format!("{} over", worst_attempts - 2)),
        });
        Ok(())
    }
}

fn row(round: usize, name: &str, o: &DownloadOutcome) -> Vec<String> {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    vec![
        round.to_string(),
        name.to_string(),
        o.report.attempts.to_string(),
        if o.completed && o.verified {
            "yes"
        } else {
            "no"
        }
        .to_string(),
        format!("{:.1} s", o.report.network_wait.as_secs_f64()),
        ms(o.resume_after_up()),
        ms(o.resume_after_link_up()),
    ]
}
