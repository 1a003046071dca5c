//! The Grafana dashboards in dist/grafana: importable as they are (a uid, a title, unique panel
//! ids, a place on the grid for each panel, every query on the `datasource` variable); every
//! query is PromQL that `promtool` accepts and names only metrics the agent exports or the
//! shipped rules record; every query finds series on a fleet in trouble (so no label or join is
//! wrong); and the verdict panels' value mappings say what their queries encode.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use netwatch_agent::metrics::{render, AgentCosts, ProcessUsage, ProgramCost};
use netwatch_client::state::{EndpointStatus, Health, LinkStatus, NetworkState, Verdict};
use netwatch_tests::metrics::promtool;
use serde_json::{json, Value};

const DASHBOARDS: [&str; 2] = ["netwatch-host.json", "netwatch-fleet.json"];

/// What Grafana's built-in variables stand for when the queries are checked: the data in
/// the checks below is one sample a minute, so a 5-minute rate has samples to work on.
const BUILT_INS: [(&str, &str); 3] = [
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__range", "1h"),
];

/// What the dashboards' own variables stand for (`instance`: the host whose dashboard is
/// checked, one with every kind of trouble).
const VARIABLES: [(&str, &str); 2] = [("job", "netwatch"), ("instance", "host-a:9101")];

/// Every verdict, in the agent's order (render.rs).
const HEALTHS: [Health; 4] = [Health::Unknown, Health::Up, Health::Degraded, Health::Down];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

fn dashboards() -> Vec<(&'static str, Value)> {
    DASHBOARDS
        .iter()
        .map(|name| {
            let path = dist().join("grafana").join(name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let dashboard =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (*name, dashboard)
        })
        .collect()
}

/// Every panel, those inside collapsed rows too.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// One PromQL query of a dashboard, its variables replaced.
struct Query {
    /// The panel's id; `None` for a variable's query.
    panel: Option<u64>,
    /// For people: dashboard, panel and refId.
    label: String,
    /// A recording-rule name for it.
    record: String,
    expr: String,
}

/// Every PromQL query: the panels' targets and the selectors of `label_values` variables.
fn queries(name: &str, dashboard: &Value) -> Vec<Query> {
    let uid = dashboard["uid"].as_str().unwrap_or_default();
    let uid: String = uid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let ref_id = target["refId"].as_str().unwrap_or("?");
            found.push(Query {
                panel: panel["id"].as_u64(),
                label: format!("{name} panel {} «{}» {ref_id}", panel["id"], title(panel)),
                record: format!("grafana:{uid}:panel_{}_{ref_id}", panel["id"]),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let query = variable["query"].as_str().unwrap_or_default();
        if let Some(args) = query.strip_prefix("label_values(") {
            let selector = args.rsplit_once(',').map_or(args, |(selector, _)| selector);
            found.push(Query {
                panel: None,
                label: format!(
                    "{name} variable {}",
                    variable["name"].as_str().unwrap_or("?")
                ),
                record: format!(
                    "grafana:{uid}:variable_{}",
                    variable["name"].as_str().unwrap()
                ),
                expr: selector.trim().to_string(),
            });
        }
    }
    let names = defined_variables(dashboard);
    for query in &mut found {
        query.expr = substitute(&query.expr, &names)
            .unwrap_or_else(|unknown| panic!("{}: ${unknown} is not a variable", query.label));
    }
    found
}

fn defined_variables(dashboard: &Value) -> BTreeSet<String> {
    let list = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten();
    let mut names: BTreeSet<String> = list
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    names.extend(BUILT_INS.iter().map(|(name, _)| name.to_string()));
    names
}

/// `expr` with `$name` and `${name}` replaced by their test values; the name of a variable
/// the dashboard does not define (or that has no test value) as the error.
fn substitute(expr: &str, defined: &BTreeSet<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or_else(|| after.to_string())?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = BUILT_INS
            .iter()
            .chain(&VARIABLES)
            .find(|(known, _)| *known == name && defined.contains(name))
            .ok_or_else(|| name.to_string())?;
        out.push_str(value.1);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Runs promtool in `dir`; panics with what it said unless it succeeds.
fn promtool_in(dir: &Path, args: &[&str]) -> String {
    let promtool = promtool().unwrap_or_else(|e| panic!("{e:#}"));
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{said}",
        out.status
    );
    said
}

/// Writes `file` (YAML, which JSON is) into a fresh directory and runs promtool on it there.
fn promtool_on(file: &Value, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("checked.yml");
    std::fs::write(&path, serde_json::to_string_pretty(file).unwrap()).expect("writing");
    let mut args = args.to_vec();
    args.push("checked.yml");
    promtool_in(dir.path(), &args)
}

fn all_queries() -> Vec<Query> {
    let all: Vec<Query> = dashboards()
        .iter()
        .flat_map(|(name, dashboard)| queries(name, dashboard))
        .collect();
    assert!(all.len() > 20, "only {} queries found", all.len());
    all
}

#[test]
fn every_dashboard_has_a_uid_a_title_and_a_datasource_variable() {
    for (name, dashboard) in dashboards() {
        for key in ["uid", "title"] {
            let value = dashboard[key].as_str().unwrap_or_default();
            assert!(!value.is_empty(), "{name}: no {key}");
        }
        let schema = dashboard["schemaVersion"].as_u64();
        assert!(schema >= Some(36), "{name}: schemaVersion {schema:?}");
        let variables: Vec<&Value> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let datasource = variables
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no `datasource` variable"));
        assert_eq!(datasource["type"], "datasource", "{name}");
        assert_eq!(datasource["query"], "prometheus", "{name}");
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            let what = format!("variable {}", variable["name"]);
            assert_on_datasource_variable(&variable["datasource"], name, &what);
        }
    }
}

#[test]
fn every_panel_has_a_unique_id_a_free_place_and_queries_on_the_datasource_variable() {
    for (name, dashboard) in dashboards() {
        let panels = panels(&dashboard);
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = BTreeSet::new();
        let mut placed: Vec<(u64, [u64; 4])> = Vec::new();
        for panel in panels {
            let id = panel["id"].as_u64();
            let id = id.unwrap_or_else(|| panic!("{name}: a panel without id: {panel}"));
            assert!(ids.insert(id), "{name}: panel id {id} twice");
            let what = format!("panel {id} «{}»", title(panel));
            let grid = ["x", "y", "w", "h"].map(|key| {
                let value = panel["gridPos"][key].as_u64();
                value.unwrap_or_else(|| panic!("{name}: {what}: no gridPos.{key}"))
            });
            let [x, y, w, h] = grid;
            assert!(w > 0 && h > 0 && x + w <= 24, "{name}: {what}: {grid:?}");
            // Grafana moves overlapping panels about on import: the layout would not be ours.
            for (other, [ox, oy, ow, oh]) in &placed {
                let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
                assert!(apart, "{name}: {what} overlaps panel {other}");
            }
            placed.push((id, grid));

            let targets = panel["targets"].as_array().into_iter().flatten();
            if panel["type"] == "row" {
                assert_eq!(targets.count(), 0, "{name}: {what} is a row with queries");
                continue;
            }
            assert_on_datasource_variable(&panel["datasource"], name, &what);
            let mut ref_ids = BTreeSet::new();
            for target in targets {
                let ref_id = target["refId"].as_str().unwrap_or_default();
                assert!(
                    ref_ids.insert(ref_id),
                    "{name}: {what}: refId {ref_id:?} twice"
                );
                if !target["datasource"].is_null() {
                    assert_on_datasource_variable(&target["datasource"], name, &what);
                }
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{name}: {what}: a query without expr"
                );
            }
            assert!(!ref_ids.is_empty(), "{name}: {what} has no query");
        }
    }
}

fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or_default()
}

fn assert_on_datasource_variable(datasource: &Value, dashboard: &str, what: &str) {
    let uid = datasource["uid"].as_str().unwrap_or_default();
    assert!(
        uid == "${datasource}" || uid == "$datasource",
        "{dashboard}: {what} does not use the datasource variable: {datasource}"
    );
}

#[test]
fn every_query_is_promql_promtool_accepts() {
    let rules: Vec<Value> = all_queries()
        .iter()
        .map(|q| json!({ "record": q.record, "expr": q.expr }))
        .collect();
    let file = json!({ "groups": [{ "name": "grafana", "rules": rules }] });
    println!("{}", promtool_on(&file, &["check", "rules"]));
}

/// The metric names in `expr`: its words outside quoted strings (label values like
/// `program="netwatch_rx"` are not metrics).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) if !escaped && c == q => quote = None,
            Some(_) => escaped = !escaped && c == '\\',
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => unquoted.push(c),
        }
        if quote.is_some() {
            unquoted.push(' ');
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            ["netwatch_", "netwatch:", "process_"]
                .iter()
                .any(|p| word.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_queries_name_is_exported_or_recorded() {
    // Every family is written, even without samples.
    let exported = render(&NetworkState::initial(0), &AgentCosts::default());
    let rules = std::fs::read_to_string(dist().join("prometheus/netwatch.rules.yml"))
        .expect("reading netwatch.rules.yml");
    let recorded: BTreeSet<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- record:"))
        .map(str::trim)
        .collect();
    let mut named = BTreeSet::new();
    for query in all_queries() {
        for name in metric_names(&query.expr) {
            let known = if name.contains(':') {
                recorded.contains(name.as_str())
            } else {
                exported.contains(&format!("# TYPE {name} "))
            };
            assert!(
                known,
                "{}: {name} is neither exported by the agent nor recorded by the shipped rules",
                query.label
            );
            named.insert(name);
        }
    }
    assert!(
        named.len() > 20,
        "only {} metrics named: {named:?}",
        named.len()
    );
}

fn verdict(health: Health) -> Verdict {
    Verdict {
        health,
        reasons: vec!["test".into()],
        since_ns: 0,
    }
}

/// A host whose verdict, link `eth0` and endpoints are as given, and which moves traffic.
fn host(health: Health, endpoints: &[(&str, Health)]) -> NetworkState {
    let mut state = NetworkState::initial(0);
    state.host = verdict(health);
    let link = LinkStatus {
        ifindex: 2,
        name: "eth0".into(),
        verdict: verdict(health),
        admin_up: true,
        carrier: health != Health::Down,
        oper: if health == Health::Down { "down" } else { "up" }.into(),
        mtu: 1500,
        mac: None,
        default_route: true,
        xdp: false,
        rx_packets: 1000,
        rx_bytes: 1_500_000,
        tx_packets: 800,
        tx_bytes: 900_000,
        rx_errors: 1,
        tx_errors: 2,
        rx_dropped: 3,
        tx_dropped: 4,
        retransmits: 8,
    };
    state.links.insert(link.name.clone(), link);
    for (name, health) in endpoints {
        let endpoint = EndpointStatus {
            name: name.to_string(),
            address: "198.18.0.2:443".into(),
            verdict: verdict(*health),
            via: Some("eth0".into()),
            retransmits: 5,
        };
        state.endpoints.insert(name.to_string(), endpoint);
    }
    state
}

fn costs() -> AgentCosts {
    AgentCosts {
        programs: vec![ProgramCost {
            name: "netwatch_rx".into(),
            id: 7,
            run_time_ns: 40_000,
            run_count: 1_000,
        }],
        bpf_stats_enabled: true,
        netlink_overruns: 1,
        tcp_events_received: 20,
        fast_link_checks: 2,
        process: ProcessUsage {
            resident_bytes: 12_000_000,
            virtual_bytes: 90_000_000,
            cpu_seconds: 3.0,
            start_time_seconds: 1.7e9,
        },
        ..AgentCosts::default()
    }
}

/// `promtool test rules` input: what the agent renders for `state`, scraped from `instance`
/// once a minute for 15 minutes, counters growing by their rendered value each minute.
fn scraped(instance: &str, state: &NetworkState) -> Vec<Value> {
    let text = render(state, &costs());
    let counters: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut series = vec![up(instance, 1)];
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (sample, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match sample.split_once('{') {
            Some((name, labels)) => (name, format!(",{}", labels.trim_end_matches('}'))),
            None => (sample, String::new()),
        };
        let values = if counters.contains(name) {
            format!("0+{value}x15")
        } else {
            format!("{value}x15")
        };
        let series_name = format!("{name}{{job=\"netwatch\",instance=\"{instance}\"{labels}}}");
        series.push(json!({ "series": series_name, "values": values }));
    }
    series
}

fn up(instance: &str, value: u8) -> Value {
    json!({ "series": format!("up{{job=\"netwatch\",instance=\"{instance}\"}}"), "values": format!("{value}x15") })
}

/// A `promtool test rules` check: at the end of the scene, `expr` gives one unlabelled `value`.
fn check(expr: String, value: f64) -> Value {
    json!({ "expr": expr, "eval_time": "10m", "exp_samples": [{ "labels": "{}", "value": value }] })
}

/// A `promtool test rules` test group: `series` scraped once a minute, then `checks`.
fn scene(series: Vec<Value>, checks: Vec<Value>) -> Value {
    json!({ "interval": "1m", "input_series": series, "promql_expr_test": checks })
}

/// A `promtool test rules` file of `scenes`, with the shipped recording rules loaded (the
/// fleet dashboard reads them).
fn rules_test(scenes: Vec<Value>) -> Value {
    let rules = dist().join("prometheus/netwatch.rules.yml");
    json!({ "rule_files": [rules], "evaluation_interval": "1m", "tests": scenes })
}

#[test]
fn every_query_finds_series_on_a_fleet_in_trouble() {
    use Health::*;
    // host-a is Down; everyone sees `mirror` Down (its fault); only host-b sees `registry`
    // Down (host-b's fault); host-d's agent is not answering.
    let mut series = scraped(
        "host-a:9101",
        &host(Down, &[("mirror", Down), ("registry", Up)]),
    );
    series.extend(scraped(
        "host-b:9101",
        &host(Degraded, &[("mirror", Down), ("registry", Down)]),
    ));
    series.extend(scraped(
        "host-c:9101",
        &host(Up, &[("mirror", Down), ("registry", Up)]),
    ));
    series.push(up("host-d:9101", 0));
    // The comment names the panel in promtool's report.
    let checks = all_queries()
        .into_iter()
        .map(|q| {
            check(
                format!("count(\n# {}\n{}\n) > bool 0", q.label, q.expr),
                1.0,
            )
        })
        .collect();
    println!(
        "{}",
        promtool_on(&rules_test(vec![scene(series, checks)]), &["test", "rules"])
    );
}

/// The number a panel's value mappings give `health`'s text, if it maps values at all.
fn mapped(panel: &Value, health: Health) -> Option<f64> {
    let mappings = panel["fieldConfig"]["defaults"]["mappings"].as_array()?;
    let values: Vec<&serde_json::Map<String, Value>> = mappings
        .iter()
        .filter(|m| m["type"] == "value")
        .filter_map(|m| m["options"].as_object())
        .collect();
    if values.is_empty() {
        return None;
    }
    let key = values
        .iter()
        .flat_map(|options| options.iter())
        .find_map(|(key, shown)| {
            let text = shown["text"].as_str()?;
            text.eq_ignore_ascii_case(health.as_str()).then_some(key)
        });
    let key = key.unwrap_or_else(|| panic!("panel «{}»: no value shown as {health}", title(panel)));
    Some(key.parse().expect("a numeric mapping"))
}

#[test]
fn verdict_panels_map_the_numbers_their_queries_give() {
    let mut scenes = Vec::new();
    for health in HEALTHS {
        let series = scraped("host-a:9101", &host(health, &[("mirror", health)]));
        let mut checks = Vec::new();
        for (name, dashboard) in dashboards() {
            let queries = queries(name, &dashboard);
            for panel in panels(&dashboard) {
                let exprs: Vec<&Query> = queries
                    .iter()
                    .filter(|q| q.panel.is_some() && q.panel == panel["id"].as_u64())
                    .collect();
                let verdicts = exprs.iter().any(|q| {
                    metric_names(&q.expr)
                        .iter()
                        .any(|m| m.ends_with("_verdict"))
                });
                // (Tables that list verdicts by label map no numbers.)
                let Some(value) = verdicts.then(|| mapped(panel, health)).flatten() else {
                    continue;
                };
                for q in exprs {
                    let expr = format!("max(\n# {}: {health}\n{}\n)", q.label, q.expr);
                    checks.push(check(expr, value));
                }
            }
        }
        assert!(
            checks.len() >= 4,
            "only {} verdict queries with mappings",
            checks.len()
        );
        scenes.push(scene(series, checks));
    }
    println!("{}", promtool_on(&rules_test(scenes), &["test", "rules"]));
}
