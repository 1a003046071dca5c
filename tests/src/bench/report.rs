//! What a scenario found, and how it is written: `report.md` (tables with each target beside
//! its figure), `report.json` (every raw sample) and one SVG plot per latency table.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::plot;
use super::stats::{fmt_ns, Summary};

/// A goal and whether the figure met it.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is measured against the goal ("netwatch p99").
    pub what: String,
    /// The goal as the issue states it ("< 5 ms").
    pub goal: String,
    /// The measured figure.
    pub figure: String,
    pub pass: bool,
    /// For a miss, by how much ("2.1 ms over"); `None` when there was nothing to judge.
    pub miss_by: Option<String>,
}

impl Target {
    /// `figure_ns` below `limit_ns`.
    pub fn below(what: &str, goal: &str, figure_ns: Option<i64>, limit_ns: i64) -> Target {
        Target {
            what: what.to_string(),
            goal: goal.to_string(),
            figure: figure_ns.map_or_else(|| "no samples".to_string(), fmt_ns),
            pass: figure_ns.is_some_and(|f| f < limit_ns),
            miss_by: figure_ns.map_or(Some("no samples".to_string()), |f| {
                (f >= limit_ns).then(|| format!("{} over", fmt_ns(f - limit_ns)))
            }),
        }
    }

    /// `ratio` at least `min` (ratios are "times sooner" or "fraction of").
    pub fn at_least(what: &str, goal: &str, ratio: Option<f64>, min: f64, unit: &str) -> Target {
        Target {
            what: what.to_string(),
            goal: goal.to_string(),
            figure: ratio.map_or_else(|| "no samples".to_string(), |r| format!("{r:.2}{unit}")),
            pass: ratio.is_some_and(|r| r >= min),
            miss_by: match ratio {
                None => Some("no samples".to_string()),
                Some(r) if r < min => Some(format!("{:.2}{unit} short", min - r)),
                Some(_) => None,
            },
        }
    }

    /// A plain number below `limit`, with its unit.
    pub fn value_below(
        what: &str,
        goal: &str,
        value: Option<f64>,
        limit: f64,
        unit: &str,
    ) -> Target {
        Target {
            what: what.to_string(),
            goal: goal.to_string(),
            figure: value.map_or_else(|| "not measured".to_string(), |v| format!("{v:.2} {unit}")),
            pass: value.is_some_and(|v| v < limit),
            miss_by: match value {
                None => Some("not measured".to_string()),
                Some(v) if v >= limit => Some(format!("{:.2} {unit} over", v - limit)),
                Some(_) => None,
            },
        }
    }

    pub fn verdict(&self) -> String {
        match (&self.pass, &self.miss_by) {
            (true, _) => "PASS".to_string(),
            (false, Some(by)) => format!("MISS ({by})"),
            (false, None) => "MISS".to_string(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"what": self.what, "goal": self.goal, "figure": self.figure,
               "pass": self.pass, "miss_by": self.miss_by})
    }
}

/// One method's latencies in one table.
#[derive(Clone, Debug)]
pub struct Row {
    pub method: String,
    /// Latencies in ns, one per round in which the method noticed.
    pub samples: Vec<i64>,
    /// Rounds in which the method was given the event.
    pub rounds: usize,
    pub targets: Vec<Target>,
    /// Drawn in the plot (derived rows such as differences are not).
    pub plot: bool,
    pub note: Option<String>,
}

impl Row {
    pub fn new(method: &str) -> Row {
        Row {
            method: method.to_string(),
            samples: Vec::new(),
            rounds: 0,
            targets: Vec::new(),
            plot: true,
            note: None,
        }
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }
}

/// A latency table: one row per method, for one kind of event ("time to Down").
#[derive(Clone, Debug)]
pub struct Table {
    /// Short name for files ("fault", "recovery").
    pub slug: String,
    pub title: String,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(slug: &str, title: &str, methods: &[&str]) -> Table {
        Table {
            slug: slug.to_string(),
            title: title.to_string(),
            rows: methods.iter().map(|m| Row::new(m)).collect(),
        }
    }

    pub fn row(&mut self, method: &str) -> &mut Row {
        let at = self
            .rows
            .iter()
            .position(|r| r.method == method)
            .unwrap_or_else(|| panic!("no row {method} in table {}", self.slug));
        &mut self.rows[at]
    }

    pub fn get(&self, method: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.method == method)
    }

    /// Records one round: every method is given the event; those that noticed add a sample.
    pub fn record(&mut self, method: &str, latency_ns: Option<i64>) {
        let row = self.row(method);
        row.rounds += 1;
        if let Some(latency) = latency_ns {
            row.samples.push(latency);
        }
    }
}

/// A table of facts that are not latencies (flap counts, overhead), with its own columns.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything one scenario produced.
#[derive(Debug, Default)]
pub struct ScenarioReport {
    pub name: String,
    pub title: String,
    pub tables: Vec<Table>,
    pub facts: Vec<Facts>,
    /// Targets judged outside the latency tables (facts).
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub elapsed: Duration,
    /// Per-round details that fit no table, kept in the JSON.
    pub raw: Value,
}

impl ScenarioReport {
    pub fn all_targets(&self) -> Vec<&Target> {
        self.tables
            .iter()
            .flat_map(|t| t.rows.iter())
            .flat_map(|r| r.targets.iter())
            .chain(self.targets.iter())
            .collect()
    }
}

/// The header of the whole report.
pub struct Meta {
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub agent: String,
    pub mode: String,
    pub elapsed: Duration,
    /// /proc/loadavg's 1-minute figure at the start and the end: other work on the machine
    /// shows up in every figure.
    pub load: (String, String),
}

/// Writes report.md, report.json and the plots into `dir`; returns the Markdown.
pub fn write(dir: &Path, meta: &Meta, scenarios: &[ScenarioReport]) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for scenario in scenarios {
        for table in &scenario.tables {
            if let Some(svg) = plot::svg(&format!("{}: {}", scenario.title, table.title), table) {
                let file = dir.join(format!("{}-{}.svg", scenario.name, table.slug));
                std::fs::write(&file, svg)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
    }
    let markdown = markdown(meta, scenarios);
    std::fs::write(dir.join("report.md"), &markdown)?;
    let json = serde_json::to_string_pretty(&to_json(meta, scenarios))?;
    std::fs::write(dir.join("report.json"), json)?;
    Ok(markdown)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The whole report as Markdown.
pub fn markdown(meta: &Meta, scenarios: &[ScenarioReport]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# netwatch benchmark, {}\n", meta.date);
    let _ = writeln!(
        md,
        "Kernel {}, {} CPUs; agent `{}`; {}; {:.1} min in all. Latencies run from the \
         fault's injection to each method's notification, all on CLOCK_MONOTONIC. \
         Percentiles are nearest-rank (every figure is a measured round); where a table has \
         fewer than 100 rounds, the p99 column shows the maximum and says so. Load average \
         (1 min) {} at the start, {} at the end.\n",
        meta.kernel,
        meta.cpus,
        meta.agent,
        meta.mode,
        meta.elapsed.as_secs_f64() / 60.0,
        meta.load.0,
        meta.load.1
    );
    md.push_str(
        "## Targets\n\n| scenario | what | figure | target | result |\n|---|---|---|---|---|\n",
    );
    for scenario in scenarios {
        if let Some(error) = &scenario.error {
            let _ = writeln!(
                md,
                "| {} | (scenario failed) | | | ERROR: {} |",
                scenario.title,
                cell(error)
            );
        }
        for target in scenario.all_targets() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                scenario.title,
                cell(&target.what),
                cell(&target.figure),
                cell(&target.goal),
                cell(&target.verdict())
            );
        }
    }
    for (i, scenario) in scenarios.iter().enumerate() {
        let _ = writeln!(
            md,
            "\n## {}. {} (`{}`, {:.0} s)\n",
            i + 1,
            scenario.title,
            scenario.name,
            scenario.elapsed.as_secs_f64()
        );
        if let Some(error) = &scenario.error {
            let _ = writeln!(md, "**This scenario failed:** {}\n", error);
        }
        for note in &scenario.notes {
            let _ = writeln!(md, "- {note}");
        }
        if !scenario.notes.is_empty() {
            md.push('\n');
        }
        for table in &scenario.tables {
            md.push_str(&latency_table(table));
            if table.rows.iter().any(|r| r.plot && !r.samples.is_empty()) {
                let _ = writeln!(
                    md,
                    "\n![{}]({}-{}.svg)\n",
                    table.title, scenario.name, table.slug
                );
            }
        }
        for facts in &scenario.facts {
            md.push_str(&facts_table(facts));
        }
    }
    md
}

/// One latency table as Markdown.
pub fn latency_table(table: &Table) -> String {
    let mut md = format!("### {}\n\n", table.title);
    md.push_str("| method | rounds | min | p50 | p95 | p99 | max | target | result |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for row in &table.rows {
        let rounds = if row.samples.len() == row.rounds {
            row.rounds.to_string()
        } else {
            format!("{} of {} noticed", row.samples.len(), row.rounds)
        };
        let goal: Vec<&str> = row.targets.iter().map(|t| t.goal.as_str()).collect();
        let verdict: Vec<String> = row.targets.iter().map(Target::verdict).collect();
        let figures = match row.summary() {
            Some(s) => format!(
                "{} | {} | {} | {} | {}",
                fmt_ns(s.min),
                fmt_ns(s.p50),
                fmt_ns(s.p95),
                s.p99_cell(),
                fmt_ns(s.max)
            ),
            None => "– | – | – | – | –".to_string(),
        };
        let method = match &row.note {
            Some(note) => format!("{} ({})", row.method, note),
            None => row.method.clone(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            cell(&method),
            rounds,
            figures,
            cell(&goal.join("; ")),
            cell(&verdict.join("; "))
        );
    }
    md
}

fn facts_table(facts: &Facts) -> String {
    let mut md = format!(
        "\n### {}\n\n| {} |\n|{}\n",
        facts.title,
        facts.headers.join(" | "),
        "---|".repeat(facts.headers.len())
    );
    for row in &facts.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md
}

fn to_json(meta: &Meta, scenarios: &[ScenarioReport]) -> Value {
    let scenarios: Vec<Value> = scenarios
        .iter()
        .map(|s| {
            let tables: Vec<Value> = s
                .tables
                .iter()
                .map(|t| {
                    let rows: Vec<Value> = t
                        .rows
                        .iter()
                        .map(|r| {
                            let summary = r.summary().map(|s| {
                                json!({"n": s.n, "min_ns": s.min, "p50_ns": s.p50, "p95_ns": s.p95,
                                       "p99_ns": s.p99, "p99_is_max": !s.has_p99(), "max_ns": s.max})
                            });
                            json!({
                                "method": r.method,
                                "rounds": r.rounds,
                                "noticed": r.samples.len(),
                                "note": r.note,
                                "summary": summary,
                                "targets": r.targets.iter().map(Target::to_json).collect::<Vec<_>>(),
                                "samples_ns": r.samples,
                            })
                        })
                        .collect();
                    json!({"slug": t.slug, "title": t.title, "rows": rows})
                })
                .collect();
            let facts: Vec<Value> = s
                .facts
                .iter()
                .map(|f| json!({"title": f.title, "headers": f.headers, "rows": f.rows}))
                .collect();
            json!({
                "name": s.name,
                "title": s.title,
                "error": s.error,
                "elapsed_s": s.elapsed.as_secs_f64(),
                "notes": s.notes,
                "tables": tables,
                "facts": facts,
                "targets": s.targets.iter().map(Target::to_json).collect::<Vec<_>>(),
                "raw": s.raw,
            })
        })
        .collect();
    json!({
        "date": meta.date,
        "kernel": meta.kernel,
        "cpus": meta.cpus,
        "agent": meta.agent,
        "mode": meta.mode,
        "elapsed_s": meta.elapsed.as_secs_f64(),
        "loadavg_1min": [meta.load.0, meta.load.1],
        "clock": "CLOCK_MONOTONIC",
        "scenarios": scenarios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn targets_say_pass_or_by_how_much_they_missed() {
        let pass = Target::below("netwatch p99", "< 5 ms", Some(4 * MS), 5 * MS);
        assert_eq!(pass.verdict(), "PASS");
        let miss = Target::below("netwatch p99", "< 5 ms", Some(7 * MS), 5 * MS);
        assert_eq!(miss.verdict(), "MISS (2.00 ms over)");
        let none = Target::below("netwatch p99", "< 5 ms", None, 5 * MS);
        assert_eq!(none.verdict(), "MISS (no samples)");
        let ratio = Target::at_least("speed-up", ">= 10x", Some(8.5), 10.0, "x");
        assert_eq!(ratio.verdict(), "MISS (1.50x short)");
        assert_eq!(
            Target::value_below("cpu", "< 0.5 %", Some(0.1), 0.5, "%").verdict(),
            "PASS"
        );
    }

    #[test]
    fn a_table_counts_rounds_and_labels_a_short_p99_as_max() {
        let mut table = Table::new("fault", "Time to Down", &["netwatch", "sysfs"]);
        for i in 1..=3 {
            table.record("netwatch", Some(i * MS));
            table.record("sysfs", (i != 2).then_some(i * 100 * MS));
        }
        let md = latency_table(&table);
        assert!(
            md.contains("| netwatch | 3 | 1.00 ms | 2.00 ms | 3.00 ms | max 3.00 ms | 3.00 ms |"),
            "{md}"
        );
        assert!(md.contains("| sysfs | 2 of 3 noticed |"), "{md}");
    }
}
