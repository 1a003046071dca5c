//! The node-problem-detector plugin config in dist/kubernetes: NPD's custom plugin format,
//! and each rule runs a `netwatch` command line this binary accepts.

use std::path::Path;
use std::process::Command;

use netwatch_tests::agent::binary;
use serde_json::Value;

#[test]
fn the_npd_plugin_runs_a_netwatch_check_this_binary_accepts() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/kubernetes/node-problem-detector-netwatch.json");
    let text = std::fs::read_to_string(&path).expect("reading the NPD plugin config");
    let config: Value = serde_json::from_str(&text).expect("the NPD plugin config is JSON");
    assert_eq!(config["plugin"], "custom");
    let conditions: Vec<&str> = config["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    let rules = config["rules"].as_array().expect("rules");
    assert!(!rules.is_empty(), "no rule");
    for rule in rules {
        assert!(
            conditions.contains(&rule["condition"].as_str().unwrap_or_default()),
            "a rule sets a condition the plugin does not declare: {rule}"
        );
        assert_eq!(rule["path"], "/usr/bin/netwatch", "{rule}");
        let args: Vec<&str> = rule["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string args"))
            .collect();
        assert_eq!(args.first(), Some(&"check"), "{rule}");
        let out = Command::new(binary())
            .args(&args)
            .arg("--help")
            .output()
            .expect("running netwatch");
        assert!(
            out.status.success(),
            "netwatch {args:?} is refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
