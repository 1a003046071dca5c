//! The original design's long transfer, smaller: a get from an SFTP mirror and one from an
//! Azure mirror (Azurite), each over one link that goes down in the middle for longer than
//! ssh's keepalives last. The get waits while the agent calls the mirror Down, resumes once it
//! is Up, and completes byte-identical; its summary says how long it waited and how soon it
//! resumed. (`cargo xtask bench --scenario transfer-outage` runs the full 2 GiB, 30 s case
//! beside plain backoff.)

use std::time::Duration;

use netwatch_tests::outage_site::{Backend, OutageSite};
use serde_json::Value;

/// 24 MiB at 100 Mbit/s: about 2 s on the wire, so a cut 0.7 s in lands mid-transfer.
const SIZE: usize = 24 << 20;
const RATE_BITS: u64 = 100_000_000;
const CUT_AFTER: Duration = Duration::from_millis(700);
/// Longer than ssh's keepalives (5 s, twice): the SFTP session is dead when the link returns.
const OUTAGE: Duration = Duration::from_secs(18);

fn get_waits_out_the_outage(backend: Backend) {
    let site = OutageSite::start(backend, Some(RATE_BITS));
    let data = netwatch_tests::random::noise(SIZE, 0x07a6e);
    let input = site.dir().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    site.put(&input, "builds/outage.bin", &site.dir().join("put-cache"));

    let out = site.dir().join("out.bin");
    let got = site.get_through_outage(
        "builds/outage.bin",
        &out,
        &site.dir().join("get-cache"),
        true,
        CUT_AFTER,
        OUTAGE,
    );
    assert!(got.ran.ok(), "the get failed: {}", got.ran.describe());
    assert!(
        got.finished_after_restore.is_some(),
        "the get ended before the link came back: {}",
        got.ran.describe()
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the output differs from the input"
    );
    let summary: Value = got.ran.json();
    let waited = summary["network_wait_ms"].as_u64().unwrap_or(0);
    // Its requests waited for the agent's Up rather than spending attempts (over a dead SSH
    // session, after the stall limit first: silence is only failure after 10 s).
    assert!(waited > 0, "the get waited for the network: {summary}");
    assert!(
        summary["resumed_after_up_ms"].as_f64().is_some(),
        "the summary says when it resumed: {summary}"
    );
    eprintln!(
        "{}: {summary}; done {:?} after the link returned",
        backend.name(),
        got.finished_after_restore
    );
}

#[test]
fn an_sftp_get_waits_out_an_outage_longer_than_the_ssh_session_and_completes() {
    get_waits_out_the_outage(Backend::Sftp);
}

#[test]
fn an_azure_get_waits_out_an_outage_and_completes() {
    get_waits_out_the_outage(Backend::Azure);
}
