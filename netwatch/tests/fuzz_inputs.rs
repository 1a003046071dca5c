//! Every fuzz seed and every input that once crashed a fuzz target (fuzz/corpus/TARGET and
//! fuzz/regressions/TARGET), through the same entry points as the targets: none may panic.
//! `cargo xtask fuzz` explores further; this keeps what it found fixed, in every test run.

use std::{
    fs,
    path::{Path, PathBuf},
};

use netwatch::config::Config;
use netwatch_client::protocol::{Reply, Request};
use netwatch_transfer::{ArtifactKey, Manifest};

/// The files under fuzz/corpus/TARGET and fuzz/regressions/TARGET.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut found = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for entry in dir.flatten() {
            let path = entry.path();
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path, data));
        }
    }
    found
}

#[test]
fn protocol_inputs_parse_or_are_refused() {
    let inputs = inputs("protocol");
    assert!(inputs.len() >= 5, "the protocol seeds are missing");
    let mut requests = 0;
    for (_, data) in &inputs {
        requests += usize::from(Request::parse(data).is_ok());
        let _ = serde_json::from_slice::<Reply>(data);
    }
    assert!(requests >= 3, "the request seeds no longer parse");
}

#[test]
fn config_inputs_parse_or_are_refused() {
    let inputs = inputs("config");
    for (path, data) in &inputs {
        if let Ok(text) = std::str::from_utf8(data) {
            let parsed = Config::parse(text, Path::new("netwatch.toml"));
            if path.ends_with("example.toml") {
                parsed.unwrap_or_else(|e| panic!("the documented example is refused: {e}"));
            }
        }
    }
}

#[test]
fn manifest_inputs_parse_or_are_refused_and_what_parses_round_trips() {
    let key: ArtifactKey = "builds/app.tar".parse().unwrap();
    let mut parsed = 0;
    for (path, data) in inputs("manifest") {
        if let Ok(manifest) = Manifest::from_json(&data, &key) {
            let again = Manifest::from_json(&manifest.to_json(), &key)
                .unwrap_or_else(|e| panic!("{}: written again, refused: {e}", path.display()));
            assert_eq!(again, manifest, "{}", path.display());
            parsed += 1;
        }
    }
    assert!(parsed >= 1, "the manifest seed no longer parses");
}

#[test]
fn netlink_inputs_decode_or_are_ignored() {
    let inputs = inputs("netlink");
    let events = inputs
        .iter()
        .filter(|(_, data)| netwatch_agent::netlink::decode_bytes(data).is_some())
        .count();
    // The seeds are real kernel messages (links, addresses, routes, neighbours).
    assert!(
        events >= 8,
        "only {events} of {} seeds decoded",
        inputs.len()
    );
}
