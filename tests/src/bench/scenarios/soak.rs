//! Healthy soaks: a steady flow for 10 minutes, then 10 more under 0.1% random loss, and
//! every verdict that was not Up counted (the target: none).

use std::time::Duration;

use crate::truth::soak::soak;
use anyhow::Result;

use super::{Scenario, Target};
use crate::bench::{
    report::{Facts, ScenarioReport},
    Context,
};

pub struct Soak;

impl Scenario for Soak {
    fn name(&self) -> &'static str {
        "soak"
    }

    fn title(&self) -> &'static str {
        "healthy soak: no verdict but Up for 10 minutes, clean and with 0.1% loss"
    }

    fn run(&self, cx: &mut Context, report: &mut ScenarioReport) -> Result<()> {
        let duration = if cx.options.quick {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(600)
        };
        let mut facts = Facts {
            title: "Verdicts other than Up served during each soak".into(),
            headers: ["loss", "duration", "host", "link", "endpoint", "flow moved"]
                .map(String::from)
                .to_vec(),
            rows: Vec::new(),
        };
        for (i, loss) in [0.0, 0.1].into_iter().enumerate() {
            cx.progress(self.title(), i + 1, 2);
            let found = soak(duration, loss);
            let counts: Vec<usize> = found.not_up.iter().map(|(_, n)| *n).collect();
            let mut row = vec![
                format!("{loss}%"),
                format!("{} s", found.duration.as_secs()),
            ];
            row.extend(counts.iter().map(ToString::to_string));
            row.push(format!("{:.0} MiB", found.sent as f64 / (1 << 20) as f64));
            facts.rows.push(row);
            report
                .notes
                .extend(found.examples.iter().map(|e| format!("{loss}% loss: {e}")));
            let total: usize = counts.iter().sum();
            report.targets.push(Target {
                what: format!("verdicts other than Up, {loss}% loss"),
                goal: "0".into(),
                figure: total.to_string(),
                pass: total == 0,
                miss_by: (total > 0).then(|| format!("{total} over")),
            });
        }
        report.facts.push(facts);
        Ok(())
    }
}
