//! sync end to end, on `file://` mirrors in a temporary directory.

use std::{
    fs,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    tests::{key, noise, options},
    *,
};

struct Mirrors {
    dir: tempfile::TempDir,
}

impl Mirrors {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open(&self, name: &str) -> MirrorStore {
        let url: MirrorUrl = format!("file://{}", self.path(name).display())
            .parse()
            .unwrap();
        MirrorStore::open(name, &url, Access::Write).unwrap()
    }

    fn all(&self, names: &[&str]) -> Vec<MirrorStore> {
        names.iter().map(|name| self.open(name)).collect()
    }

    /// Puts `data` as `key` on `mirror`, its manifest dated `created_unix_ms`.
    async fn put(&self, mirror: &str, key: &ArtifactKey, data: &[u8], created_unix_ms: u64) {
        self.put_with(mirror, key, data, created_unix_ms, Compression::Auto)
            .await;
    }

    async fn put_with(
        &self,
        mirror: &str,
        key: &ArtifactKey,
        data: &[u8],
        created_unix_ms: u64,
        compression: Compression,
    ) {
        let file = self.path(&format!("input-{}", fastrand::u64(..)));
        fs::write(&file, data).unwrap();
        let options = TransferOptions {
            compression,
            ..options()
        };
        put(&file, key, &self.open(mirror), &options).await.unwrap();
        let mut manifest = self.manifest(mirror, key).unwrap();
        manifest.created_unix_ms = created_unix_ms;
        fs::write(self.manifest_file(mirror, key), manifest.to_json()).unwrap();
    }

    fn manifest_file(&self, mirror: &str, key: &ArtifactKey) -> PathBuf {
        self.path(mirror).join(format!("manifests/{key}.json"))
    }

    fn manifest(&self, mirror: &str, key: &ArtifactKey) -> Option<Manifest> {
        let json = fs::read(self.manifest_file(mirror, key)).ok()?;
        Some(Manifest::from_json(&json, key).unwrap())
    }

    /// The pack files of a mirror.
    fn pack_files(&self, mirror: &str) -> Vec<PathBuf> {
        let Ok(dirs) = fs::read_dir(self.path(mirror).join("packs")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = dirs
            .flat_map(|dir| fs::read_dir(dir.unwrap().path()).unwrap())
            .map(|file| file.unwrap().path())
            .collect();
        files.sort();
        files
    }

    /// `key` fetched from `mirror` alone, into a fresh cache.
    async fn get(&self, mirror: &str, key: &ArtifactKey) -> Vec<u8> {
        let out = self.path(&format!("out-{}", fastrand::u64(..)));
        let cache = ChunkCache::new(self.path(&format!("cache-{}", fastrand::u64(..))));
        let mirrors = [self.open(mirror)];
        get(Fetch::new(key, &out, &mirrors, &cache), &options())
            .await
            .unwrap();
        fs::read(out).unwrap()
    }
}

fn scope(from: &[&str], to: &[&str]) -> SyncScope {
    SyncScope {
        from: from.iter().map(|s| s.to_string()).collect(),
        to: to.iter().map(|s| s.to_string()).collect(),
        ..SyncScope::default()
    }
}

#[tokio::test]
async fn a_missing_key_is_copied_and_a_second_run_copies_nothing() {
    let mirrors = Mirrors::new();
    let (app, lib) = (key("builds/app"), key("builds/lib"));
    let (app_data, lib_data) = (noise(700_000, 1), noise(300_000, 2));
    mirrors.put("a", &app, &app_data, 1_000).await;
    mirrors.put("b", &lib, &lib_data, 1_000).await;
    let all = mirrors.all(&["a", "b"]);

    let first = sync(&all, &SyncScope::default(), &options()).await.unwrap();
    assert!(first.succeeded(), "{first}");
    assert_eq!(first.keys_examined, 2);
    let chunks = |m: &str, k: &ArtifactKey| mirrors.manifest(m, k).unwrap().chunks.len();
    assert_eq!(first.destinations["b"].keys_copied, 1);
    assert_eq!(first.destinations["b"].chunks_copied, chunks("a", &app));
    assert_eq!(first.destinations["a"].chunks_copied, chunks("b", &lib));
    assert_eq!(mirrors.get("b", &app).await, app_data);
    assert_eq!(mirrors.get("a", &lib).await, lib_data);
    assert_eq!(mirrors.manifest("b", &app), mirrors.manifest("a", &app));

    let second = sync(&all, &SyncScope::default(), &options()).await.unwrap();
    assert!(second.succeeded(), "{second}");
    for (name, tally) in &second.destinations {
        assert_eq!(
            (tally.keys_copied, tally.chunks_copied, tally.bytes_copied),
            (0, 0, 0),
            "{name}: {second}"
        );
        assert_eq!(tally.keys_up_to_date, 2, "{name}: {second}");
    }
}

#[tokio::test]
async fn the_newer_manifest_wins_in_either_direction() {
    let mirrors = Mirrors::new();
    let k = key("app.tar");
    let (old, new) = (noise(400_000, 3), noise(400_000, 4));
    mirrors.put("a", &k, &new, 2_000).await;
    mirrors.put("b", &k, &old, 1_000).await;
    let all = mirrors.all(&["a", "b"]);

    // From b (older) to a (newer): a keeps its version.
    let kept = sync(&all, &scope(&["b"], &["a"]), &options())
        .await
        .unwrap();
    assert!(kept.succeeded(), "{kept}");
    assert_eq!(kept.destinations["a"].keys_newer, 1, "{kept}");
    assert_eq!(kept.destinations["a"].keys_copied, 0);
    assert_eq!(mirrors.get("a", &k).await, new);
    assert!(!kept.destinations.contains_key("b"));

    // Both ways: the newer replaces the older on b.
    let both = sync(&all, &SyncScope::default(), &options()).await.unwrap();
    assert!(both.succeeded(), "{both}");
    assert_eq!(both.destinations["b"].keys_copied, 1, "{both}");
    assert_eq!(both.destinations["a"].keys_copied, 0);
    assert_eq!(mirrors.get("b", &k).await, new);
    assert_eq!(mirrors.manifest("b", &k).unwrap().created_unix_ms, 2_000);
}

#[tokio::test]
async fn a_corrupt_pack_is_taken_from_another_source_and_never_written() {
    let mirrors = Mirrors::new();
    let k = key("corrupt.bin");
    let data = noise(1 << 20, 5);
    // b got the artifact from a, so it holds the same pack.
    mirrors.put("a", &k, &data, 2_000).await;
    let first = sync(
        &mirrors.all(&["a", "b"]),
        &scope(&["a"], &["b"]),
        &options(),
    )
    .await
    .unwrap();
    assert!(first.succeeded(), "{first}");
    let victim = mirrors.pack_files("a")[0].clone();
    let mut bytes = fs::read(&victim).unwrap();
    bytes[50] ^= 0xff;
    fs::write(&victim, &bytes).unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let watched = TransferOptions {
        progress: Some(Arc::new(move |event: &Progress| {
            seen.lock().unwrap().push(event.clone())
        })),
        ..options()
    };
    let summary = sync(
        &mirrors.all(&["a", "b", "c"]),
        &scope(&["a", "b"], &["c"]),
        &watched,
    )
    .await
    .unwrap();
    assert!(summary.succeeded(), "{summary}");
    assert_eq!(mirrors.get("c", &k).await, data);
    assert_eq!(mirrors.manifest("c", &k).unwrap().created_unix_ms, 2_000);
    assert_eq!(
        fs::read(&mirrors.pack_files("c")[0]).unwrap(),
        fs::read(&mirrors.pack_files("b")[0]).unwrap(),
        "c holds a's damaged pack"
    );
    let events = events.lock().unwrap();
    let from_b = events
        .iter()
        .filter(|e| matches!(e, Progress::Chunk { mirror, .. } if mirror == "b → c"))
        .count();
    assert_eq!(from_b, 1, "{events:?}");
}

#[tokio::test]
async fn a_chunk_no_source_has_fails_its_key_only_and_keeps_the_old_manifest() {
    let mirrors = Mirrors::new();
    let (broken, fine) = (key("broken.bin"), key("fine.bin"));
    mirrors.put("a", &broken, &noise(600_000, 6), 2_000).await;
    let gone = mirrors.pack_files("a")[0].clone();
    mirrors.put("a", &fine, &noise(300_000, 7), 2_000).await;
    fs::remove_file(&gone).unwrap();
    let old = noise(200_000, 8);
    mirrors.put("c", &broken, &old, 1_000).await;
    let old_manifest = fs::read(mirrors.manifest_file("c", &broken)).unwrap();

    let summary = sync(
        &mirrors.all(&["a", "c"]),
        &scope(&["a"], &["c"]),
        &options(),
    )
    .await
    .unwrap();
    assert!(!summary.succeeded());
    assert_eq!(summary.failures.len(), 1, "{summary}");
    let failure = &summary.failures[0];
    assert_eq!(failure.key.as_deref(), Some("broken.bin"));
    assert_eq!(failure.mirror, "c");
    assert!(
        failure.reason.contains("no mirror could serve it")
            && failure.reason.contains("mirror `a`"),
        "{}",
        failure.reason
    );
    assert_eq!(
        fs::read(mirrors.manifest_file("c", &broken)).unwrap(),
        old_manifest
    );
    assert_eq!(mirrors.get("c", &broken).await, old);
    assert_eq!(summary.destinations["c"].keys_copied, 1);
    assert!(mirrors.manifest("c", &fine).is_some());
    assert!(summary.to_string().contains("failed: broken.bin on c: "));
}

#[tokio::test]
async fn a_dry_run_counts_but_writes_nothing() {
    let mirrors = Mirrors::new();
    let k = key("dry.bin");
    mirrors.put("a", &k, &noise(500_000, 9), 1_000).await;
    let dry = SyncScope {
        dry_run: true,
        ..SyncScope::default()
    };
    let summary = sync(&mirrors.all(&["a", "b"]), &dry, &options())
        .await
        .unwrap();
    let chunks = mirrors.manifest("a", &k).unwrap().chunks.len();
    assert!(summary.dry_run && summary.succeeded(), "{summary}");
    assert_eq!(summary.destinations["b"].keys_copied, 1);
    assert_eq!(summary.destinations["b"].chunks_copied, chunks);
    assert!(summary.destinations["b"].bytes_copied > 0);
    assert!(summary
        .to_string()
        .starts_with("sync (dry run): 1 key examined, 1 manifest to copy"));
    assert_eq!(fs::read_dir(mirrors.path("b")).unwrap().count(), 0);
}

#[tokio::test]
async fn packs_the_destination_holds_are_not_copied_again() {
    let mirrors = Mirrors::new();
    let k = key("edited.bin");
    let data = noise(2 << 20, 10);
    mirrors.put("a", &k, &data, 1_000).await;
    let first = sync(
        &mirrors.all(&["a", "b"]),
        &scope(&["a"], &["b"]),
        &options(),
    )
    .await
    .unwrap();
    assert!(first.succeeded(), "{first}");
    // A small edit: the new version reuses the old pack and adds a small one.
    let mut edited = data.clone();
    edited[1 << 20..(1 << 20) + 1000].fill(7);
    mirrors.put("a", &k, &edited, 2_000).await;
    let summary = sync(
        &mirrors.all(&["a", "b"]),
        &scope(&["a"], &["b"]),
        &options(),
    )
    .await
    .unwrap();
    let chunks = mirrors.manifest("a", &k).unwrap().chunks.len();
    let tally = &summary.destinations["b"];
    assert!(summary.succeeded(), "{summary}");
    assert!(tally.chunks_copied <= 3, "{summary}");
    assert_eq!(
        tally.chunks_present + tally.chunks_copied,
        chunks,
        "{summary}"
    );
    assert_eq!(mirrors.pack_files("b").len(), 2);
    assert_eq!(mirrors.get("b", &k).await, edited);
}

#[tokio::test]
async fn bad_manifests_are_reported_never_copied_and_replaced_on_destinations() {
    let mirrors = Mirrors::new();
    let (k, lone) = (key("k.bin"), key("lone.bin"));
    mirrors.put("a", &k, &noise(100_000, 11), 1_000).await;
    fs::create_dir_all(mirrors.path("b/manifests")).unwrap();
    fs::write(mirrors.manifest_file("b", &k), b"{\"format\": 1}").unwrap();
    mirrors.put("b", &lone, &noise(100_000, 12), 1_000).await;
    fs::write(mirrors.manifest_file("b", &lone), b"<html>").unwrap();
    // Not a key: ignored.
    fs::write(mirrors.path("b/manifests/.netwatch-probe"), b"").unwrap();

    let summary = sync(&mirrors.all(&["a", "b"]), &SyncScope::default(), &options())
        .await
        .unwrap();
    assert_eq!(summary.keys_examined, 2, "{summary}");
    assert_eq!(summary.destinations["b"].invalid_replaced, 1, "{summary}");
    assert!(mirrors.manifest("b", &k).is_some());
    assert_eq!(summary.failures.len(), 1, "{summary}");
    assert_eq!(summary.failures[0].key.as_deref(), Some("lone.bin"));
    assert_eq!(summary.failures[0].mirror, "b");
    assert!(summary.failures[0]
        .reason
        .contains("not a netwatch manifest"));
    assert!(!mirrors.manifest_file("a", &lone).exists());
}

#[tokio::test]
async fn a_prefix_limits_the_keys_and_unknown_names_are_refused() {
    let mirrors = Mirrors::new();
    for (i, name) in ["builds/app-1.tar", "builds/app-2.tar", "other/x"]
        .into_iter()
        .enumerate()
    {
        mirrors
            .put("a", &key(name), &noise(20_000, 20 + i as u64), 1_000)
            .await;
    }
    let only = SyncScope {
        prefix: "builds/app-2".parse().unwrap(),
        ..SyncScope::default()
    };
    let summary = sync(&mirrors.all(&["a", "b"]), &only, &options())
        .await
        .unwrap();
    assert_eq!(summary.keys_examined, 1, "{summary}");
    assert!(mirrors.manifest("b", &key("builds/app-2.tar")).is_some());
    assert!(mirrors.manifest("b", &key("builds/app-1.tar")).is_none());

    let error = sync(&mirrors.all(&["a", "b"]), &scope(&[], &["c"]), &options())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "no mirror is named `c`: the mirrors are `a`, `b`"
    );
    for bad in ["/abs", "../x", "a b", "a//"] {
        let error = bad.parse::<KeyPrefix>().unwrap_err().to_string();
        assert!(error.contains("cannot begin an artifact key"), "{error}");
    }
    assert!("builds/".parse::<KeyPrefix>().is_ok());
}

#[test]
fn a_sync_can_run_on_any_tokio_thread() {
    fn send<T: Send>(_: &T) {}
    let (mirrors, options) = (Vec::new(), options());
    send(&sync(&mirrors, &SyncScope::default(), &options));
}
