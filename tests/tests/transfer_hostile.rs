//! Bad input and hostile servers, through the `netwatch` CLI on loopback: a mirror that sends
//! wrong bytes, short bodies, ignores Range or never answers; a manifest that names chunks
//! outside the store; an unknown key, a bad URL, missing credentials, an unreachable mirror.
//! Each must end in a clear error or be routed around; corrupted data never reaches the cache
//! or the output, and nothing is written outside the output and the cache.

mod transfer_cli;

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use netwatch_tests::servers::hostile::{Fault, Hostile};
use netwatch_transfer::{bandwidth_object, BANDWIDTH_OBJECT};
use serde_json::Value;
use transfer_cli::{
    changed, mirror_table, mixed_data, stored_manifest, temporary_outputs, tree, verify_cache, Cli,
};

const KEY: &str = "builds/app.bin";
const SIZE: usize = 2 << 20;

/// A hostile mirror `bad` (priority 1) and a directory `good` (priority 2), both holding
/// `KEY`; `good` without its bandwidth object, so that `bad` ranks first on its bandwidth.
struct Pair {
    cli: Cli,
    bad: Hostile,
    good: PathBuf,
    data: Vec<u8>,
}

impl Pair {
    fn new() -> Self {
        // The same encoding on both: a mirror serves a chunk only in the encoding the
        // manifest names (see `a_secondary_that_stored_another_encoding_still_serves`).
        Self::stored_as("zstd", "zstd")
    }

    /// `KEY` put on `bad` stored as `bad_compression`, on `good` as `good_compression`.
    fn stored_as(bad_compression: &str, good_compression: &str) -> Self {
        let cli = Cli::new("");
        let bad = Hostile::start(&cli.dir().join("bad"), Fault::None);
        let good = cli.dir().join("good");
        cli.write_config(
            &[
                mirror_table("bad", 1, &bad.url()),
                mirror_table("good", 2, &format!("file://{}", good.display())),
            ]
            .concat(),
        );
        let data = mixed_data(SIZE, 0xbad);
        let input = cli.subdir("in").join("app.bin");
        std::fs::write(&input, &data).unwrap();
        cli.put_as(&input, KEY, "bad", bad_compression);
        cli.put_as(&input, KEY, "good", good_compression);
        assert!(
            bad.root().join(BANDWIDTH_OBJECT).is_file(),
            "put wrote the bandwidth object"
        );
        std::fs::remove_file(good.join(BANDWIDTH_OBJECT)).unwrap();
        // The puts' figures would rank the mirrors too: start the get from a clean cache.
        std::fs::remove_dir_all(cli.cache()).unwrap();
        Pair {
            cli,
            bad,
            good,
            data,
        }
    }
}

/// Everything in the work directory but the cache.
fn outside_cache(cli: &Cli) -> BTreeMap<PathBuf, u64> {
    let mut files = tree(cli.dir());
    files.retain(|path, _| !path.starts_with("cache"));
    files
}

/// A failed get left no output, no temporary file beside it and nothing new outside the
/// cache.
fn nothing_was_written(cli: &Cli, out: &Path, before: &BTreeMap<PathBuf, u64>) {
    assert!(!out.exists(), "a failed get left {}", out.display());
    let temporary = temporary_outputs(out);
    assert!(temporary.is_empty(), "{temporary:?}");
    let changed = changed(before, &outside_cache(cli));
    assert!(changed.is_empty(), "a failed get changed {changed:?}");
}

/// `get` with `fault` on the primary succeeds from the secondary, byte-identical, with the
/// primary's failures in the summary and nothing damaged in the cache.
fn the_secondary_serves_around(fault: Fault) {
    let pair = Pair::new();
    pair.bad.set_fault(fault);
    let out = pair.cli.subdir("out").join("app.bin");
    let before = outside_cache(&pair.cli);
    let summary = pair.cli.get(KEY, &out).json();
    eprintln!("{fault:?}: {summary}");

    assert!(std::fs::read(&out).unwrap() == pair.data, "output differs");
    assert!(
        pair.bad.served().iter().any(|s| s.faulted),
        "the fault was never applied: the test proves nothing"
    );
    let bad = &summary["mirrors"]["bad"];
    let good = &summary["mirrors"]["good"];
    assert!(bad["failures"].as_u64().unwrap() > 0, "{summary}");
    assert!(good["chunks"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        summary["chunks_moved"], summary["chunks"],
        "every chunk arrived from one mirror or the other: {summary}"
    );
    let cached = verify_cache(&pair.cli.cache());
    assert!(cached > 0);
    assert_eq!(
        changed(&before, &outside_cache(&pair.cli)),
        [PathBuf::from("out/app.bin")],
        "a get writes its output and its cache, nothing else"
    );
    assert!(temporary_outputs(&out).is_empty());
    assert!(pair.good.join("packs").is_dir());
}

#[test]
fn wrong_bytes_from_the_primary_are_refused_and_the_secondary_serves() {
    the_secondary_serves_around(Fault::WrongBytes);
}

#[test]
fn answers_that_stop_mid_body_are_left_after_the_stall_limit_for_the_secondary() {
    let pair = Pair::new();
    pair.bad.set_fault(Fault::StallMidBody);
    let out = pair.cli.subdir("out").join("app.bin");
    let started = Instant::now();
    let ran = pair.cli.get_with(KEY, &out, &["--stall-timeout", "2s"]);
    let took = started.elapsed();
    let summary = ran.json();
    eprintln!("stalled mid-body, --stall-timeout 2s: {took:?}, {summary}");
    assert!(std::fs::read(&out).unwrap() == pair.data, "output differs");
    assert!(
        pair.bad.served().iter().any(|s| s.faulted),
        "the fault was never applied: the test proves nothing"
    );
    let bad = &summary["mirrors"]["bad"];
    assert!(bad["failures"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        summary["mirrors"]["good"]["chunks"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let log = ran.stderr();
    assert!(
        log.contains("mirror `bad` sent nothing for 2 s"),
        "the get did not say why it left the mirror: {log}"
    );
    assert!(
        !log.contains("retrying after a delay"),
        "a stall spent a retry attempt: {log}"
    );
    verify_cache(&pair.cli.cache());
}

#[test]
fn short_bodies_from_the_primary_are_refused_and_the_secondary_serves() {
    the_secondary_serves_around(Fault::ShortBody);
}

/// With the hostile mirror alone, `get` fails clearly and writes no output, no temporary
/// file, and no chunk that fails its check.
fn the_hostile_mirror_alone_fails(fault: Fault, expected: &[&str]) {
    let pair = Pair::new();
    pair.cli
        .write_config(&mirror_table("bad", 1, &pair.bad.url()));
    pair.bad.set_fault(fault);
    let out = pair.cli.subdir("out").join("app.bin");
    let before = outside_cache(&pair.cli);
    let error = pair.cli.get(KEY, &out).failure_naming(expected);
    eprintln!(
        "{fault:?} alone: {}",
        error.lines().last().unwrap_or_default()
    );
    nothing_was_written(&pair.cli, &out, &before);
    verify_cache(&pair.cli.cache());
}

#[test]
fn wrong_bytes_alone_fail_the_get_and_nothing_is_written() {
    the_hostile_mirror_alone_fails(
        Fault::WrongBytes,
        &["chunks ", KEY, "mirror `bad` sent bad data"],
    );
}

#[test]
fn short_bodies_alone_fail_the_get_and_nothing_is_written() {
    the_hostile_mirror_alone_fails(Fault::ShortBody, &["span ", KEY, "mirror `bad`"]);
}

/// A `file://` mirror holding `KEY`, whose manifest `edit` then changes.
fn refused_manifest(edit: impl FnOnce(&mut Value), names: &str) {
    let cli = Cli::new("");
    let mirror = cli.dir().join("mirror");
    cli.write_config(&mirror_table(
        "m",
        1,
        &format!("file://{}", mirror.display()),
    ));
    let input = cli.subdir("in").join("app.bin");
    std::fs::write(&input, mixed_data(SIZE, 5)).unwrap();
    cli.put(&input, KEY, None);
    let (path, mut manifest) = stored_manifest(&mirror, KEY);
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
    std::fs::remove_dir_all(cli.cache()).unwrap();

    let out = cli.subdir("out").join("app.bin");
    let before = outside_cache(&cli);
    let ran = cli.get(KEY, &out);
    let error = ran.failure();
    assert!(
        error.contains("sent a bad manifest") && error.contains(names),
        "the refusal names the chunk (`{names}`):\n{}",
        ran.describe()
    );
    nothing_was_written(&cli, &out, &before);
    let cache = tree(&cli.cache());
    assert!(
        cache.keys().all(|p| p.starts_with("mirrors.json")),
        "only the scoreboard may be in the cache: {cache:?}"
    );
}

fn chunk(manifest: &mut Value, index: usize) -> &mut Value {
    &mut manifest["chunks"][index]
}

#[test]
fn a_manifest_naming_a_chunk_outside_the_store_is_refused() {
    refused_manifest(
        |m| chunk(m, 1)["id"] = "../../../../escaped".into(),
        "chunk 1",
    );
}

#[test]
fn a_manifest_with_a_chunk_id_that_is_not_hex_is_refused() {
    let not_hex = "g".repeat(64);
    refused_manifest(|m| chunk(m, 2)["id"] = not_hex.into(), "chunk 2");
}

#[test]
fn a_manifest_with_overlapping_chunks_is_refused() {
    refused_manifest(
        |m| {
            let earlier = chunk(m, 2)["offset"].as_u64().unwrap();
            chunk(m, 3)["offset"] = (earlier + 1).into();
        },
        "chunk 3",
    );
}

#[test]
fn an_unknown_key_is_reported_as_on_no_mirror() {
    let pair = Pair::new();
    let out = pair.cli.subdir("out").join("x.bin");
    pair.cli.get("builds/no-such.bin", &out).failure_naming(&[
        "the manifest of builds/no-such.bin",
        "no mirror could serve it",
        "mirror `bad`",
        "mirror `good`",
        "not found",
    ]);
    assert!(!out.exists());
}

#[test]
fn a_bad_mirror_url_names_the_file_line_and_the_forms_expected() {
    let cli =
        Cli::new("[[mirror]]\nname = \"m\"\npriority = 1\nurl = \"ftp://mirror.example/x\"\n");
    let out = cli.dir().join("out.bin");
    let config = cli.config().display().to_string();
    cli.get(KEY, &out).failure_naming(&[
        &config,
        "line 4",
        "ftp://mirror.example/x",
        "s3://BUCKET/PREFIX",
        "file:///ABSOLUTE/PATH",
    ]);
    assert!(!out.exists());
}

#[test]
fn an_s3_mirror_without_credentials_is_refused_or_left_out() {
    let cli = Cli::new("");
    let good = cli.dir().join("good");
    cli.write_config(
        &[
            mirror_table("s3", 1, "s3://build-cache/netwatch"),
            mirror_table("good", 2, &format!("file://{}", good.display())),
        ]
        .concat(),
    );
    let data = mixed_data(300_000, 9);
    let input = cli.subdir("in").join("app.bin");
    std::fs::write(&input, &data).unwrap();
    let input = input.display().to_string();

    cli.run(&["put", &input, KEY, "--mirror", "s3"])
        .failure_naming(&["mirror `s3`", "no AWS credentials", "AWS_ACCESS_KEY_ID"]);

    // A get leaves it out with a warning and uses the others.
    cli.run(&["put", &input, KEY, "--mirror", "good", "--json"])
        .json();
    let out = cli.subdir("out").join("app.bin");
    let ran = cli.get(KEY, &out);
    assert!(ran.ok(), "{}", ran.describe());
    assert!(
        ran.stderr().contains("leaving out a mirror") && ran.stderr().contains("mirror `s3`"),
        "{}",
        ran.describe()
    );
    assert!(std::fs::read(&out).unwrap() == data);
}

/// `mirrors --json` exits 1 and lists mirror `name` as not answering, for a reason that
/// says `why`.
fn listed_as_unanswered(cli: &Cli, name: &str, why: &str) {
    let listed = cli.run(&["mirrors", "--json"]);
    assert_eq!(
        listed.output.status.code(),
        Some(1),
        "{}",
        listed.describe()
    );
    let rows: Value = serde_json::from_str(listed.stdout().trim()).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row for `{name}`: {rows}"));
    assert_eq!(row["answered"], false, "{row}");
    assert!(
        row["error"].as_str().is_some_and(|e| e.contains(why)),
        "{row}"
    );
}

/// A loopback URL on which nothing listens (a port bound a moment ago, then closed).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/", listener.local_addr().unwrap())
}

#[test]
fn an_unreachable_mirror_is_reported_and_routed_around() {
    let cli = Cli::new("");
    let dead = closed_port_url();
    let good = cli.dir().join("good");
    let good_url = format!("file://{}", good.display());
    let data = mixed_data(SIZE, 13);
    let input = cli.subdir("in").join("app.bin");
    std::fs::write(&input, &data).unwrap();
    cli.write_config(&mirror_table("good", 1, &good_url));
    cli.put(&input, KEY, None);

    // Alone, it fails the get and says why.
    cli.write_config(&mirror_table("dead", 1, &dead));
    let out = cli.subdir("out").join("app.bin");
    cli.get(KEY, &out)
        .failure_naming(&["mirror `dead`", "Connection refused"]);
    assert!(!out.exists());

    // As the primary with a good secondary, the get succeeds from the secondary.
    cli.write_config(
        &[
            mirror_table("dead", 1, &dead),
            mirror_table("good", 2, &good_url),
        ]
        .concat(),
    );
    let summary = cli.get(KEY, &out).json();
    assert!(std::fs::read(&out).unwrap() == data);
    assert_eq!(summary["manifest_from"], "good", "{summary}");

    // `mirrors` says it did not answer, and exits 1.
    listed_as_unanswered(&cli, "dead", "Connection refused");
}

#[test]
fn a_mirror_that_never_answers_is_measured_as_such_and_passed_over() {
    let pair = Pair::new();
    pair.bad.set_fault(Fault::Stall);
    let out = pair.cli.subdir("out").join("app.bin");
    let summary = pair.cli.get(KEY, &out).json();
    assert!(std::fs::read(&out).unwrap() == pair.data);
    assert_eq!(summary["manifest_from"], "good", "{summary}");

    listed_as_unanswered(&pair.cli, "bad", "no answer");
}

/// Waits for the server to record a response matching `which`, after the first `skip`.
fn wait_for_response(
    server: &Hostile,
    skip: usize,
    which: impl Fn(&netwatch_tests::servers::hostile::Served) -> bool,
) -> netwatch_tests::servers::hostile::Served {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(found) = server.served().into_iter().skip(skip).find(|s| which(s)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no such response; the server gave: {:?}",
            server.served()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_mirror_that_ignores_range_gets_no_bandwidth_and_is_not_read_past_the_range() {
    let cli = Cli::new("");
    let server = Hostile::start(&cli.dir().join("mirror"), Fault::IgnoreRange);
    cli.write_config(&mirror_table("norange", 1, &server.url()));
    let data = mixed_data(SIZE, 21);
    let input = cli.subdir("in").join("app.bin");
    std::fs::write(&input, &data).unwrap();
    cli.put(&input, KEY, None);
    // A bandwidth object far larger than the range: the whole of it is what a client that
    // reads an ignored Range to the end would take.
    let mut big = bandwidth_object().to_vec();
    big.resize(64 << 20, 0x42);
    std::fs::write(server.root().join(BANDWIDTH_OBJECT), &big).unwrap();
    std::fs::remove_dir_all(cli.cache()).unwrap();

    let mark = server.served().len();
    let listed = cli.run(&["mirrors", "--json"]);
    let rows = listed.json();
    let row = &rows[0];
    assert_eq!(row["answered"], true, "{row}");
    assert_eq!(row["bandwidth_bytes_per_sec"], Value::Null, "{row}");
    assert!(
        row["error"]
            .as_str()
            .is_some_and(|e| e.contains("ignores Range")),
        "{row}"
    );
    let ranged = wait_for_response(&server, mark, |s| {
        s.path == BANDWIDTH_OBJECT && s.range.is_some() && s.method == "GET"
    });
    eprintln!("the ranged GET of the bandwidth object: {ranged:?}");
    assert_eq!(ranged.status, 200);
    assert_eq!(ranged.announced, big.len() as u64);
    assert!(
        ranged.sent < big.len() as u64 / 2,
        "the client took {} of the {} bytes sent for a 1 MiB range",
        ranged.sent,
        big.len()
    );

    // Packs are then read whole, so a get through it still works.
    let out = cli.subdir("out").join("app.bin");
    cli.get(KEY, &out).json();
    assert!(std::fs::read(&out).unwrap() == data);
    verify_cache(&cli.cache());
}

#[test]
fn a_secondary_that_stored_another_encoding_still_serves() {
    let pair = Pair::stored_as("none", "zstd");
    pair.bad.set_fault(Fault::WrongBytes);
    let out = pair.cli.subdir("out").join("app.bin");
    let ran = pair.cli.get(KEY, &out);
    assert!(ran.ok(), "{}", ran.describe());
    assert!(std::fs::read(&out).unwrap() == pair.data);
}
