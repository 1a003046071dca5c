//! What the `netwatch` CLI leaves behind for a test to read: a put's or get's JSON summary and
//! log lines, a manifest as a mirror stores it, and the chunks in a get's cache.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::cli::Ran;

/// A finished `put` or `get`: its JSON summary and its log lines.
#[derive(Debug)]
pub struct Run {
    pub summary: Summary,
    /// stderr, one JSON object per line (a line that is not JSON is kept as a message).
    pub log: Vec<Value>,
}

impl Run {
    /// Reads the summary and log from a finished run; panics with its output unless it
    /// succeeded.
    pub fn finished(ran: &Ran) -> Run {
        let json = ran.json();
        let stderr = ran.stderr();
        let log = stderr
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "level": "RAW" }))
            })
            .collect();
        Run {
            summary: Summary::from_json(json),
            log,
        }
    }

    /// The log lines that contain `text` anywhere (message or fields).
    pub fn lines_with(&self, text: &str) -> Vec<&Value> {
        self.log
            .iter()
            .filter(|line| line.to_string().contains(text))
            .collect()
    }

    /// The order the get ranked the mirrors in, from its "mirrors ranked" debug line.
    pub fn ranked(&self) -> Vec<String> {
        let line = self
            .lines_with("mirrors ranked")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no \"mirrors ranked\" line in the log: {:#?}", self.log));
        let order = line["order"].as_str().unwrap_or_default();
        order
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|name| name.trim_matches('"').to_string())
            .collect()
    }
}

/// The figures of a transfer's `--json` summary that tests use (docs/transfer.md); the
/// whole object is in `json`.
#[derive(Clone, Debug)]
pub struct Summary {
    pub artifact_bytes: u64,
    pub chunks: u64,
    pub chunks_moved: u64,
    pub bytes_moved: u64,
    pub manifest_bytes: u64,
    pub retries: u64,
    pub manifest_from: Option<String>,
    pub mirrors: BTreeMap<String, Tally>,
    pub json: Value,
}

/// One mirror's share of a transfer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub bytes: u64,
    pub chunks: u64,
    pub failures: u64,
}

impl Summary {
    fn from_json(json: Value) -> Self {
        let number = |value: &Value, field: &str| {
            value[field]
                .as_u64()
                .unwrap_or_else(|| panic!("the summary has no number `{field}`: {json}"))
        };
        let mirrors = json["mirrors"]
            .as_object()
            .unwrap_or_else(|| panic!("the summary has no `mirrors`: {json}"))
            .iter()
            .map(|(name, tally)| {
                let tally = Tally {
                    bytes: number(tally, "bytes"),
                    chunks: number(tally, "chunks"),
                    failures: number(tally, "failures"),
                };
                (name.clone(), tally)
            })
            .collect();
        Summary {
            artifact_bytes: number(&json, "artifact_bytes"),
            chunks: number(&json, "chunks"),
            chunks_moved: number(&json, "chunks_moved"),
            bytes_moved: number(&json, "bytes_moved"),
            manifest_bytes: number(&json, "manifest_bytes"),
            retries: number(&json, "retries"),
            manifest_from: json["manifest_from"].as_str().map(str::to_string),
            mirrors,
            json: json.clone(),
        }
    }

    /// `name`'s share (zero if the summary does not list it).
    pub fn mirror(&self, name: &str) -> Tally {
        self.mirrors.get(name).copied().unwrap_or_default()
    }

    /// Bytes moved as a share of the artifact, in percent.
    pub fn moved_percent(&self) -> f64 {
        self.bytes_moved as f64 / self.artifact_bytes.max(1) as f64 * 100.0
    }
}

/// A manifest as a mirror stores it: the chunks, in order.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub size: u64,
    pub chunks: Vec<StoredChunk>,
}

/// Where a chunk's stored bytes are: a file of the mirror, and the bytes of it.
#[derive(Clone, Debug)]
pub struct StoredAt {
    pub file: PathBuf,
    pub range: std::ops::Range<usize>,
}

/// One chunk of a manifest.
#[derive(Clone, Debug)]
pub struct StoredChunk {
    pub id: String,
    pub size: u64,
    pub stored_size: u64,
    pub encoding: String,
    /// Where it lies in the artifact.
    pub offset: u64,
    /// Its pack's id and its offset there (format 2); `None` for a chunk object.
    pub pack: Option<(String, u64)>,
}

impl StoredChunk {
    /// Where a mirror rooted at `root` keeps it (docs/transfer.md, "What is stored where").
    pub fn stored_at(&self, root: &Path) -> StoredAt {
        if let Some((pack, offset)) = &self.pack {
            let start = *offset as usize;
            return StoredAt {
                file: root
                    .join("packs")
                    .join(&pack[..2])
                    .join(format!("{pack}.pack")),
                range: start..start + self.stored_size as usize,
            };
        }
        let suffix = match self.encoding.as_str() {
            "zstd" => ".zst",
            "gzip" => ".gz",
            _ => "",
        };
        StoredAt {
            file: root
                .join("chunks")
                .join(&self.id[..2])
                .join(format!("{}{suffix}", self.id)),
            range: 0..self.stored_size as usize,
        }
    }
}

impl StoredManifest {
    /// Parses a manifest's JSON `text`, read from `path` (which panics name).
    pub fn parse(text: &str, path: &Path) -> Self {
        let json: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let field = |value: &Value, name: &str| value[name].clone();
        let number = |value: &Value, name: &str| {
            field(value, name)
                .as_u64()
                .unwrap_or_else(|| panic!("{}: no number `{name}` in {value}", path.display()))
        };
        let string = |value: &Value, name: &str| {
            field(value, name)
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| panic!("{}: no string `{name}` in {value}", path.display()))
        };
        let packs: Vec<String> = json["packs"]
            .as_array()
            .map(|packs| {
                packs
                    .iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let chunks = json["chunks"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no `chunks`", path.display()))
            .iter()
            .map(|chunk| StoredChunk {
                id: string(chunk, "id"),
                size: number(chunk, "size"),
                stored_size: number(chunk, "stored_size"),
                encoding: string(chunk, "encoding"),
                offset: number(chunk, "offset"),
                pack: chunk["pack"].as_u64().map(|index| {
                    let pack = packs.get(index as usize).unwrap_or_else(|| {
                        panic!("{}: pack {index} is not in the list", path.display())
                    });
                    (pack.clone(), number(chunk, "pack_offset"))
                }),
            })
            .collect();
        StoredManifest {
            size: number(&json, "size"),
            chunks,
        }
    }
}

/// A chunk a get cache holds: where its stored bytes are, and how they are stored.
#[derive(Clone, Debug)]
pub struct CachedChunk {
    pub at: StoredAt,
    pub encoding: String,
    pub size: u64,
}

impl CachedChunk {
    /// Its content, decoded (by netwatch's decoder: the caller hashes it).
    pub fn content(&self, id: &str) -> Vec<u8> {
        let file = std::fs::read(&self.at.file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.at.file.display()));
        let stored = file.get(self.at.range.clone()).unwrap_or_else(|| {
            panic!(
                "{} is shorter than {:?}",
                self.at.file.display(),
                self.at.range
            )
        });
        let chunk = netwatch_transfer::ChunkRef {
            id: netwatch_transfer::Digest::parse(netwatch_transfer::Algorithm::Blake3, id)
                .expect("a chunk id"),
            offset: 0,
            size: self.size as u32,
            encoding: serde_json::from_value(Value::String(self.encoding.clone()))
                .expect("an encoding"),
            stored_size: stored.len() as u64,
            pack: None,
        };
        netwatch_transfer::decode(stored, &chunk).unwrap_or_else(|e| {
            panic!(
                "{} {:?}: corrupt data in the cache: {e}",
                self.at.file.display(),
                self.at.range
            )
        })
    }
}

/// The chunks a get cache holds, by id: for each manifest kept there, each chunk whose
/// stored bytes are in a range file of its pack (`<cache>/packs/<aa>/<pack>/<start>-<end>`),
/// or a format 1 chunk file (`<cache>/chunks/<aa>/<id>`, decoded).
pub fn cached_chunks(cache: &Path) -> BTreeMap<String, CachedChunk> {
    let mut found = BTreeMap::new();
    for path in files_under(&cache.join("manifests")) {
        // A get writes a manifest as `.NAME.tmp-PID-N` and renames it: while it runs, the
        // temporary may be half written. Only renamed manifests are the cache's.
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'))
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let manifest = StoredManifest::parse(&text, &path);
        for chunk in manifest.chunks {
            let at = match &chunk.pack {
                Some((pack, offset)) => {
                    let end = offset + chunk.stored_size;
                    let dir = cache.join("packs").join(&pack[..2]).join(pack);
                    let run = files_under(&dir).into_iter().find_map(|file| {
                        let name = file.file_name()?.to_str()?.to_string();
                        let (start, stop) = name.split_once('-')?;
                        let (start, stop): (u64, u64) = (start.parse().ok()?, stop.parse().ok()?);
                        (start <= *offset && end <= stop).then_some((file, start))
                    });
                    let decoded = cache.join("chunks").join(&chunk.id[..2]).join(&chunk.id);
                    match run {
                        Some((file, start)) => {
                            let from = (offset - start) as usize;
                            CachedChunk {
                                at: StoredAt {
                                    file,
                                    range: from..from + chunk.stored_size as usize,
                                },
                                encoding: chunk.encoding.clone(),
                                size: chunk.size,
                            }
                        }
                        // Fetched from another mirror's packs: kept decoded, by id.
                        None if decoded.is_file() => CachedChunk {
                            at: StoredAt {
                                file: decoded,
                                range: 0..chunk.size as usize,
                            },
                            encoding: "none".into(),
                            size: chunk.size,
                        },
                        None => continue,
                    }
                }
                None => {
                    let file = cache.join("chunks").join(&chunk.id[..2]).join(&chunk.id);
                    if !file.is_file() {
                        continue;
                    }
                    CachedChunk {
                        at: StoredAt {
                            file,
                            range: 0..chunk.size as usize,
                        },
                        encoding: "none".into(),
                        size: chunk.size,
                    }
                }
            };
            found.insert(chunk.id.clone(), at);
        }
    }
    seeded_chunks(cache, &mut found);
    found
}

/// Adds the chunks of the outputs linked into the cache as seeds
/// (`<cache>/seeds/<key hash>/<name>` beside `<name>.json`, its manifest) that lie wholly in
/// what the output has written: a get that is running or was killed leaves holes where
/// chunks have not arrived, which the file system reports (SEEK_DATA).
fn seeded_chunks(cache: &Path, found: &mut BTreeMap<String, CachedChunk>) {
    for json in files_under(&cache.join("seeds")) {
        let Some(data) = json
            .to_str()
            .and_then(|p| p.strip_suffix(".json"))
            .map(PathBuf::from)
        else {
            continue;
        };
        let (Ok(text), Ok(file)) = (std::fs::read_to_string(&json), std::fs::File::open(&data))
        else {
            continue;
        };
        let written = data_ranges(&file);
        for chunk in StoredManifest::parse(&text, &json).chunks {
            let range = chunk.offset..chunk.offset + chunk.size;
            if written
                .iter()
                .any(|w| w.start <= range.start && range.end <= w.end)
            {
                found.entry(chunk.id.clone()).or_insert(CachedChunk {
                    at: StoredAt {
                        file: data.clone(),
                        range: range.start as usize..range.end as usize,
                    },
                    encoding: "none".into(),
                    size: chunk.size,
                });
            }
        }
    }
}

/// The ranges of `file` holding data, not holes.
fn data_ranges(file: &std::fs::File) -> Vec<std::ops::Range<u64>> {
    use std::os::fd::AsRawFd as _;
    let mut ranges = Vec::new();
    let mut at = 0;
    loop {
        // SAFETY: lseek on a descriptor borrowed for the call; no memory is passed.
        let start = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
        // SAFETY: as above.
        let end = unsafe { libc::lseek(file.as_raw_fd(), start.max(0), libc::SEEK_HOLE) };
        if start < 0 || end <= start {
            return ranges;
        }
        ranges.push(start as u64..end as u64);
        at = end;
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
