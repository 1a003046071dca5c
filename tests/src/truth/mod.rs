//! The truth suite: real faults in namespaces, each with the verdict the agent must reach,
//! judged on what its socket served. The privileged tests assert the outcomes
//! (`tests/verdict_truth.rs`); the bench prints them as a confusion matrix with the time to
//! the right verdict (`cargo xtask bench --scenario truth`).

mod judge;
pub mod oracle;
pub mod scenarios;
pub mod soak;

use std::time::Duration;

use netwatch_client::state::{Health, Subject};

pub use judge::{judge, Phase};

/// What one subject must show after a step of a scenario.
#[derive(Clone, Debug)]
pub struct Expect {
    pub subject: Subject,
    pub health: Health,
    /// The target: the right verdict within this long of the step.
    pub within: Duration,
}

impl Expect {
    pub fn new(subject: Subject, health: Health, within: Duration) -> Self {
        Self {
            subject,
            health,
            within,
        }
    }
}

/// How one subject fared in one step.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub scenario: String,
    pub step: String,
    pub subject: Subject,
    pub expected: Health,
    /// The verdict when the step ended.
    pub observed: Option<Health>,
    /// From the step to the first verdict that was right and stayed right to the end.
    pub to_right: Option<Duration>,
    /// From the step to the first packet of the scenario's own traffic that got through,
    /// where only that can show a recovery (TCP's next retransmission after a blackhole:
    /// nothing passive can know sooner). The target then runs from this moment.
    pub evidence_after: Option<Duration>,
    pub within: Duration,
    /// Health changes after the subject first reached the expected verdict.
    pub flips: usize,
    /// Whether it was Down at any moment of the step though Down was not expected.
    pub false_down: bool,
    /// Whether it was Degraded after the step's first verdict, though Up (or Unknown) was
    /// expected: a false alarm on the way, such as Degraded on a link just back.
    pub false_degraded: bool,
    /// Every verdict the subject had in the step, with times, for people.
    pub history: String,
}

impl Outcome {
    /// Right at the end, never Down or Degraded by mistake, and no flip-flops once right.
    pub fn right(&self) -> bool {
        self.observed == Some(self.expected)
            && !self.false_down
            && !self.false_degraded
            && self.flips == 0
    }

    /// Right, and within the target time.
    pub fn in_time(&self) -> bool {
        self.right() && self.counted().is_some_and(|t| t <= self.within)
    }

    /// The time the target is judged on: to the right verdict, from the step or from the
    /// first evidence the step allowed.
    pub fn counted(&self) -> Option<Duration> {
        let to_right = self.to_right?;
        Some(to_right.saturating_sub(self.evidence_after.unwrap_or_default()))
    }

    /// Judges the target from `at` (the first packet through), not from the step.
    pub fn with_evidence_at(mut self, at: Option<Duration>) -> Self {
        self.evidence_after = at;
        self
    }

    /// "0.42 s", or "3.58 s (0.21 s after the first packet through at 3.37 s)".
    pub fn time_text(&self) -> String {
        let Some(to_right) = self.to_right else {
            return "never".into();
        };
        match self.evidence_after {
            None => format!("{:.2} s", to_right.as_secs_f64()),
            Some(through) => format!(
                "{:.2} s ({:.2} s after the first packet through at {:.2} s)",
                to_right.as_secs_f64(),
                to_right.saturating_sub(through).as_secs_f64(),
                through.as_secs_f64()
            ),
        }
    }

    /// One line for failure messages and logs.
    pub fn describe(&self) -> String {
        format!(
            "{} / {}: {} expected {}, observed {}, right after {}, {} flip(s){}{}; history: {}",
            self.scenario,
            self.step,
            self.subject,
            self.expected,
            self.observed.map_or("nothing", Health::as_str),
            self.time_text(),
            self.flips,
            if self.false_down { ", FALSE DOWN" } else { "" },
            if self.false_degraded {
                ", FALSE DEGRADED"
            } else {
                ""
            },
            self.history
        )
    }
}

/// Panics with every outcome that was not right, and prints all of them.
pub fn assert_right(outcomes: &[Outcome]) {
    for outcome in outcomes {
        eprintln!("{}", outcome.describe());
    }
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.right())
        .map(Outcome::describe)
        .collect();
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

const HEALTHS: [Health; 4] = [Health::Up, Health::Degraded, Health::Down, Health::Unknown];

/// Expected (rows) against observed (columns), as a Markdown table.
pub fn confusion_matrix(outcomes: &[Outcome]) -> Vec<Vec<String>> {
    HEALTHS
        .iter()
        .map(|expected| {
            let mut row = vec![format!("expected {expected}")];
            for observed in HEALTHS {
                let n = outcomes
                    .iter()
                    .filter(|o| o.expected == *expected && o.observed == Some(observed))
                    .count();
                row.push(n.to_string());
            }
            let none = outcomes
                .iter()
                .filter(|o| o.expected == *expected && o.observed.is_none())
                .count();
            row.push(none.to_string());
            row
        })
        .collect()
}

/// The matrix's column headers.
pub fn matrix_headers() -> Vec<String> {
    let mut headers = vec![String::new()];
    headers.extend(HEALTHS.iter().map(|h| format!("observed {h}")));
    headers.push("no verdict".to_string());
    headers
}
