//! The Prometheus rules in dist/prometheus, by Prometheus's own tool: `promtool check rules`
//! passes, the unit tests beside them (`promtool test rules`: a host Down, a link Degraded, an
//! agent gone, a costly program, an endpoint Down for the fleet and for one host) pass, and
//! every netwatch metric they name is one the agent exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use netwatch_agent::metrics::{render, AgentCosts};
use netwatch_client::state::NetworkState;
use netwatch_tests::metrics::promtool;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/prometheus")
}

fn promtool_ok(args: &[&str]) -> String {
    let promtool = promtool().unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{text}",
        out.status
    );
    text
}

#[test]
fn the_rules_check_and_their_unit_tests_pass() {
    println!("{}", promtool_ok(&["check", "rules", "netwatch.rules.yml"]));
    println!(
        "{}",
        promtool_ok(&["test", "rules", "netwatch.rules.test.yml"])
    );
}

#[test]
fn every_metric_the_rules_name_is_exported_by_the_agent() {
    let rules = std::fs::read_to_string(rules_dir().join("netwatch.rules.yml"))
        .expect("reading netwatch.rules.yml");
    let named: BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        // (`netwatch_(rx|xdp)` is a program name pattern, not a metric.)
        .filter(|word| word.starts_with("netwatch_") && !word.ends_with('_'))
        .collect();
    assert!(!named.is_empty(), "the rules name no netwatch metric");
    // Every family is written, even without samples.
    let exported = render(&NetworkState::initial(0), &AgentCosts::default());
    let missing: Vec<&&str> = named
        .iter()
        .filter(|name| !exported.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "the rules name metrics the agent does not export: {missing:?}"
    );
}
