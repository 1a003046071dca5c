//! `netwatch put`, `get` and `mirrors` against each kind of mirror, each a real server the
//! test starts on loopback: a directory (`file://`), nginx with WebDAV (`http://`),
//! SeaweedFS's S3 gateway with signed requests (`s3://`), Azurite with Shared Key signed
//! requests (`az://`), fake-gcs-server through the JSON API (`gs://`) and OpenSSH's sshd with
//! a key of the test's own (`sftp://`). Output must
//! be byte-identical, a
//! second put must move only the manifest, and an edit only the chunks it touches.

mod transfer_cli;

use std::{net::Ipv4Addr, path::Path};

use netwatch_tests::servers::{
    azurite::Azurite, fake_gcs::FakeGcs, free_loopback_addr, nginx::Nginx, seaweed::Seaweed,
    sshd::Sshd,
};
use serde_json::Value;
use transfer_cli::{mirror_table, mixed_data, verify_cache, Cli};

/// 4 MiB: about 64 chunks of FastCDC's 64 KiB average.
const SIZE: usize = 4 << 20;
const KEY: &str = "builds/app/1.0+ci.bin";

fn count(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{field}` in {summary}"))
}

/// Put, get, put again, edit, put and get again, all through `mirror`, stored as
/// `compression`.
fn round_trip(cli: &Cli, mirror: &str, compression: &str) {
    let data = mixed_data(SIZE, 0x5eed);
    let input = cli.subdir("in").join("app.bin");
    std::fs::write(&input, &data).unwrap();
    let put = |what: &str| {
        let summary = cli.put_as(&input, KEY, mirror, compression);
        eprintln!("{what}: {summary}");
        summary
    };

    let first = put("first put");
    let chunks = count(&first, "chunks");
    assert!(
        chunks >= 16,
        "4 MiB of mixed data makes a few dozen chunks: {first}"
    );
    assert_eq!(count(&first, "chunks_moved"), chunks, "{first}");
    assert_eq!(first["mirrors"][mirror]["failures"], 0, "{first}");

    let out = cli.subdir("out").join("app.bin");
    let got = cli.get(KEY, &out).json();
    assert_eq!(got["manifest_from"], mirror, "{got}");
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the output differs from the input"
    );
    assert_eq!(count(&got, "artifact_bytes"), SIZE as u64);
    let cached = verify_cache(&cli.cache());
    assert_eq!(
        cached as u64,
        count(&got, "chunks_moved"),
        "every fetched chunk, and only those, is in the cache: {got}"
    );

    let again = put("second put");
    assert_eq!(count(&again, "chunks_moved"), 0, "{again}");
    assert_eq!(
        count(&again, "bytes_moved"),
        count(&again, "manifest_bytes"),
        "an unchanged file moves only its manifest: {again}"
    );
    assert!(count(&again, "bytes_moved") < SIZE as u64 / 100, "{again}");

    // One edit in the middle costs the chunks around it, in both directions.
    let mut edited = data.clone();
    edited[SIZE / 2..SIZE / 2 + 1000].fill(0xee);
    std::fs::write(&input, &edited).unwrap();
    let delta = put("put after an edit");
    assert!(
        (1..=3).contains(&count(&delta, "chunks_moved")),
        "an edit of 1000 bytes moves one to three chunks: {delta}"
    );
    let out2 = cli.subdir("out").join("app-edited.bin");
    let got2 = cli.get(KEY, &out2).json();
    assert!(std::fs::read(&out2).unwrap() == edited);
    assert!(
        (1..=3).contains(&count(&got2, "chunks_moved")),
        "the get after an edit fetches one to three chunks: {got2}"
    );
    verify_cache(&cli.cache());
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[test]
fn a_file_mirror_round_trip_is_byte_identical() {
    let cli = Cli::new("");
    let url = file_url(&cli.dir().join("mirror"));
    cli.write_config(&mirror_table("dir", 1, &url));
    round_trip(&cli, "dir", "auto");
}

#[test]
fn an_nginx_webdav_mirror_round_trip_is_byte_identical() {
    let cli = Cli::new("");
    let nginx = Nginx::start(None, free_loopback_addr(), &cli.dir().join("www"), None);
    // Under a path, so that PUT has collections to create.
    let url = format!("{}ci/cache", nginx.url());
    cli.write_config(&mirror_table("web", 1, &url));
    round_trip(&cli, "web", "gzip");
    assert!(
        nginx.root().join("ci/cache/manifests/builds/app").is_dir(),
        "the objects are under the URL's path"
    );
}

#[test]
fn a_seaweedfs_s3_mirror_round_trip_is_byte_identical_with_signed_requests() {
    let seaweed = Seaweed::start(None, Ipv4Addr::LOCALHOST.into());
    let cli = Cli::new(&mirror_table("s3", 1, &seaweed.url("netwatch/ci")))
        .with_env(seaweed.client_env());
    round_trip(&cli, "s3", "zstd");

    // The same requests with a wrong secret are refused by the server (HEAD answers carry no
    // body, so 403 is all it says): they are signed.
    let mut wrong = seaweed.client_env();
    for (name, value) in &mut wrong {
        if *name == "AWS_SECRET_ACCESS_KEY" {
            value.push_str("-wrong");
        }
    }
    let forged = Cli::new(&mirror_table("s3", 1, &seaweed.url("netwatch/ci"))).with_env(wrong);
    let input = forged.subdir("in").join("small.bin");
    std::fs::write(&input, mixed_data(100_000, 3)).unwrap();
    let refused = forged.run(&[
        "put",
        &input.display().to_string(),
        "builds/forged.bin",
        "--json",
    ]);
    let error = refused.failure();
    assert!(
        error.contains("mirror `s3`") && error.contains("403 Forbidden"),
        "a wrong secret is named as such:\n{}",
        refused.describe()
    );
}

/// A put of a small file through `cli`'s mirror, which must fail: its error.
fn refused_put(cli: &Cli) -> netwatch_tests::cli::Ran {
    let input = cli.subdir("in").join("small.bin");
    std::fs::write(&input, mixed_data(100_000, 3)).unwrap();
    cli.run(&[
        "put",
        &input.display().to_string(),
        "builds/refused.bin",
        "--json",
    ])
}

#[test]
fn an_azurite_mirror_round_trip_is_byte_identical_and_a_wrong_key_or_container_is_named() {
    let azurite = Azurite::start();
    let cli = Cli::new(&mirror_table("az", 1, &azurite.url("netwatch/ci")))
        .with_env(azurite.client_env());
    round_trip(&cli, "az", "zstd");

    // Another account key, well formed: the server refuses the signature.
    let mut wrong = azurite.client_env();
    wrong[0].1 = wrong[0].1.replace("Eby8", "Fby8");
    let forged = Cli::new(&mirror_table("az", 1, &azurite.url("netwatch/ci"))).with_env(wrong);
    let refused = refused_put(&forged);
    let error = refused.failure();
    assert!(
        error.contains("mirror `az`") && error.contains("403"),
        "a wrong key is named as such:\n{}",
        refused.describe()
    );
    // A container that does not exist.
    let missing =
        Cli::new(&mirror_table("az", 1, "az://no-such-container/x")).with_env(azurite.client_env());
    let refused = refused_put(&missing);
    let error = refused.failure();
    assert!(
        error.contains("mirror `az`") && error.contains("ContainerNotFound"),
        "a missing container is named as such:\n{}",
        refused.describe()
    );
    // No credentials at all: said before any request.
    let bare = Cli::new(&mirror_table("az", 1, &azurite.url("x")));
    let refused = refused_put(&bare);
    refused.failure_naming(&["mirror `az`", "AZURE_STORAGE_CONNECTION_STRING"]);
}

#[test]
fn a_gcs_mirror_round_trip_is_byte_identical_and_a_bad_key_or_missing_bucket_is_named() {
    let gcs = FakeGcs::start();
    let cli = Cli::new(&mirror_table("gs", 1, &gcs.url("netwatch/ci"))).with_env(gcs.client_env());
    round_trip(&cli, "gs", "zstd");

    // A bucket that does not exist.
    let missing =
        Cli::new(&mirror_table("gs", 1, "gs://no-such-bucket/x")).with_env(gcs.client_env());
    refused_put(&missing).failure_naming(&["mirror `gs`", "404"]);
    // A service account key that is no key: refused before any request.
    let bad = cli.subdir("creds").join("bad.json");
    std::fs::write(
        &bad,
        r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "private_key_id": "k", "client_email": "netwatch@example.iam.gserviceaccount.com"}"#,
    )
    .unwrap();
    let forged = Cli::new(&mirror_table("gs", 1, &gcs.url("netwatch/ci"))).with_env(vec![(
        "GOOGLE_APPLICATION_CREDENTIALS",
        bad.display().to_string(),
    )]);
    refused_put(&forged).failure_naming(&["mirror `gs`", "RSA key"]);
}

#[test]
fn an_sftp_mirror_round_trip_is_byte_identical_and_a_wrong_key_host_key_or_path_is_named() {
    let sshd = Sshd::start(None, Ipv4Addr::LOCALHOST.into());
    let cli =
        Cli::new(&mirror_table("ssh", 1, &sshd.url("netwatch/ci"))).with_env(sshd.client_env());
    round_trip(&cli, "ssh", "zstd");
    let stored = sshd.data_dir().join("netwatch/ci");
    assert!(
        stored.join("manifests/builds/app").is_dir(),
        "the objects are under the URL's path"
    );
    let partial = walkdir(&stored)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".netwatch-partial"))
        .collect::<Vec<_>>();
    assert!(partial.is_empty(), "temporaries left behind: {partial:?}");
    // A killed put's temporary among the packs goes with `gc` once past the grace period; a
    // running put's (young) stays, and so does every pack a manifest names.
    let files = |dir: &Path| walkdir(dir).into_iter().filter(|p| p.is_file()).count();
    let packs_before = files(&stored.join("packs"));
    let pack_dir = stored.join("packs/ab");
    std::fs::create_dir_all(&pack_dir).unwrap();
    let (stale, fresh) = (
        pack_dir.join("ab01.pack.1a2b.netwatch-partial"),
        pack_dir.join("ab02.pack.3c4d.netwatch-partial"),
    );
    for file in [&stale, &fresh] {
        std::fs::write(file, vec![7u8; 4096]).unwrap();
    }
    // Owned as the server's user owns the mirror, as its own put would leave them.
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&stored).unwrap());
    let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&stored).unwrap());
    for path in [&pack_dir, &stale, &fresh] {
        std::os::unix::fs::chown(path, Some(owner), Some(group)).unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let gc = cli.run(&["gc", "--grace", "1h"]);
    assert!(gc.ok(), "{}", gc.describe());
    assert!(
        !stale.exists(),
        "gc left a stale temporary: {}",
        gc.describe()
    );
    assert!(
        fresh.exists(),
        "gc removed a young temporary: {}",
        gc.describe()
    );
    std::fs::remove_file(&fresh).unwrap();
    assert_eq!(files(&stored.join("packs")), packs_before);
    let after = cli.get(KEY, &cli.subdir("after-gc").join("app.bin"));
    assert!(after.ok(), "{}", after.describe());

    // A key the server does not know: the login is refused, and said so.
    let forged =
        Cli::new(&mirror_table("ssh", 1, &sshd.url("netwatch/ci"))).with_env(sshd.wrong_key_env());
    refused_put(&forged).failure_naming(&[
        "mirror `ssh`",
        "Permission denied (publickey)",
        "refused the login",
    ]);
    // A server whose host key is not in known_hosts: never accepted.
    let stranger = Cli::new(&mirror_table("ssh", 1, &sshd.url("netwatch/ci")))
        .with_env(sshd.unknown_host_env());
    refused_put(&stranger).failure_naming(&[
        "mirror `ssh`",
        "Host key verification failed",
        "never accepts an unknown key",
    ]);
    // A directory the login user may not write.
    let denied_url = format!("sftp://nobody@{}/root/netwatch", sshd.addr());
    let denied = Cli::new(&mirror_table("ssh", 1, &denied_url)).with_env(sshd.client_env());
    refused_put(&denied).failure_naming(&["mirror `ssh`", "PermDenied", "refused access"]);
}

/// Every path below `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[test]
fn mirrors_answers_for_every_backend_and_a_get_uses_them_all() {
    let cli = Cli::new("");
    let nginx = Nginx::start(None, free_loopback_addr(), &cli.dir().join("www"), None);
    let seaweed = Seaweed::start(None, Ipv4Addr::LOCALHOST.into());
    let azurite = Azurite::start();
    let sshd = Sshd::start(None, Ipv4Addr::LOCALHOST.into());
    let gcs = FakeGcs::start();
    let dir_url = file_url(&cli.dir().join("mirror"));
    let config = [
        mirror_table("dir", 1, &dir_url),
        mirror_table("web", 2, &nginx.url()),
        mirror_table("s3", 3, &seaweed.url("mirrors")),
        mirror_table("az", 4, &azurite.url("mirrors")),
        mirror_table("ssh", 5, &sshd.url("mirrors")),
        mirror_table("gs", 6, &gcs.url("mirrors")),
    ]
    .concat();
    cli.write_config(&config);
    let cli = cli
        .with_env(seaweed.client_env())
        .with_env(azurite.client_env())
        .with_env(sshd.client_env())
        .with_env(gcs.client_env());

    let data = mixed_data(1 << 20, 11);
    let input = cli.subdir("in").join("lib.bin");
    std::fs::write(&input, &data).unwrap();
    for mirror in ["dir", "web", "s3", "az", "ssh", "gs"] {
        cli.put(&input, "builds/lib.bin", Some(mirror));
    }

    let listed = cli.run(&["mirrors", "--json"]);
    let rows = listed.json();
    let rows = rows.as_array().expect("mirrors --json is an array");
    assert_eq!(rows.len(), 6, "{}", listed.describe());
    for row in rows {
        let name = row["name"].as_str().unwrap();
        assert_eq!(row["answered"], true, "{name}: {row}");
        assert_eq!(row["error"], Value::Null, "{name}: {row}");
        assert!(row["latency_ms"].as_f64().is_some(), "{name}: {row}");
        // put wrote the bandwidth object to each, so each has a measured bandwidth.
        assert!(
            row["bandwidth_bytes_per_sec"]
                .as_f64()
                .is_some_and(|b| b > 0.0),
            "{name}: {row}"
        );
    }
    let table = cli.run(&["mirrors"]);
    assert!(table.ok(), "{}", table.describe());
    for url in [
        dir_url.as_str(),
        &seaweed.url("mirrors"),
        &azurite.url("mirrors"),
        &sshd.url("mirrors"),
        &gcs.url("mirrors"),
    ] {
        assert!(table.stdout().contains(url), "{}", table.describe());
    }

    let out = cli.subdir("out").join("lib.bin");
    let got = cli.get("builds/lib.bin", &out).json();
    assert!(std::fs::read(&out).unwrap() == data);
    let from = got["manifest_from"].as_str().unwrap();
    assert!(
        ["dir", "web", "s3", "az", "ssh", "gs"].contains(&from),
        "{got}"
    );
}

#[test]
fn seaweedfs_also_starts_inside_a_namespace_of_the_tests_own() {
    let ns = netwatch_tests::netns::NetNs::new();
    ns.exec_ok("ip", &["link", "set", "lo", "up"]);
    // Ready means a signed PUT and DELETE succeeded, run inside the namespace.
    let seaweed = Seaweed::start(Some(&ns), Ipv4Addr::LOCALHOST.into());
    assert_eq!(seaweed.addr().port(), 18_000);
}

#[test]
fn sync_between_seaweedfs_and_azurite_leaves_the_newest_version_of_each_key_on_both() {
    let seaweed = Seaweed::start(None, Ipv4Addr::LOCALHOST.into());
    let azurite = Azurite::start();
    let env = [seaweed.client_env(), azurite.client_env()].concat();
    sync_both_ways(
        &env,
        ("s3", &seaweed.url("sync")),
        ("az", &azurite.url("sync")),
    );
}

#[test]
fn sync_between_seaweedfs_and_sftp_leaves_the_newest_version_of_each_key_on_both() {
    let seaweed = Seaweed::start(None, Ipv4Addr::LOCALHOST.into());
    let sshd = Sshd::start(None, Ipv4Addr::LOCALHOST.into());
    let env = [seaweed.client_env(), sshd.client_env()].concat();
    sync_both_ways(
        &env,
        ("s3", &seaweed.url("sync")),
        ("ssh", &sshd.url("sync")),
    );
}

#[test]
fn sync_between_seaweedfs_and_gcs_leaves_the_newest_version_of_each_key_on_both() {
    let seaweed = Seaweed::start(None, Ipv4Addr::LOCALHOST.into());
    let gcs = FakeGcs::start();
    let env = [seaweed.client_env(), gcs.client_env()].concat();
    sync_both_ways(&env, ("s3", &seaweed.url("sync")), ("gs", &gcs.url("sync")));
}

/// An old version of a key on `first`, a newer one and a key of its own on `second`; after
/// `netwatch sync`, each alone serves the newest of both keys.
fn sync_both_ways(env: &[(&'static str, String)], first: (&str, &str), second: (&str, &str)) {
    let ((a, a_url), (b, b_url)) = (first, second);
    let env = || env.to_vec();
    let both =
        Cli::new(&[mirror_table(a, 1, a_url), mirror_table(b, 2, b_url)].concat()).with_env(env());
    let write = |name: &str, data: &[u8]| {
        let path = both.subdir("in").join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let (old, new, only_b) = (
        mixed_data(300_000, 21),
        mixed_data(300_000, 22),
        mixed_data(200_000, 23),
    );
    both.put(&write("old", &old), "builds/shared.bin", Some(a));
    // A later version of the same key on the other mirror, and a key only it has. SFTP
    // keeps whole seconds.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    both.put(&write("new", &new), "builds/shared.bin", Some(b));
    both.put(&write("only", &only_b), "builds/only-b.bin", Some(b));

    let synced = both.run(&["sync", "--json"]);
    assert!(synced.ok(), "{}", synced.describe());

    // Each mirror alone now serves the newest version of both keys.
    for (name, url) in [(a, a_url), (b, b_url)] {
        let one = Cli::new(&mirror_table(name, 1, url)).with_env(env());
        for (key, expected) in [("builds/shared.bin", &new), ("builds/only-b.bin", &only_b)] {
            let out = one.subdir("out").join(key.replace('/', "_"));
            let got = one.get(key, &out).json();
            assert_eq!(got["manifest_from"], name, "{got}");
            assert!(
                std::fs::read(&out).unwrap() == *expected,
                "{name} serves another version of {key} after the sync: {}",
                synced.describe()
            );
        }
    }
}
