//! The files in dist/kubernetes: the DaemonSet validates against the Kubernetes API's own
//! schemas (kubernetes-validate, offline, strict), and the node-problem-detector plugin
//! config is NPD's custom plugin format, each rule a `netwatch` command line this binary
//! accepts.

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

/// kubernetes-validate's directory: `NETWATCH_KUBERNETES_VALIDATE`, else where `cargo xtask
/// test` installs it.
fn kubernetes_validate(files: &[&Path]) -> std::process::Output {
    let dir = std::env::var_os("NETWATCH_KUBERNETES_VALIDATE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tools/kubernetes-validate")
        });
    Command::new(dir.join("bin/kubernetes-validate"))
        .env("PYTHONPATH", &dir)
        .arg("--strict")
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running kubernetes-validate from {} (`cargo xtask test` installs it): {e}",
                dir.display()
            )
        })
}

#[test]
fn the_daemonset_validates_against_the_kubernetes_schemas() {
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/kubernetes/netwatch-daemonset.yaml");
    let out = kubernetes_validate(&[&manifest]);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate --strict: {said}");
    for resource in ["namespace/netwatch", "daemonset/netwatch-agent"] {
        assert!(
            said.contains(&format!("passed for resource {resource}")),
            "{resource} not validated: {said}"
        );
    }

    // The validator reads what it is given: a misspelt field fails it.
    let text = std::fs::read_to_string(&manifest).expect("reading the manifest");
    assert!(
        text.contains("hostNetwork: true"),
        "the DaemonSet uses the host's network"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replace("hostNetwork: true", "hostNetwrk: true"),
    )
    .expect("writing the broken copy");
    let out = kubernetes_validate(&[&broken]);
    assert!(
        !out.status.success(),
        "a misspelt field passed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
