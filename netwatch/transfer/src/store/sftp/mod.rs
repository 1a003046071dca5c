//! `sftp://[USER@]HOST[:PORT]/PATH`: a directory on an SSH server as an object store. Objects
//! are files under PATH named by their object paths. A write goes to a temporary file beside
//! its object and is renamed over it (OpenSSH's `posix-rename`), so readers see the old
//! object or the new, never part of one. Reads and writes are split into the server's largest
//! requests and several are in flight at once, so a far server is not paid one round trip per
//! request.

mod error;
pub mod session;

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{stream, stream::BoxStream, StreamExt, TryStreamExt};
use object_store::{
    path::Path, CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use openssh_sftp_client::{
    error::{Error as SftpError, SftpErrorKind},
    file::File,
    metadata::MetaData,
};
use tokio::io::AsyncSeekExt;

use crate::store::own;

use error::{request_failed, STORE};
use session::{Destination, Session, Sessions};

/// Requests of one read or write in flight at once: OpenSSH's requests carry up to 255 KiB,
/// so 16 cover a 100 Mbit/s link 300 ms away.
const IN_FLIGHT: usize = 16;
/// The bytes one request carries: OpenSSH's server takes and gives up to 255 KiB (its
/// `limits@openssh.com`); the client splits further for a server that says less.
const PIECE: u64 = 255 << 10;
/// Directories listed at once.
const LISTINGS_IN_FLIGHT: usize = 16;
/// What a temporary file's name ends with: never listed as an object.
const TEMPORARY: &str = ".netwatch-partial";

/// A directory on an SSH server, reached with the system's `ssh`.
#[derive(Clone)]
pub struct SftpStore {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Sessions,
    /// The directory's absolute path on the server, without a trailing `/`.
    root: String,
}

impl SftpStore {
    /// The store for `root` on `destination`; nothing is sent until the first request.
    pub fn new(destination: Destination, root: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: Sessions::new(destination),
                root: root.trim_end_matches('/').to_string(),
            }),
        }
    }

    /// The server's path of `location`, or of the root for an empty one.
    fn remote(&self, location: &str) -> String {
        match location {
            "" => self.inner.root.clone(),
            location => format!("{}/{location}", self.inner.root),
        }
    }

    async fn session(&self) -> Result<Arc<Session>> {
        self.inner.sessions.get().await
    }
}

/// `error` about `location`; anything but the server's answer means the session is lost.
fn failed(session: &Session, location: &str, error: SftpError) -> Error {
    if !matches!(error, SftpError::SftpError(..)) {
        session.lose();
    }
    request_failed(location, error)
}

fn modified(metadata: &MetaData) -> SystemTime {
    metadata
        .modified()
        .map_or(UNIX_EPOCH, |time| time.as_system_time())
}

fn meta(location: Path, metadata: &MetaData) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: modified(metadata).into(),
        size: metadata.len().unwrap_or(0),
        e_tag: None,
        version: None,
    }
}

fn is_file(metadata: &MetaData) -> bool {
    metadata.file_type().is_some_and(|t| t.is_file())
}

fn not_an_object(location: &str) -> Error {
    Error::NotFound {
        path: location.to_string(),
        source: "not a regular file on the server".into(),
    }
}

/// Bytes `range` of `file`, exactly: one request at a time may return less than asked. The
/// answers land in one buffer (the client appends to the one it is given), never copied.
async fn read_at(
    session: &Session,
    file: &mut File,
    location: &str,
    range: Range<u64>,
) -> Result<Bytes> {
    let wanted = (range.end - range.start) as usize;
    let mut got = BytesMut::with_capacity(wanted);
    file.seek(std::io::SeekFrom::Start(range.start))
        .await
        .map_err(|e| failed(session, location, e.into()))?;
    while got.len() < wanted {
        let before = got.len();
        let asked = (wanted - before) as u32;
        let short = |why: &str| Error::Generic {
            store: STORE,
            source: format!(
                "{location}: {why} at {} bytes, before the {} its size said",
                range.start + before as u64,
                range.end
            )
            .into(),
        };
        got = file
            .read(asked, got)
            .await
            .map_err(|e| failed(session, location, e))?
            .ok_or_else(|| short("it ended (it changed while being read)"))?;
        // A server that answers with nothing, again and again, is not waited on for ever.
        if got.len() == before {
            return Err(short("the server answered a read with no bytes"));
        }
    }
    Ok(got.freeze())
}

/// The pieces of `range` a request each, in order, several in flight.
fn read_pieces(
    session: Arc<Session>,
    file: File,
    location: String,
    range: Range<u64>,
) -> BoxStream<'static, Result<Bytes>> {
    let starts = (range.start..range.end).step_by(PIECE as usize);
    stream::iter(starts)
        .map(move |start| {
            let (session, mut file, location) = (session.clone(), file.clone(), location.clone());
            let end = (start + PIECE).min(range.end);
            async move { read_at(&session, &mut file, &location, start..end).await }
        })
        .buffered(IN_FLIGHT)
        .boxed()
}

/// Writes `payload` from offset 0, several requests in flight.
async fn write_all(
    session: &Session,
    file: &File,
    location: &str,
    payload: PutPayload,
) -> Result<()> {
    let piece = PIECE as usize;
    let mut pieces = Vec::new();
    let mut offset = 0u64;
    for part in payload.iter() {
        for start in (0..part.len()).step_by(piece) {
            let end = (start + piece).min(part.len());
            pieces.push((offset + start as u64, part.slice(start..end)));
        }
        offset += part.len() as u64;
    }
    stream::iter(pieces)
        .map(|(at, bytes)| {
            let mut file = file.clone();
            async move {
                file.seek(std::io::SeekFrom::Start(at))
                    .await
                    .map_err(|e| failed(session, location, e.into()))?;
                file.write_all(&bytes)
                    .await
                    .map_err(|e| failed(session, location, e))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
}

impl SftpStore {
    /// Creates `remote` for writing, making the directories above `location` when missing.
    async fn create(&self, session: &Session, location: &str, remote: &str) -> Result<File> {
        let mut options = session.sftp.options();
        options.write(true).create(true).truncate(true);
        let open = || options.open(remote);
        match open().await {
            Ok(file) => return Ok(file),
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => {}
            Err(error) => return Err(failed(session, location, error)),
        }
        // Each level that is missing, from the top; one that exists fails, which is fine.
        // If the create still finds no directory, the first refusal says why.
        let mut fs = session.sftp.fs();
        let parent = remote.rsplit_once('/').map_or("", |(parent, _)| parent);
        let mut made = String::new();
        let mut refused = None;
        for segment in parent.split('/').filter(|s| !s.is_empty()) {
            made.push('/');
            made.push_str(segment);
            match fs.create_dir(&made).await {
                Ok(()) => {}
                Err(SftpError::SftpError(SftpErrorKind::PermDenied, message)) => {
                    refused.get_or_insert(SftpError::SftpError(SftpErrorKind::PermDenied, message));
                }
                Err(SftpError::SftpError(..)) => {}
                Err(error) => return Err(failed(session, location, error)),
            }
        }
        match open().await {
            Ok(file) => Ok(file),
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) if refused.is_some() => {
                Err(failed(session, location, refused.expect("checked")))
            }
            Err(error) => Err(failed(session, location, error)),
        }
    }

    /// Every object below `prefix`, each directory level listed several at a time.
    async fn walk(&self, prefix: Option<Path>) -> Result<Vec<ObjectMeta>> {
        let session = self.session().await?;
        let mut found = Vec::new();
        let mut level = vec![prefix.map(|p| p.to_string()).unwrap_or_default()];
        while !level.is_empty() {
            let listed: Vec<Listing> = stream::iter(level)
                .map(|directory| self.list_directory(&session, directory))
                .buffer_unordered(LISTINGS_IN_FLIGHT)
                .try_collect()
                .await?;
            level = Vec::new();
            for listing in listed {
                found.extend(listing.objects);
                level.extend(listing.directories);
            }
        }
        Ok(found)
    }

    /// One directory's objects and subdirectories (as object paths); a missing directory
    /// holds nothing, as a prefix with no objects does on an object store.
    async fn list_directory(&self, session: &Session, directory: String) -> Result<Listing> {
        let remote = self.remote(&directory);
        let mut listing = Listing::default();
        let dir = match session.sftp.fs().open_dir(&remote).await {
            Ok(dir) => dir,
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => return Ok(listing),
            Err(error) => return Err(failed(session, &directory, error)),
        };
        let mut entries = std::pin::pin!(dir.read_dir());
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| failed(session, &directory, e))?;
            // A name that is no object path (not UTF-8, `.`, `..`, a temporary) is skipped;
            // but a temporary among the packs and chunk objects is listed, unnamed by any
            // manifest, so that `gc` removes a killed put's once it is past the grace period.
            let Some(name) = entry.filename().to_str() else {
                continue;
            };
            if name == "."
                || name == ".."
                || (name.ends_with(TEMPORARY) && !holds_stored(&directory))
            {
                continue;
            }
            let path = match directory.as_str() {
                "" => name.to_string(),
                directory => format!("{directory}/{name}"),
            };
            let Ok(location) = Path::parse(&path) else {
                continue;
            };
            let metadata = entry.metadata();
            match entry.file_type() {
                Some(t) if t.is_dir() => listing.directories.push(path),
                Some(t) if t.is_file() => listing.objects.push(meta(location, &metadata)),
                _ => {}
            }
        }
        Ok(listing)
    }
}

/// Whether `directory` is under `packs/` or `chunks/`, where only `gc` lists.
fn holds_stored(directory: &str) -> bool {
    ["packs", "chunks"]
        .iter()
        .any(|top| directory == *top || directory.starts_with(&format!("{top}/")))
}

#[derive(Default)]
struct Listing {
    objects: Vec<ObjectMeta>,
    directories: Vec<String>,
}

#[async_trait]
impl ObjectStore for SftpStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return Err(own::not_implemented("a conditional put", STORE));
        }
        let session = self.session().await?;
        let location = location.as_ref();
        let remote = self.remote(location);
        let temporary = format!("{remote}.{:016x}{TEMPORARY}", fastrand::u64(..));
        let file = self.create(&session, location, &temporary).await?;
        let written = async {
            write_all(&session, &file, location, payload).await?;
            file.close()
                .await
                .map_err(|e| failed(&session, location, e))?;
            session
                .sftp
                .fs()
                .rename(&temporary, &remote)
                .await
                .map_err(|e| failed(&session, location, e))
        }
        .await;
        if written.is_err() {
            // Best effort: a lost session leaves it, and listings skip it.
            let _ = session.sftp.fs().remove_file(&temporary).await;
        }
        written?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        _location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(own::not_implemented("multipart upload", STORE))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let session = self.session().await?;
        let name = location.as_ref();
        let remote = self.remote(name);
        if options.head {
            let metadata = session
                .sftp
                .fs()
                .metadata(&remote)
                .await
                .map_err(|e| failed(&session, name, e))?;
            if !is_file(&metadata) {
                return Err(not_an_object(name));
            }
            let meta = meta(location.clone(), &metadata);
            return Ok(own::head(meta));
        }
        let mut file = session
            .sftp
            .open(&remote)
            .await
            .map_err(|e| failed(&session, name, e))?;
        let metadata = file
            .metadata()
            .await
            .map_err(|e| failed(&session, name, e))?;
        if !is_file(&metadata) {
            return Err(not_an_object(name));
        }
        let meta = meta(location.clone(), &metadata);
        let range = match &options.range {
            Some(range) => range.as_range(meta.size).map_err(|e| Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?,
            None => 0..meta.size,
        };
        let payload = read_pieces(session, file, name.to_string(), range.clone());
        Ok(own::streamed(payload, meta, range))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .and_then(move |location| {
                let this = this.clone();
                async move {
                    let session = this.session().await?;
                    let name = location.as_ref();
                    session
                        .sftp
                        .fs()
                        .remove_file(this.remote(name))
                        .await
                        .map_err(|e| failed(&session, name, e))?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.cloned();
        stream::once(async move { this.walk(prefix).await })
            .map_ok(|found| stream::iter(found.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let session = self.session().await?;
        let directory = prefix.map(|p| p.to_string()).unwrap_or_default();
        let listing = self.list_directory(&session, directory).await?;
        Ok(ListResult {
            common_prefixes: listing
                .directories
                .iter()
                .filter_map(|d| Path::parse(d).ok())
                .collect(),
            objects: listing.objects,
            extensions: Default::default(),
        })
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> Result<()> {
        Err(own::not_implemented("copy", STORE))
    }
}

impl fmt::Display for SftpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let destination = self.inner.sessions.destination();
        write!(f, "sftp://{}{}", destination.shown(), self.inner.root)
    }
}

impl fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SftpStore({self})")
    }
}
