//! One mirror's objects, through object_store whatever the URL: `file://` (LocalFileSystem),
//! `s3://` (AmazonS3), `az://` (MicrosoftAzure), `gs://` (our [`gcs::json::GcsJsonStore`]
//! with object_store's Google credentials) and
//! `http(s)://` (HttpStore, WebDAV-style), and `sftp://` (our own [`sftp::SftpStore`] over
//! the system's `ssh`). The layout under the URL:
//!
//! ```text
//! manifests/<key>.json          one per artifact, written after its chunks
//! packs/<aa>/<pack>.pack        stored chunks back to back (format 2); <aa> the id's first two hex digits
//! chunks/<aa>/<id>[.zst|.gz]    format 1: one object per chunk, named by its SHA-256
//! probe/bandwidth.bin           what a ranged read times to measure bandwidth (`put` writes it)
//! buildcache/v1/<aa>/<id>       the build cache server's entries (netwatch-buildcache)
//! ```
//!
//! object_store's own retries are off: `netwatch_client::retry` decides, knowing the network.

pub mod aws;
pub mod azure;
pub mod gcs;
mod own;
pub mod sftp;
pub mod url;

use std::{
    fmt,
    future::Future,
    ops::Range,
    path::PathBuf,
    sync::{Arc, Once},
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use object_store::{
    http::HttpBuilder, local::LocalFileSystem, path::Path, prefix::PrefixStore, ClientOptions,
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tokio::time::Instant;

use url::MirrorUrl;

use crate::{
    compress::Encoding,
    digest::Digest,
    key::ArtifactKey,
    manifest::{ChunkRef, MAX_MANIFEST_BYTES, MAX_STORED_CHUNK},
    pack::{PackId, MAX_PACK_OFFSET},
};

/// What a transfer will do with a mirror: a reader never creates anything on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A mirror, opened.
#[derive(Clone)]
pub struct MirrorStore {
    name: String,
    url: MirrorUrl,
    pub(super) store: Arc<dyn ObjectStore>,
    /// The `[[endpoint]]` whose verdict is this mirror's health, if any.
    endpoint: Option<String>,
}

/// What went wrong with a mirror. Each names the mirror.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A `file://` mirror whose directory is not there (reading never creates it).
    #[error("mirror `{mirror}` ({url}): the directory {} does not exist: check the URL, or put an artifact there first", path.display())]
    MissingDirectory {
        mirror: String,
        url: String,
        path: PathBuf,
    },
    /// No AWS credentials in the environment or the shared credentials file.
    #[error(
        "mirror `{mirror}` ({url}): no AWS credentials: looked at {looked}, and {} has no \
         profile `{profile}` with aws_access_key_id and aws_secret_access_key; set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for a server \
         other than AWS), or AWS_PROFILE",
        file.display(),
        looked = aws::LOOKED
    )]
    MissingCredentials {
        mirror: String,
        url: String,
        profile: String,
        file: PathBuf,
    },
    /// One half of a key pair in the environment.
    #[error("mirror `{mirror}` ({url}): {set} is set but {unset} is not: set both, or neither")]
    HalfCredentials {
        mirror: String,
        url: String,
        set: &'static str,
        unset: &'static str,
    },
    /// No Azure account and credential in the environment.
    #[error("mirror `{mirror}` ({url}): no Azure Storage credentials: looked at {looked}; set one of them (for Azurite: AZURE_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true)", looked = azure::LOOKED)]
    MissingAzureCredentials { mirror: String, url: String },
    /// Part of an Azure account in the environment, or a connection string missing a part.
    #[error("mirror `{mirror}` ({url}): {problem}")]
    PartialAzureCredentials {
        mirror: String,
        url: String,
        problem: String,
    },
    /// No Google credentials in the environment.
    #[error("mirror `{mirror}` ({url}): no Google Cloud credentials: set {looked}", looked = gcs::LOOKED)]
    MissingGcsCredentials { mirror: String, url: String },
    /// The credentials file named cannot be used.
    #[error("mirror `{mirror}` ({url}): GOOGLE_APPLICATION_CREDENTIALS names {}: {reason}", path.display())]
    UnreadableGcsCredentials {
        mirror: String,
        url: String,
        path: PathBuf,
        reason: String,
    },
    /// object_store refused the settings (a bad endpoint URL, an unknown region...).
    #[error("mirror `{mirror}` ({url}): cannot set up its client: {source}")]
    Open {
        mirror: String,
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// A request failed: the mirror's answer, or why there was none. The message spells out
    /// the whole chain of causes (object_store's own messages stop at "error sending
    /// request"); `source()` still gives it, for retry's classification.
    #[error(
        "mirror `{mirror}`: {operation} {path}: {}{}",
        causes(source),
        hint(source)
    )]
    Request {
        mirror: String,
        operation: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    /// A ranged read answered with more bytes than the range asked for: the server ignores
    /// `Range`. Reading stopped there.
    #[error(
        "mirror `{mirror}`: GET {path} with Range: bytes={}-{}: the server answered with more \
         than the {} bytes asked for: it ignores Range, which netwatch needs to read packs \
         and measure bandwidth",
        range.start,
        range.end - 1,
        range.end - range.start
    )]
    RangeIgnored {
        mirror: String,
        path: String,
        range: Range<u64>,
    },
    /// A ranged read ended before the range did.
    #[error(
        "mirror `{mirror}`: GET {path} with Range: bytes={}-{}: the body ended after {got} of \
         the {} bytes asked for",
        range.start,
        range.end - 1,
        range.end - range.start
    )]
    ShortRange {
        mirror: String,
        path: String,
        range: Range<u64>,
        got: u64,
    },
    /// An object larger than anything netwatch stores under that name.
    #[error(
        "mirror `{mirror}`: {path} is {size} bytes, more than the {limit} such an object may have"
    )]
    TooLarge {
        mirror: String,
        path: String,
        size: u64,
        limit: u64,
    },
}

impl StoreError {
    /// The object is not on the mirror (404, or no such file).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Request { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// The mirror answered, refusing (not found, forbidden, a bad object): another mirror may
    /// serve, this one will not on a retry. Everything else is taken for the network's fault.
    pub fn is_mirror_fault(&self) -> bool {
        use object_store::Error as E;
        match self {
            Self::Request { source, .. } => match source.as_ref() {
                E::NotFound { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::InvalidPath { .. }
                | E::NotSupported { .. }
                | E::NotImplemented { .. }
                | E::Precondition { .. } => true,
                other => {
                    netwatch_client::retry::classify(other)
                        == netwatch_client::retry::ErrorClass::Permanent
                }
            },
            _ => true,
        }
    }
}

/// What to do about the errors each backend's users meet most, recognised by the code the
/// server sent.
fn hint(error: &object_store::Error) -> &'static str {
    let text = causes(error);
    let has = |code: &str| text.contains(code);
    if has("ContainerNotFound") {
        " (the container does not exist: create it, or fix the mirror's URL)"
    } else if has("NoSuchBucket") || has("specified bucket does not exist") {
        " (the bucket does not exist: create it, or fix the mirror's URL)"
    } else if has("AuthenticationFailed") || has("AuthorizationFailure") {
        " (Azure refused the credentials: check the account key or SAS token, and that it \
         allows this container)"
    } else if has("does not have storage.") {
        " (Google refused the account: give it a role that may read and write this bucket's \
         objects, such as Storage Object Admin)"
    } else if has("SignatureDoesNotMatch") || has("InvalidAccessKeyId") {
        " (S3 refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    } else {
        ""
    }
}

/// An error and its sources on one line, each cause said once; a server's multi-line body
/// (an XML error document) is folded onto it.
fn causes(error: &object_store::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The object path of an artifact's manifest.
pub fn manifest_path(key: &ArtifactKey) -> String {
    format!("manifests/{key}.json")
}

/// The object path of a chunk stored with `encoding`.
pub fn chunk_path(id: Digest, encoding: Encoding) -> String {
    let hex = id.to_hex();
    format!("chunks/{}/{hex}{}", &hex[..2], encoding.suffix())
}

/// An object a listing found.
pub(crate) struct StoredObject {
    pub path: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The object path of a pack.
pub fn pack_path(id: PackId) -> String {
    let hex = id.to_string();
    format!("packs/{}/{hex}.pack", &hex[..2])
}

/// A path made only from checked keys and hex ids, so it always parses.
fn object(path: &str) -> Path {
    Path::from(path)
}

/// `store`, under `prefix` if there is one.
fn prefixed(store: impl ObjectStore, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// A local file's `range`, handed to `each` a MiB at a time through one buffer: its stream
/// would hand it over a few KiB at a time, each a wake-up of another thread, and reading it
/// whole would fault in a buffer the range's size. Returns the bytes read (fewer at the end
/// of the file). Each read is made on a blocking thread: a mirror on a network file system
/// that hangs must not hold an async thread, or the stall limit could not leave it.
async fn read_local_range(
    file: Arc<std::fs::File>,
    range: Range<u64>,
    each: &mut impl FnMut(&[u8]),
) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    const PIECE: u64 = 1 << 20;
    let mut buffer = vec![0u8; PIECE.min(range.end - range.start) as usize];
    let mut at = range.start;
    while at < range.end {
        let want = (range.end - at).min(PIECE) as usize;
        let file = Arc::clone(&file);
        let (back, read) = tokio::task::spawn_blocking(move || {
            let read = file.read_at(&mut buffer[..want], at);
            (buffer, read)
        })
        .await
        .expect("reading a file does not panic");
        buffer = back;
        let read = read?;
        if read == 0 {
            break;
        }
        each(&buffer[..read]);
        at += read as u64;
    }
    Ok(at - range.start)
}

impl MirrorStore {
    /// Opens the mirror at `url`. Nothing is sent yet; a `file://` directory is created for
    /// writing and must exist for reading.
    pub fn open(name: &str, url: &MirrorUrl, access: Access) -> Result<Self, StoreError> {
        let mirror = name.to_string();
        let shown = url.to_string();
        let open_error = |source| StoreError::Open {
            mirror: mirror.clone(),
            url: shown.clone(),
            source,
        };
        // netwatch retries, knowing the network; object_store retrying too would burn the
        // attempts and time while it is Down.
        let no_retries = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store: Arc<dyn ObjectStore> = match url {
            MirrorUrl::File { path } => {
                if access == Access::Write {
                    std::fs::create_dir_all(path).map_err(|e| {
                        open_error(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })
                    })?;
                } else if !path.is_dir() {
                    return Err(StoreError::MissingDirectory {
                        mirror,
                        url: shown,
                        path: path.clone(),
                    });
                }
                Arc::new(LocalFileSystem::new_with_prefix(path).map_err(open_error)?)
            }
            MirrorUrl::S3 { bucket, prefix } => {
                install_tls_provider();
                let builder = aws::builder(bucket).map_err(|missing| match missing {
                    aws::Missing::Credentials { profile, file } => StoreError::MissingCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                        profile,
                        file,
                    },
                    aws::Missing::Half { set, unset } => StoreError::HalfCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                        set,
                        unset,
                    },
                })?;
                let s3 = builder.with_retry(no_retries).build().map_err(open_error)?;
                prefixed(s3, prefix)
            }
            MirrorUrl::Azure {
                account,
                container,
                prefix,
            } => {
                install_tls_provider();
                let builder = azure::builder(container, account.as_deref()).map_err(|missing| match missing {
                    azure::Missing::Credentials => StoreError::MissingAzureCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                    },
                    azure::Missing::Half { set, unset } => StoreError::PartialAzureCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                        problem: format!("{set} is set but {unset} is not: set both, or use AZURE_STORAGE_CONNECTION_STRING"),
                    },
                    azure::Missing::OtherAccount { named, given } => StoreError::PartialAzureCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                        problem: format!("the URL names the storage account `{named}`, but the credentials in the environment are for `{given}`: give that account's key, SAS or connection string"),
                    },
                    azure::Missing::ConnectionString { lacks } => StoreError::PartialAzureCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                        problem: format!("AZURE_STORAGE_CONNECTION_STRING has no {lacks}: copy the whole string from the storage account's \"Access keys\""),
                    },
                })?;
                let azure = builder.with_retry(no_retries).build().map_err(open_error)?;
                prefixed(azure, prefix)
            }
            MirrorUrl::Gcs { bucket, prefix } => {
                install_tls_provider();
                let settings = gcs::settings(bucket).map_err(|missing| match missing {
                    gcs::Missing::Credentials => StoreError::MissingGcsCredentials {
                        mirror: mirror.clone(),
                        url: shown.clone(),
                    },
                    gcs::Missing::Unreadable { path, reason } => {
                        StoreError::UnreadableGcsCredentials {
                            mirror: mirror.clone(),
                            url: shown.clone(),
                            path,
                            reason,
                        }
                    }
                })?;
                // object_store's client for the credentials; requests through the JSON API.
                let credentials = settings
                    .builder
                    .with_retry(no_retries)
                    .build()
                    .map_err(open_error)?
                    .credentials()
                    .clone();
                let gcs = gcs::json::GcsJsonStore::new(&settings.base_url, bucket, credentials)
                    .map_err(open_error)?;
                prefixed(gcs, prefix)
            }
            MirrorUrl::Sftp {
                user,
                host,
                port,
                path,
            } => Arc::new(sftp::SftpStore::new(
                sftp::session::Destination {
                    user: user.clone(),
                    host: host.clone(),
                    port: *port,
                },
                path,
            )),
            MirrorUrl::Http { url } => {
                install_tls_provider();
                let options = ClientOptions::new().with_allow_http(url.starts_with("http://"));
                Arc::new(
                    HttpBuilder::new()
                        .with_url(url)
                        .with_client_options(options)
                        .with_retry(no_retries)
                        .build()
                        .map_err(open_error)?,
                )
            }
        };
        Ok(Self {
            name: mirror,
            url: url.clone(),
            store,
            endpoint: None,
        })
    }

    /// Links the mirror to the `[[endpoint]]` whose verdict is its health.
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `[[endpoint]]` whose verdict is this mirror's health, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub fn url(&self) -> &MirrorUrl {
        &self.url
    }

    fn request_error(
        &self,
        operation: &'static str,
        path: &str,
    ) -> impl FnOnce(object_store::Error) -> StoreError + '_ {
        let path = path.to_string();
        move |source| StoreError::Request {
            mirror: self.name.clone(),
            operation,
            path,
            source: Box::new(source),
        }
    }

    /// Reads an object of at most `limit` bytes.
    async fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_object_within(path, limit, |_| async {}).await?.0)
    }

    /// Reads an object of at most `limit` bytes, awaiting `room(size)` once its size is known
    /// and before its body is read: what `room` returns (a share of a memory budget) is
    /// handed back with the bytes, so that a server holding many objects at once (the build
    /// cache) makes each wait for its share. A body longer than the size the mirror gave is
    /// refused.
    pub async fn read_object_within<R, Room: Future<Output = R>>(
        &self,
        path: &str,
        limit: u64,
        room: impl FnOnce(u64) -> Room,
    ) -> Result<(Vec<u8>, R), StoreError> {
        let result = self
            .store
            .get(&object(path))
            .await
            .map_err(self.request_error("GET", path))?;
        let size = result.meta.size;
        let too_large = |size| StoreError::TooLarge {
            mirror: self.name.clone(),
            path: path.to_string(),
            size,
            limit,
        };
        if size > limit {
            return Err(too_large(size));
        }
        let held = room(size).await;
        let body = result
            .bytes()
            .await
            .map_err(self.request_error("GET", path))?;
        if body.len() as u64 > size {
            return Err(too_large(body.len() as u64));
        }
        // Without a copy where the body is one buffer: a manifest may be hundreds of MB.
        Ok((Vec::from(body), held))
    }

    /// Writes an object whole, in one request: readers see the old one or the new.
    async fn write(&self, path: &str, data: impl Into<PutPayload>) -> Result<(), StoreError> {
        self.store
            .put(&object(path), data.into())
            .await
            .map_err(self.request_error("PUT", path))?;
        Ok(())
    }

    /// An object named by another layer (the build cache's entries), of at most `limit`
    /// bytes, unchecked: its reader checks it.
    pub async fn read_object(&self, path: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        self.read(path, limit).await
    }

    /// Writes an object named by another layer whole: readers see the old one or the new.
    pub async fn write_object(&self, path: &str, data: bytes::Bytes) -> Result<(), StoreError> {
        self.write(path, data).await
    }

    /// The manifest's bytes, unchecked.
    pub async fn get_manifest(&self, key: &ArtifactKey) -> Result<Vec<u8>, StoreError> {
        self.read(&manifest_path(key), MAX_MANIFEST_BYTES).await
    }

    /// Writes a manifest; object stores replace an object whole, so readers see the old one
    /// or the new one.
    pub async fn put_manifest(&self, key: &ArtifactKey, json: Vec<u8>) -> Result<(), StoreError> {
        self.write(&manifest_path(key), json).await
    }

    /// A chunk's stored bytes, unchecked (`compress::decode` checks them).
    pub async fn get_chunk(&self, chunk: &ChunkRef) -> Result<Vec<u8>, StoreError> {
        self.read(&chunk_path(chunk.id, chunk.encoding), MAX_STORED_CHUNK)
            .await
    }

    /// Like [`MirrorStore::get_chunk`], but a chunk this mirror stored in another encoding
    /// than the manifest's (put and sync choose per mirror) is found too. Returns the chunk
    /// as this mirror stores it: its stored size is then the body's, and the decoded size
    /// and digest still check it.
    pub async fn get_chunk_as_stored(
        &self,
        chunk: &ChunkRef,
    ) -> Result<(Vec<u8>, ChunkRef), StoreError> {
        let first = match self.get_chunk(chunk).await {
            Ok(stored) => return Ok((stored, chunk.clone())),
            Err(error) if error.is_not_found() => error,
            Err(error) => return Err(error),
        };
        for encoding in Encoding::ALL.into_iter().filter(|e| *e != chunk.encoding) {
            match self
                .read(&chunk_path(chunk.id, encoding), MAX_STORED_CHUNK)
                .await
            {
                Ok(stored) => {
                    let as_stored = ChunkRef {
                        encoding,
                        stored_size: stored.len() as u64,
                        ..chunk.clone()
                    };
                    return Ok((stored, as_stored));
                }
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Err(first)
    }

    pub async fn put_chunk(
        &self,
        id: Digest,
        encoding: Encoding,
        stored: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.write(&chunk_path(id, encoding), stored).await
    }

    /// Uploads a whole pack in one request: a multipart upload would take at least three for
    /// what one PUT carries (S3 takes up to 5 GB in one), and requests are what a far mirror
    /// and an object store's bill count.
    pub async fn put_pack(&self, id: PackId, data: PutPayload) -> Result<(), StoreError> {
        self.write(&pack_path(id), data).await
    }

    /// Whether the mirror has the pack: one HEAD.
    pub async fn has_pack(&self, id: PackId) -> Result<bool, StoreError> {
        let path = pack_path(id);
        match self.store.head(&object(&path)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(self.request_error("HEAD", &path)(source)),
        }
    }

    /// A whole pack, for copying to another mirror.
    pub async fn get_pack(&self, id: PackId) -> Result<Vec<u8>, StoreError> {
        self.read(&pack_path(id), MAX_PACK_OFFSET + MAX_STORED_CHUNK)
            .await
    }

    /// Bytes `range` of a pack, exactly, handed to `each` piece by piece as they arrive. A
    /// server that ignores `Range` (answers 200) is asked for the whole pack instead, with a
    /// warning: it works, at the cost of reading the pack once per range. More or fewer bytes
    /// than asked is an error (never more is read than asked).
    pub async fn read_pack_range(
        &self,
        id: PackId,
        range: Range<u64>,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        match self.read_exact_range(id, range.clone(), &mut each).await {
            Err(StoreError::RangeIgnored { .. }) => {
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(mirror = %self.name, "the mirror ignores Range: reading whole packs, once per range (slow for large artifacts; a server that honours Range avoids it)");
                }
                let whole = self.get_pack(id).await?;
                let (start, end) = (range.start as usize, range.end as usize);
                let part = whole
                    .get(start..end)
                    .ok_or_else(|| StoreError::ShortRange {
                        mirror: self.name.clone(),
                        path: pack_path(id),
                        range: range.clone(),
                        got: whole.len() as u64,
                    })?;
                each(part);
                Ok(())
            }
            other => other,
        }
    }

    async fn read_exact_range(
        &self,
        id: PackId,
        range: Range<u64>,
        each: &mut impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let path = pack_path(id);
        let asked = range.end - range.start;
        let ignored = || StoreError::RangeIgnored {
            mirror: self.name.clone(),
            path: path.clone(),
            range: range.clone(),
        };
        let short = |got| StoreError::ShortRange {
            mirror: self.name.clone(),
            path: path.clone(),
            range: range.clone(),
            got,
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&object(&path), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotSupported { .. }) => return Err(ignored()),
            Err(error) => return Err(self.request_error("GET", &path)(error)),
        };
        if result.range != range {
            return Err(ignored());
        }
        let mut stream = match result.payload {
            object_store::GetResultPayload::File(file, _) => {
                let got = read_local_range(Arc::new(file), range.clone(), each)
                    .await
                    .map_err(|source| {
                        self.request_error("GET", &path)(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(source),
                        })
                    })?;
                return if got < asked { Err(short(got)) } else { Ok(()) };
            }
            object_store::GetResultPayload::Stream(stream) => stream,
        };
        let mut got = 0u64;
        while let Some(next) = stream.next().await {
            let next = next.map_err(self.request_error("GET", &path))?;
            got += next.len() as u64;
            if got > asked {
                return Err(ignored());
            }
            each(&next);
        }
        if got < asked {
            return Err(short(got));
        }
        Ok(())
    }

    /// Every pack and format 1 chunk object, with its size and when it was written.
    pub(crate) async fn list_stored(&self) -> Result<Vec<StoredObject>, StoreError> {
        let mut found = Vec::new();
        for top in ["packs", "chunks"] {
            let listed: Result<Vec<_>, _> = self.store.list(Some(&object(top))).try_collect().await;
            match listed {
                Ok(metas) => found.extend(metas.into_iter().map(|meta| StoredObject {
                    path: meta.location.to_string(),
                    size: meta.size,
                    modified: meta.last_modified.into(),
                })),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.request_error("LIST", top)(source)),
            }
        }
        Ok(found)
    }

    /// Removes one object.
    pub(crate) async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match self.store.delete(&object(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.request_error("DELETE", path)(source)),
        }
    }

    /// The object path of the manifest written last directly in `manifests/<directory>` (not
    /// below it): one listing request.
    pub async fn newest_manifest_in(&self, directory: &str) -> Result<Option<String>, StoreError> {
        let prefix = match directory {
            "" => "manifests".to_string(),
            directory => format!("manifests/{directory}"),
        };
        match self.store.list_with_delimiter(Some(&object(&prefix))).await {
            Ok(listed) => Ok(listed
                .objects
                .into_iter()
                .filter(|meta| meta.location.as_ref().ends_with(".json"))
                .max_by_key(|meta| meta.last_modified)
                .map(|meta| meta.location.to_string())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.request_error("LIST", &prefix)(source)),
        }
    }

    /// Whether the mirror has chunk `id`, in `preferred` encoding or another, and its stored
    /// size: one HEAD request when it is stored as preferred.
    pub async fn find_chunk(
        &self,
        id: Digest,
        preferred: Encoding,
    ) -> Result<Option<(Encoding, u64)>, StoreError> {
        let order =
            std::iter::once(preferred).chain(Encoding::ALL.into_iter().filter(|e| *e != preferred));
        for encoding in order {
            let path = chunk_path(id, encoding);
            match self.store.head(&object(&path)).await {
                Ok(meta) if meta.size > 0 && meta.size <= MAX_STORED_CHUNK => {
                    return Ok(Some((encoding, meta.size)))
                }
                // An empty or oversized object is no usable chunk: put it again.
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.request_error("HEAD", &path)(source)),
            }
        }
        Ok(None)
    }

    /// The time a cheap request takes: a HEAD of an object that need not exist (not found
    /// is an answer too).
    pub async fn answer_time(&self) -> Result<Duration, StoreError> {
        const PROBE: &str = "manifests/.netwatch-probe";
        if matches!(self.url, MirrorUrl::Sftp { .. }) {
            // The first request starts the SSH session, which then serves the whole
            // transfer: its setup is no cost of each request.
            let _ = self.store.head(&object(PROBE)).await;
        }
        let started = Instant::now();
        match self.store.head(&object(PROBE)).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(started.elapsed()),
            Err(source) => Err(self.request_error("HEAD", PROBE)(source)),
        }
    }
}

/// The object a ranged read times, under every mirror's URL (its folder keeps the name it
/// had when measuring a mirror was called probing: mirrors already hold it there).
pub const BANDWIDTH_OBJECT: &str = "probe/bandwidth.bin";

/// What a bounded ranged read got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRead {
    /// The bytes received, from the range's start: all of it, or what came within the time.
    pub data: Vec<u8>,
    /// From the request to the answer's headers.
    pub first_byte: Duration,
    /// From the headers to the last byte received.
    pub body: Duration,
}

impl MirrorStore {
    /// The stored size of the bandwidth object, if it is there.
    pub async fn bandwidth_object_size(&self) -> Result<Option<u64>, StoreError> {
        match self.store.head(&object(BANDWIDTH_OBJECT)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.request_error("HEAD", BANDWIDTH_OBJECT)(source)),
        }
    }

    pub async fn put_bandwidth_object(&self, data: Vec<u8>) -> Result<(), StoreError> {
        self.write(BANDWIDTH_OBJECT, data).await
    }

    /// Reads `range` of the bandwidth object, stopping at `within` after the answer's headers
    /// with what has come by then. Never reads past the range: a server that sends more (it
    /// ignores `Range`) is an error, as is one that answers a ranged request with the whole
    /// object (object_store refuses a 200 to a ranged GET).
    pub async fn read_bandwidth_range(
        &self,
        range: Range<u64>,
        within: Duration,
    ) -> Result<RangeRead, StoreError> {
        let asked = range.end - range.start;
        let request_error = || self.request_error("GET", BANDWIDTH_OBJECT);
        let started = Instant::now();
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let ignored = || StoreError::RangeIgnored {
            mirror: self.name.clone(),
            path: BANDWIDTH_OBJECT.to_string(),
            range: range.clone(),
        };
        let result = match self
            .store
            .get_opts(&object(BANDWIDTH_OBJECT), options)
            .await
        {
            Ok(result) => result,
            // What HttpStore makes of a 200 to a ranged GET.
            Err(object_store::Error::NotSupported { .. }) => return Err(ignored()),
            Err(error) => return Err(request_error()(error)),
        };
        let first_byte = started.elapsed();
        if result.range.end.saturating_sub(result.range.start) > asked {
            return Err(ignored());
        }
        let body_started = Instant::now();
        let deadline = body_started + within;
        let mut stream = result.into_stream();
        let mut data = Vec::with_capacity(asked as usize);
        loop {
            let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(next)) => next.map_err(request_error())?,
            };
            if data.len() as u64 + next.len() as u64 > asked {
                return Err(ignored());
            }
            data.extend_from_slice(&next);
        }
        Ok(RangeRead {
            data,
            first_byte,
            body: body_started.elapsed(),
        })
    }
}

impl fmt::Debug for MirrorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MirrorStore")
            .field("name", &self.name)
            .field("url", &self.url.to_string())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// reqwest is built with rustls and no provider (to keep aws-lc-rs out of the build), so the
/// process installs ring's before the first TLS connection.
fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod message_tests {
    use super::*;

    fn generic(body: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: body.to_string().into(),
        }
    }

    #[test]
    fn a_servers_error_document_is_one_line_with_a_hint_for_the_usual_mistakes() {
        let error =
            generic("404 Not Found: <?xml?>\n<Error>\n  <Code>ContainerNotFound</Code>\n</Error>");
        assert!(!causes(&error).contains('\n'));
        assert!(hint(&error).contains("container does not exist"));
        assert!(hint(&generic("403: <Code>AuthorizationFailure</Code>")).contains("account key"));
        assert!(hint(&generic("404: The specified bucket does not exist.")).contains("bucket"));
        assert!(hint(&generic(
            "403: x@y.iam.gserviceaccount.com does not have storage.objects.create access"
        ))
        .contains("Storage Object Admin"));
        assert_eq!(hint(&generic("connection refused")), "");
    }
}

#[cfg(test)]
mod local_read_tests {
    use super::*;

    #[tokio::test]
    async fn a_local_range_is_read_in_pieces_and_a_short_file_gives_what_it_has() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let file = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &data, 0).unwrap();
        let file = Arc::new(file);
        let mut got = Vec::new();
        let mut pieces = 0;
        let read = read_local_range(Arc::clone(&file), 1000..2_500_000, &mut |piece: &[u8]| {
            pieces += 1;
            got.extend_from_slice(piece);
        })
        .await
        .unwrap();
        assert_eq!((read, pieces), (2_499_000, 3));
        assert_eq!(got, data[1000..2_500_000]);
        // Past the end: only what the file has, for the caller to call short.
        let read = read_local_range(file, 2_900_000..3_100_000, &mut |_: &[u8]| {})
            .await
            .unwrap();
        assert_eq!(read, 100_000);
    }
}
