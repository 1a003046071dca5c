//! The systemd units in dist/systemd, as systemd's own tool judges them: `systemd-analyze
//! verify` passes (with ExecStart pointed at the binary under test, which must exist), and
//! `systemd-analyze security --offline=true` scores each 3.0 or better.

use std::path::{Path, PathBuf};
use std::process::Command;

use netwatch_tests::agent::binary;

const UNITS: [&str; 2] = ["netwatch.service", "netwatch-wait-online.service"];
const WORST_EXPOSURE: f64 = 3.0;

/// The units, copied into a directory of their own with ExecStart on the binary under test.
fn units_under_test() -> (tempfile::TempDir, Vec<PathBuf>) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bin = binary();
    let paths = UNITS
        .iter()
        .map(|unit| {
            let text = std::fs::read_to_string(source.join(unit))
                .unwrap_or_else(|e| panic!("reading dist/systemd/{unit}: {e}"));
            assert!(
                text.contains("ExecStart=/usr/bin/netwatch "),
                "{unit} does not start /usr/bin/netwatch, where the package installs it"
            );
            let text = text.replace("/usr/bin/netwatch ", &format!("{} ", bin.display()));
            let path = dir.path().join(unit);
            std::fs::write(&path, text).expect("writing a unit");
            path
        })
        .collect();
    (dir, paths)
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running systemd-analyze (Debian's systemd package; `cargo xtask setup`): {e}")
        })
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let (_dir, paths) = units_under_test();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(|p| p.to_str().expect("a UTF-8 path")));
    let out = systemd_analyze(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn each_unit_scores_3_or_better_in_systemd_analyze_security() {
    let (_dir, paths) = units_under_test();
    for (unit, path) in UNITS.iter().zip(&paths) {
        let out = systemd_analyze(&[
            "security",
            "--offline=true",
            "--no-pager",
            path.to_str().expect("a UTF-8 path"),
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|line| {
                let (_, tail) = line.split_once(&format!("exposure level for {unit}: "))?;
                tail.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no overall exposure level for {unit} in:\n{text}"));
        println!("{unit}: exposure {score:.1}");
        assert!(
            score <= WORST_EXPOSURE,
            "{unit} scores {score:.1}, worse than {WORST_EXPOSURE}:\n{text}"
        );
    }
}
