//! The `netwatch` CLI as a user runs it for transfers, shared by the transfer test files: a
//! work directory with the configuration file, the cache, a HOME of its own (so no
//! `~/.aws` or `~/.cache` of the machine's is read) and a socket no agent serves; the JSON
//! summaries read back; and checks on what a transfer left on disk.

#![allow(dead_code, reason = "each test file uses a part")]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use netwatch_tests::cli::{self, Ran};
use netwatch_tests::random::Random;
use netwatch_transfer::Digest;
use serde_json::Value;

/// One `[[mirror]]` table.
pub fn mirror_table(name: &str, priority: u32, url: &str) -> String {
    format!("[[mirror]]\nname = \"{name}\"\npriority = {priority}\nurl = \"{url}\"\n\n")
}

/// A work directory and the way to run `netwatch` in it.
pub struct Cli {
    work: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    /// A fresh work directory, with `config` as its configuration file.
    pub fn new(config: &str) -> Self {
        let work = tempfile::tempdir().expect("a work directory");
        let cli = Cli {
            work,
            env: Vec::new(),
        };
        cli.write_config(config);
        cli
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config(), config).expect("write the configuration file");
    }

    /// Adds variables every later run gets (an S3 server's credentials and endpoint).
    pub fn with_env(mut self, vars: Vec<(&'static str, String)>) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.to_string(), v)));
        self
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir().join("config.toml")
    }

    pub fn cache(&self) -> PathBuf {
        self.dir().join("cache")
    }

    /// A directory inside the work directory, created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(&dir).expect("create a directory in the work directory");
        dir
    }

    /// `netwatch ARGS --config C` (with `--cache` and `--socket` for put and get, `--cache`
    /// for mirrors), bounded in time.
    pub fn run(&self, args: &[&str]) -> Ran {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let config = self.config().display().to_string();
        let cache = self.cache().display().to_string();
        let socket = self.dir().join("no-agent.sock").display().to_string();
        all.extend(["--config".to_string(), config]);
        match args.first().copied() {
            Some("put" | "get") => {
                all.extend(["--cache".to_string(), cache, "--socket".to_string(), socket]);
            }
            Some("mirrors") => {
                all.extend(["--cache".to_string(), cache, "--socket".to_string(), socket]);
            }
            _ => {}
        }
        let mut command = cli::netwatch(None);
        command
            .args(&all)
            .current_dir(self.dir())
            .env("HOME", self.dir())
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        Ran::bounded(command, all)
    }

    /// `put FILE KEY --json [--mirror NAME]`, which must succeed: its summary.
    pub fn put(&self, file: &Path, key: &str, mirror: Option<&str>) -> Value {
        let file = file.display().to_string();
        let mut args = vec!["put", &file, key, "--json"];
        if let Some(mirror) = mirror {
            args.extend(["--mirror", mirror]);
        }
        self.run(&args).json()
    }

    /// `put FILE KEY --mirror NAME --compression COMPRESSION --json`, which must succeed:
    /// its summary.
    pub fn put_as(&self, file: &Path, key: &str, mirror: &str, compression: &str) -> Value {
        let file = file.display().to_string();
        let args = [
            "put",
            &file,
            key,
            "--mirror",
            mirror,
            "--compression",
            compression,
            "--json",
        ];
        self.run(&args).json()
    }

    /// `get KEY OUT --json`.
    pub fn get(&self, key: &str, out: &Path) -> Ran {
        self.get_with(key, out, &[])
    }

    /// `get` with more flags.
    pub fn get_with(&self, key: &str, out: &Path, flags: &[&str]) -> Ran {
        let out = out.display().to_string();
        let mut args = vec!["get", key, &out, "--json"];
        args.extend_from_slice(flags);
        self.run(&args)
    }
}

/// `size` bytes of several kinds, in 64 KiB runs: random, text-like, zeros, a repeated
/// pattern. Deterministic in `seed`, and compressible in parts, as build output is.
pub fn mixed_data(size: usize, seed: u64) -> Vec<u8> {
    let mut random = Random::new(seed);
    let mut next = move || random.next_u64();
    let mut data = Vec::with_capacity(size);
    let mut run = 0u64;
    while data.len() < size {
        let want = (size - data.len()).min(64 * 1024);
        match run % 4 {
            0 => (0..want).for_each(|_| data.push(next() as u8)),
            1 => {
                let mut text = Vec::new();
                while text.len() < want {
                    text.extend_from_slice(
                        format!("line {} of run {run}: fn build() {{ ok }}\n", next() % 1000)
                            .as_bytes(),
                    );
                }
                data.extend_from_slice(&text[..want]);
            }
            2 => data.resize(data.len() + want, 0),
            _ => data.extend((0..want).map(|i| (i % 251) as u8)),
        }
        run += 1;
    }
    data
}

/// Every file under `dir` with its size, by path relative to `dir`.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = entry.metadata().expect("metadata of a listed file");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
                files.insert(relative, meta.len());
            }
        }
    }
    files
}

/// The files under `dir` that `after` has and `before` had not, or had at another size.
pub fn changed(before: &BTreeMap<PathBuf, u64>, after: &BTreeMap<PathBuf, u64>) -> Vec<PathBuf> {
    after
        .iter()
        .filter(|(path, size)| before.get(*path) != Some(size))
        .map(|(path, _)| path.clone())
        .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
        .collect()
}

/// Checks that every file under `<cache>/chunks` is a whole chunk: named `<aa>/<id>` and
/// holding content whose BLAKE3 digest is the id. Returns how many there are.
pub fn verify_cache(cache: &Path) -> usize {
    let chunks = netwatch_tests::mirrors::cached_chunks(cache);
    for (id, chunk) in &chunks {
        assert_eq!(
            &Digest::blake3(&chunk.content(id)).to_hex(),
            id,
            "{} {:?} fails its BLAKE3 digest: corrupted data reached the cache",
            chunk.at.file.display(),
            chunk.at.range
        );
    }
    // Nothing else: no temporary file left behind.
    for file in tree(&cache.join("packs")).keys() {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        assert!(
            !name.starts_with('.'),
            "{} is a temporary file left behind",
            file.display()
        );
    }
    chunks.len()
}

/// The files beside `out` that a get may leave only while it runs: its temporary outputs.
pub fn temporary_outputs(out: &Path) -> Vec<String> {
    let name = out.file_name().expect("a file name").to_string_lossy();
    let prefix = format!(".{name}.netwatch-");
    std::fs::read_dir(out.parent().expect("a directory"))
        .expect("read the output directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The manifest of `key` as stored under a mirror's directory.
pub fn stored_manifest(root: &Path, key: &str) -> (PathBuf, Value) {
    let path = root.join("manifests").join(format!("{key}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the manifest {}: {e}", path.display()));
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the manifest {} is not JSON: {e}", path.display()));
    (path, value)
}
