//! put and get end to end, on `file://` mirrors in temporary directories.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::{
    retry::{Jitter, RetryBudget, RetryPolicy},
    state::{EndpointStatus, Health, NetworkState, Verdict},
};

mod seed;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, mirror: &str) -> MirrorUrl {
        format!("file://{}", self.path(mirror).display())
            .parse()
            .unwrap()
    }

    fn writer(&self, mirror: &str) -> MirrorStore {
        MirrorStore::open(mirror, &self.url(mirror), Access::Write).unwrap()
    }

    fn readers(&self, mirrors: &[&str]) -> Vec<MirrorStore> {
        mirrors
            .iter()
            .map(|m| MirrorStore::open(m, &self.url(m), Access::Read).unwrap())
            .collect()
    }

    fn cache(&self) -> ChunkCache {
        ChunkCache::new(self.path("cache"))
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// The stored objects of a mirror under `folder` ("packs", or "chunks" for format 1).
    fn stored_files(&self, mirror: &str, folder: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in fs::read_dir(self.path(mirror).join(folder)).unwrap() {
            for file in fs::read_dir(dir.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
        files.sort();
        files
    }

    /// Where `key`'s chunks lie on a mirror, in file order: the pack file and the byte range.
    fn stored_chunks(
        &self,
        mirror: &str,
        key: &ArtifactKey,
    ) -> Vec<(PathBuf, std::ops::Range<usize>)> {
        let json = fs::read(self.path(mirror).join(format!("manifests/{key}.json"))).unwrap();
        let manifest = Manifest::from_json(&json, key).unwrap();
        manifest
            .chunks
            .iter()
            .map(|chunk| {
                let spot = manifest.spot(chunk).expect("put packs every chunk");
                let at = spot.offset as usize;
                (
                    self.path(mirror).join(crate::store::pack_path(spot.pack)),
                    at..at + chunk.stored_size as usize,
                )
            })
            .collect()
    }

    /// Applies `damage` to the stored bytes of `key`'s chunk `index` on `mirror`.
    fn damage(
        &self,
        mirror: &str,
        key: &ArtifactKey,
        index: usize,
        damage: impl FnOnce(&mut [u8]),
    ) {
        let (file, range) = self.stored_chunks(mirror, key)[index].clone();
        let mut bytes = fs::read(&file).unwrap();
        damage(&mut bytes[range]);
        fs::write(&file, bytes).unwrap();
    }

    /// Writes `data` to the file `name` and puts it under `key`, with the test options.
    async fn put_new(
        &self,
        name: &str,
        data: &[u8],
        key: &ArtifactKey,
        mirror: &MirrorStore,
    ) -> Summary {
        put(&self.file(name, data), key, mirror, &options())
            .await
            .unwrap()
    }

    /// Gets `key` into the file `out` through the shared cache, with the test options.
    async fn get_into(
        &self,
        key: &ArtifactKey,
        out: &str,
        mirrors: &[MirrorStore],
    ) -> Result<Summary, TransferError> {
        let (out, cache) = (self.path(out), self.cache());
        get(Fetch::new(key, &out, mirrors, &cache), &options()).await
    }

    /// Puts `v1` to `mirror` and gets it once into "out", so the cache holds its chunks.
    async fn publish_and_fetch(&self, v1: &[u8], key: &ArtifactKey, mirror: &MirrorStore) {
        self.put_new("v1", v1, key, mirror).await;
        self.get_into(key, "out", &self.readers(&["a"]))
            .await
            .unwrap();
    }

    /// Puts the next version `v2` and gets it into "out": what each direction moved.
    async fn update(
        &self,
        v2: &[u8],
        key: &ArtifactKey,
        mirror: &MirrorStore,
    ) -> (Summary, Summary) {
        let up = self.put_new("v2", v2, key, mirror).await;
        let down = self
            .get_into(key, "out", &self.readers(&["a"]))
            .await
            .unwrap();
        (up, down)
    }
}

/// Quick retries, a budget of the test's own, no agent.
pub(super) fn options() -> TransferOptions {
    TransferOptions {
        policy: RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            jitter: Jitter::None,
            deadline: Some(Duration::from_secs(60)),
            ..TransferOptions::default().policy
        },
        budget: RetryBudget::new(100_000),
        ..TransferOptions::default()
    }
}

pub(super) fn key(text: &str) -> ArtifactKey {
    text.parse().unwrap()
}

pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The agent's view with each named endpoint at the given health.
pub(super) fn network_state(verdicts: &[(&str, Health)]) -> NetworkState {
    let mut state = NetworkState::initial(0);
    for &(name, health) in verdicts {
        state.endpoints.insert(
            name.to_string(),
            EndpointStatus {
                name: name.to_string(),
                address: "198.18.0.2:80".into(),
                verdict: Verdict {
                    health,
                    reasons: Vec::new(),
                    since_ns: 0,
                },
                via: None,
                retransmits: 0,
            },
        );
    }
    state
}

/// Build output is partly compressible: noise with runs.
fn build_output(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        if rng.bool() {
            data.extend(std::iter::repeat_n(rng.u8(..), rng.usize(1..200)));
        } else {
            data.extend((0..rng.usize(1..200)).map(|_| rng.u8(..)));
        }
    }
    data.truncate(len);
    data
}

#[tokio::test]
async fn put_then_get_gives_back_the_same_bytes_at_every_size() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    for (i, size) in [0, 1, 1000, MIN_CHUNK, 300_000, 3 << 20]
        .into_iter()
        .enumerate()
    {
        let data = build_output(size, i as u64);
        let key = key(&format!("sizes/{size}.bin"));
        let file = setup.file(&format!("in-{size}"), &data);
        let put = put(&file, &key, &mirror, &options()).await.unwrap();
        assert_eq!(put.artifact_bytes, size as u64);
        assert!(setup
            .path(&format!("a/manifests/sizes/{size}.bin.json"))
            .is_file());

        let out = setup.path(&format!("out-{size}"));
        let got = setup
            .get_into(&key, &format!("out-{size}"), &setup.readers(&["a"]))
            .await
            .unwrap();
        assert_eq!(fs::read(&out).unwrap(), data, "size {size}");
        assert_eq!(got.chunks, put.chunks);
        assert_eq!(got.manifest_from.as_deref(), Some("a"));
    }
    // Every stored object is where docs/transfer.md says: packs/<aa>/<id>.pack.
    for file in setup.stored_files("a", "packs") {
        let name = file.file_name().unwrap().to_str().unwrap();
        let id = name.strip_suffix(".pack").expect("a pack");
        assert!(PackId::parse(id).is_ok(), "{name}");
        assert_eq!(
            file.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            &id[..2]
        );
    }
}

#[tokio::test]
async fn every_encoding_round_trips_through_a_mirror() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let data = build_output(500_000, 9);
    let file = setup.file("in", &data);
    for (i, compression) in [
        Compression::None,
        Compression::Gzip(6),
        Compression::Zstd(19),
    ]
    .into_iter()
    .enumerate()
    {
        let key = key(&format!("enc/{i}"));
        let mirror = MirrorStore::open("m", &setup.url(&format!("m{i}")), Access::Write).unwrap();
        let options = TransferOptions {
            compression,
            ..options()
        };
        put(&file, &key, &mirror, &options).await.unwrap();
        let out = setup.path(&format!("out{i}"));
        let reader = vec![mirror];
        let cache = ChunkCache::new(setup.path(&format!("cache{i}")));
        get(Fetch::new(&key, &out, &reader, &cache), &options)
            .await
            .unwrap();
        assert_eq!(fs::read(&out).unwrap(), data, "{compression:?}");
    }
    // Auto on a link far faster than any compressor stores chunks raw.
    let fast = TransferOptions {
        link_bytes_per_sec: Some(1e12),
        ..options()
    };
    let summary = put(&file, &key("enc/fast"), &mirror, &fast).await.unwrap();
    assert_eq!(summary.encoding.as_deref(), Some("none"));
}

/// Inserts and overwrites `total` bytes in `spots` places spread over `data`.
fn edit(data: &[u8], total: usize, spots: usize, seed: u64) -> Vec<u8> {
    let mut edited = data.to_vec();
    let each = total / spots / 2;
    for spot in 0..spots {
        let at = data.len() / (spots + 1) * (spot + 1);
        let patch = noise(each, seed + spot as u64);
        edited[at..at + each].copy_from_slice(&patch);
        edited.splice(
            at + 3 * each..at + 3 * each,
            noise(each, seed + 100 + spot as u64),
        );
    }
    edited
}

#[tokio::test]
async fn a_one_percent_edit_moves_a_small_share_of_the_bytes_each_way() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let size = 8 << 20;
    let v1 = noise(size, 1);
    let v2 = edit(&v1, size / 100, 4, 50);
    let key = key("delta/app.bin");
    setup.publish_and_fetch(&v1, &key, &mirror).await;

    let (up, down) = setup.update(&v2, &key, &mirror).await;
    assert_eq!(fs::read(setup.path("out")).unwrap(), v2);
    let share = |s: &Summary| s.bytes_moved as f64 / s.artifact_bytes as f64;
    eprintln!(
        "1% edit in 4 places of an 8 MiB file: put moved {} bytes ({:.1}%), get moved {} \
         bytes ({:.1}%), {} of {} chunks",
        up.bytes_moved,
        share(&up) * 100.0,
        down.bytes_moved,
        share(&down) * 100.0,
        down.chunks_moved,
        down.chunks
    );
    assert!(share(&up) < 0.15 && share(&down) < 0.15);
    assert_eq!(up.chunks_moved, down.chunks_moved);
    assert!(down.delta_savings > 0.85);
}

#[tokio::test]
async fn a_corrupted_chunk_is_fetched_from_the_next_mirror() {
    let setup = Setup::new();
    let data = noise(1 << 20, 3);
    let file = setup.file("in", &data);
    let key = key("corrupt.bin");
    for name in ["a", "b"] {
        put(&file, &key, &setup.writer(name), &options())
            .await
            .unwrap();
    }
    setup.damage("a", &key, 2, |stored| stored[10] ^= 0xff);

    let out = setup.path("out");
    let summary = setup
        .get_into(&key, "out", &setup.readers(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(summary.mirrors["b"].chunks, 1, "{summary:?}");
    assert_eq!(summary.mirrors["a"].failures, 1, "{summary:?}");
    assert_eq!(summary.mirrors["a"].chunks, summary.chunks - 1);
}

#[tokio::test]
async fn a_chunk_bad_on_every_mirror_fails_the_get_and_leaves_no_output() {
    let setup = Setup::new();
    let data = noise(1 << 20, 4);
    let key = key("bad.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    // One chunk with another's content of the same length, and the pack cut short in the
    // middle of the last chunk.
    let stored = setup.stored_chunks("a", &key);
    let (pack, last) = stored.last().unwrap().clone();
    let replacement = fs::read(&pack).unwrap()[stored[3].1.clone()].to_vec();
    setup.damage("a", &key, 0, |bytes| {
        let mut substituted = replacement.repeat(2);
        substituted.truncate(bytes.len());
        bytes.copy_from_slice(&substituted);
    });
    let bytes = fs::read(&pack).unwrap();
    fs::write(&pack, &bytes[..last.start + (last.end - last.start) / 2]).unwrap();

    let out = setup.path("out");
    let cache = setup.cache();
    let readers = setup.readers(&["a"]);
    let error = get(Fetch::new(&key, &out, &readers, &cache), &options())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TransferError::Unavailable { .. }),
        "{message}"
    );
    assert!(
        message.contains("no mirror could serve it: mirror `a`"),
        "{message}"
    );
    assert!(!out.exists(), "a failed get left {}", out.display());
    let in_output_dir: Vec<_> = fs::read_dir(setup.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("netwatch"))
        .collect();
    assert!(in_output_dir.is_empty(), "{in_output_dir:?}");
    // Nothing that failed its check reached the cache: not the substituted chunk, nor the
    // range it came in.
    let manifest = Manifest::from_json(&cache.read_manifest(&key).unwrap().unwrap(), &key).unwrap();
    let substituted = Manifest {
        chunks: manifest.chunks[..1].to_vec(),
        ..manifest.clone()
    };
    assert_eq!(cache.held(&substituted), 0);
}

#[tokio::test]
async fn an_interrupted_get_resumes_with_only_the_missing_chunks() {
    let setup = Setup::new();
    let data = noise(2 << 20, 5);
    let key = key("resume.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    let readers = setup.readers(&["a"]);
    let out = setup.path("out");

    // Stop after the first span, as a kill would (the cache only ever holds whole chunks).
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let interrupted = TransferOptions {
        concurrency: 1,
        cancel,
        progress: Some(Arc::new(move |event: &Progress| {
            if matches!(event, Progress::Chunk { .. }) {
                stop.cancel();
            }
        })),
        ..options()
    };
    let cache = setup.cache();
    let error = get(Fetch::new(&key, &out, &readers, &cache), &interrupted)
        .await
        .unwrap_err();
    assert!(matches!(error, TransferError::Cancelled), "{error}");
    assert!(!out.exists());
    let manifest = Manifest::from_json(&cache.read_manifest(&key).unwrap().unwrap(), &key).unwrap();
    let fetched = cache.held(&manifest);
    assert!(
        fetched >= 3 && fetched < manifest.chunks.len(),
        "{fetched} cached"
    );

    let rerun = setup.get_into(&key, "out", &readers).await.unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(rerun.chunks_moved, rerun.chunks - fetched, "{rerun:?}");
}

#[tokio::test]
async fn hostile_manifests_are_refused_and_nothing_is_written() {
    let setup = Setup::new();
    let data = noise(100_000, 6);
    let key = key("hostile.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    let manifest_file = setup.path("a/manifests/hostile.bin.json");
    let good = fs::read(&manifest_file).unwrap();
    let mut tree: serde_json::Value = serde_json::from_slice(&good).unwrap();
    for (field, value, expected) in [
        ("id", "../../../../etc/passwd", "is not a digest"),
        ("offset", "7", "leaves a gap"),
    ] {
        let mut hostile = tree.clone();
        hostile["chunks"][0][field] = if field == "offset" {
            value.parse::<u64>().unwrap().into()
        } else {
            value.into()
        };
        fs::write(&manifest_file, serde_json::to_vec(&hostile).unwrap()).unwrap();
        let out = setup.path("out");
        let cache = ChunkCache::new(setup.path(&format!("cache-{field}")));
        let readers = setup.readers(&["a"]);
        let message = get(Fetch::new(&key, &out, &readers, &cache), &options())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("the manifest of hostile.bin: no mirror could serve it")
                && message.contains("sent a bad manifest")
                && message.contains(expected),
            "{message}"
        );
        assert!(!out.exists());
        assert!(!cache.root().join("chunks").exists());
    }
    tree["key"] = "other.bin".into();
    fs::write(&manifest_file, serde_json::to_vec(&tree).unwrap()).unwrap();
    let message = setup
        .get_into(&key, "out", &setup.readers(&["a"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("it names key `other.bin`, not `hostile.bin`"),
        "{message}"
    );
}

#[tokio::test]
async fn with_no_manifest_on_any_mirror_the_cached_one_serves() {
    let setup = Setup::new();
    let data = noise(300_000, 7);
    let offline = key("offline.bin");
    setup
        .put_new("in", &data, &offline, &setup.writer("a"))
        .await;
    let readers = setup.readers(&["a"]);
    setup.get_into(&offline, "first", &readers).await.unwrap();
    fs::remove_file(setup.path("a/manifests/offline.bin.json")).unwrap();
    let out = setup.path("second");
    let summary = setup.get_into(&offline, "second", &readers).await.unwrap();
    assert_eq!(summary.manifest_from.as_deref(), Some("local cache"));
    assert_eq!(summary.bytes_moved, 0);
    assert_eq!(fs::read(&out).unwrap(), data);
    // Without that copy, the error says what each mirror answered.
    let message = setup
        .get_into(&key("never.bin"), "second", &readers)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("the manifest of never.bin: no mirror could serve it: mirror `a`: GET manifests/never.bin.json"), "{message}");
}

#[tokio::test]
async fn put_skips_chunks_the_mirror_has_and_a_reader_never_needs_a_manifest_first() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let data = noise(1 << 20, 8);
    let file = setup.file("in", &data);
    let first = put(&file, &key("one"), &mirror, &options()).await.unwrap();
    assert_eq!(first.chunks_moved, first.chunks);
    let second = put(&file, &key("two"), &mirror, &options()).await.unwrap();
    assert_eq!(second.chunks_moved, 0);
    assert_eq!(second.bytes_moved, second.manifest_bytes);
    assert!((second.delta_savings - 1.0).abs() < 1e-9);
}

#[test]
fn a_get_can_run_on_any_tokio_thread() {
    fn send<T: Send>(_: &T) {}
    let (mirrors, cache, options) = (Vec::new(), ChunkCache::new("/nonexistent"), options());
    let key = key("k");
    let out = Path::new("/nonexistent/out");
    let future = get(Fetch::new(&key, out, &mirrors, &cache), &options);
    send(&future);
    let mirror = Setup::new().writer("a");
    send(&put(Path::new("/nonexistent"), &key, &mirror, &options));
}

#[test]
fn the_reading_side_of_a_file_mirror_never_creates_it() {
    let setup = Setup::new();
    let error = MirrorStore::open("a", &setup.url("absent"), Access::Read).unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(!setup.path("absent").exists());
}

/// The figure: a 1% edit of a 100 MB artifact should move at most 5%. Slow in a debug
/// build: `cargo test -p netwatch --lib hundred_megabytes -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "moves 400 MB through a file mirror; run by hand for the figure"]
async fn a_one_percent_edit_of_a_hundred_megabytes() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let size = 100_000_000;
    let v1 = noise(size, 11);
    let key = key("delta/big.bin");
    setup.publish_and_fetch(&v1, &key, &mirror).await;
    for spots in [1, 10, 100] {
        let v2 = edit(&v1, size / 100, spots, 1000 + spots as u64);
        let (up, down) = setup.update(&v2, &key, &mirror).await;
        eprintln!(
            "1% edit in {spots} places of 100 MB: put moved {:.2}%, get moved {:.2}% ({} of {} chunks)",
            up.bytes_moved as f64 / up.artifact_bytes as f64 * 100.0,
            down.bytes_moved as f64 / down.artifact_bytes as f64 * 100.0,
            down.chunks_moved,
            down.chunks
        );
    }
}

#[tokio::test]
async fn a_format_1_mirror_of_one_object_per_chunk_is_still_read() {
    let setup = Setup::new();
    let data = noise(1 << 20, 9);
    let key = key("old/format.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    // Rewrite the mirror as format 1 wrote it: each chunk its own object named by its
    // SHA-256, no packs.
    let manifest_file = setup.path("a/manifests/old/format.bin.json");
    let mut manifest = Manifest::from_json(&fs::read(&manifest_file).unwrap(), &key).unwrap();
    for (chunk, (pack, range)) in manifest
        .chunks
        .iter_mut()
        .zip(setup.stored_chunks("a", &key))
    {
        let stored = &fs::read(&pack).unwrap()[range];
        chunk.id = Digest::sha256(&crate::decode(stored, chunk).unwrap());
        let object = setup.path("a").join(chunk_path(chunk.id, chunk.encoding));
        fs::create_dir_all(object.parent().unwrap()).unwrap();
        fs::write(&object, stored).unwrap();
        chunk.pack = None;
    }
    manifest.packs.clear();
    manifest.checksum = Digest::sha256(&data);
    let mut wire: serde_json::Value = serde_json::from_slice(&manifest.to_json()).unwrap();
    wire["format"] = 1.into();
    fs::write(&manifest_file, serde_json::to_vec(&wire).unwrap()).unwrap();
    fs::remove_dir_all(setup.path("a/packs")).unwrap();

    let got = setup
        .get_into(&key, "out", &setup.readers(&["a"]))
        .await
        .unwrap();
    assert_eq!(fs::read(setup.path("out")).unwrap(), data);
    assert_eq!(got.chunks_moved, got.chunks);
    // A put over it reuses its chunk objects and packs only what is new.
    let mut edited = data.clone();
    edited[500_000..501_000].fill(1);
    let again = setup
        .put_new("edited", &edited, &key, &setup.writer("a"))
        .await;
    assert!(again.chunks_moved <= 3, "{again:?}");
    setup
        .get_into(&key, "out2", &setup.readers(&["a"]))
        .await
        .unwrap();
    assert_eq!(fs::read(setup.path("out2")).unwrap(), edited);
}

#[tokio::test]
async fn a_digest_asked_for_is_kept_by_later_puts_and_a_change_stores_every_chunk_once() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let data = noise(1 << 20, 13);
    let key = key("digest/app.bin");
    let file = setup.file("in", &data);
    let manifest = || {
        let json = fs::read(setup.path("a/manifests/digest/app.bin.json")).unwrap();
        Manifest::from_json(&json, &key).unwrap()
    };
    let with = |digest| TransferOptions {
        digest,
        ..options()
    };
    // SHA-256 asked for: format 2, which netwatch before format 3 reads.
    let first = put(&file, &key, &mirror, &with(Some(Algorithm::Sha256)))
        .await
        .unwrap();
    assert_eq!(manifest().checksum.algorithm(), Algorithm::Sha256);
    assert_eq!(first.chunks_moved, first.chunks);
    // Nothing asked: the key's own algorithm, and nothing stored again.
    let same = put(&file, &key, &mirror, &with(None)).await.unwrap();
    assert_eq!(manifest().checksum.algorithm(), Algorithm::Sha256);
    assert_eq!(same.chunks_moved, 0, "{same:?}");
    // BLAKE3 asked for: every chunk once under it, then reused.
    let moved = put(&file, &key, &mirror, &with(Some(Algorithm::Blake3)))
        .await
        .unwrap();
    assert_eq!(moved.chunks_moved, moved.chunks, "{moved:?}");
    let manifest = manifest();
    assert_eq!(manifest.checksum, Digest::blake3(&data));
    assert!(manifest
        .chunks
        .iter()
        .all(|c| c.id.algorithm() == Algorithm::Blake3));
    let again = put(&file, &key, &mirror, &with(None)).await.unwrap();
    assert_eq!(again.chunks_moved, 0, "{again:?}");
    setup
        .get_into(&key, "out", &setup.readers(&["a"]))
        .await
        .unwrap();
    assert_eq!(fs::read(setup.path("out")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_cap_holds_and_a_get_survives_eviction_beside_it() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let (first, second) = (noise(3 << 20, 11), noise(3 << 20, 12));
    setup.put_new("one", &first, &key("cap/one"), &mirror).await;
    setup
        .put_new("two", &second, &key("cap/two"), &mirror)
        .await;
    let capped = TransferOptions {
        cache_max: Some(4 << 20),
        ..options()
    };
    let (readers, cache) = (setup.readers(&["a"]), setup.cache());
    for (name, data) in [("one", &first), ("two", &second)] {
        let out = setup.path(&format!("{name}.out"));
        get(
            Fetch::new(&key(&format!("cap/{name}")), &out, &readers, &cache),
            &capped,
        )
        .await
        .unwrap();
        assert_eq!(&fs::read(&out).unwrap(), data);
        assert!(cache.usage().bytes <= 4 << 20, "{:?}", cache.usage());
    }
    // Another process evicting everything, over and over, while a get reads the cache.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let evictor = {
        let (cache, stop) = (cache.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cache.evict_to(0);
            }
        })
    };
    let out = setup.path("again.out");
    let again = get(Fetch::new(&key("cap/two"), &out, &readers, &cache), &capped).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    evictor.join().unwrap();
    again.unwrap();
    assert_eq!(fs::read(&out).unwrap(), second);
}

#[tokio::test]
async fn gc_removes_only_what_no_manifest_names_and_leaves_young_packs() {
    let setup = Setup::new();
    let mirror = setup.writer("a");
    let v1 = noise(2 << 20, 21);
    let mut v2 = v1.clone();
    v2[1 << 20..(1 << 20) + 5000].fill(3);
    setup.put_new("v1", &v1, &key("gc/app"), &mirror).await;
    setup.put_new("v2", &v2, &key("gc/app"), &mirror).await;
    setup
        .put_new("other", &noise(1 << 20, 22), &key("gc/other"), &mirror)
        .await;
    // `gc/other` is deleted by hand: its pack is named by nothing now.
    fs::remove_file(setup.path("a/manifests/gc/other.json")).unwrap();
    let packs_before = setup.stored_files("a", "packs").len();

    let kept = gc(&mirror, &GcOptions::default()).await.unwrap();
    assert_eq!((kept.removed, kept.young), (0, 1), "{kept:?}");
    let dry = GcOptions {
        grace: Duration::ZERO,
        dry_run: true,
    };
    let counted = gc(&mirror, &dry).await.unwrap();
    assert_eq!(counted.removed, 1, "{counted:?}");
    assert_eq!(setup.stored_files("a", "packs").len(), packs_before);
    let removed = gc(
        &mirror,
        &GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(removed.removed, 1, "{removed:?}");
    assert!(removed.removed_bytes >= 1 << 20);
    assert_eq!(setup.stored_files("a", "packs").len(), packs_before - 1);
    // The current version is whole: v2 uses v1's pack and its own.
    setup
        .get_into(&key("gc/app"), "app.out", &setup.readers(&["a"]))
        .await
        .unwrap();
    assert_eq!(fs::read(setup.path("app.out")).unwrap(), v2);
    // An unreadable manifest stops gc before it removes anything.
    fs::write(setup.path("a/manifests/gc/app.json"), b"{").unwrap();
    let error = gc(&mirror, &dry).await.unwrap_err();
    assert!(error.to_string().contains("gc removes nothing"), "{error}");
}

#[tokio::test]
async fn a_pack_cut_short_on_a_file_mirror_keeps_what_arrived_and_the_next_mirror_gives_the_rest() {
    let setup = Setup::new();
    // Several MiB: the file mirror's ranges are read a MiB at a time.
    let data = noise(6 << 20, 21);
    let key = key("cut/short.bin");
    setup.put_new("in", &data, &key, &setup.writer("a")).await;
    setup.put_new("in", &data, &key, &setup.writer("b")).await;
    let stored = setup.stored_chunks("a", &key);
    let (pack, _) = &stored[0];
    let last_in_pack = stored.iter().filter(|(p, _)| p == pack).count();
    let cut_at = stored[last_in_pack / 2].1.start as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .unwrap()
        .set_len(cut_at)
        .unwrap();

    let alone = setup.get_into(&key, "out", &setup.readers(&["a"])).await;
    let message = alone.unwrap_err().to_string();
    assert!(message.contains("mirror `a`"), "{message}");
    assert!(!setup.path("out").exists());

    let got = setup
        .get_into(&key, "out", &setup.readers(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(fs::read(setup.path("out")).unwrap(), data);
    // The chunks before the cut came from `a` (or the cache the failed get filled), the
    // rest from `b`.
    assert!(got.mirrors["b"].chunks > 0, "{got:?}");
    assert!(
        got.chunks_moved < got.chunks || got.mirrors["a"].chunks > 0,
        "{got:?}"
    );
}
