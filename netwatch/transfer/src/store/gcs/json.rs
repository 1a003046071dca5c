//! Google Cloud Storage through its JSON API (`/storage/v1`, uploads at `/upload/storage/v1`),
//! the API `gcloud storage` and Google's own client libraries use. object_store's GCS client
//! speaks the XML API, which no emulator in the package registries serves (fake-gcs-server
//! refuses its PUT), so netwatch could not test it; this one is tested against
//! fake-gcs-server. The credentials still come from object_store (service account or
//! authorized user, OAuth tokens refreshed as they expire).

use std::{fmt, ops::Range, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream, stream::BoxStream, StreamExt, TryStreamExt};
use netwatch_client::retry::HttpStatus;
use object_store::{
    gcp::GcpCredentialProvider, path::Path, CopyOptions, Error, GetOptions, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use crate::store::own;

/// The store name in object_store's generic errors.
const STORE: &str = "GCS";
/// Google's endpoint, when the credentials file names no other (`gcs_base_url`).
pub(crate) const DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

/// A bucket, reached through the JSON API.
#[derive(Clone)]
pub struct GcsJsonStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    /// Without a trailing `/`.
    base_url: String,
    bucket: String,
    credentials: GcpCredentialProvider,
}

/// An object's metadata as the JSON API gives it.
#[derive(Deserialize)]
struct Object {
    name: String,
    /// A decimal string, as JSON API's uint64 fields are.
    size: String,
    updated: Option<String>,
    etag: Option<String>,
    generation: Option<String>,
}

/// One page of a listing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

/// A failed request: the status (for retry's classification) and what the server said.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {body}")]
struct Refused {
    #[source]
    status: HttpStatus,
    body: String,
}

impl GcsJsonStore {
    pub fn new(base_url: &str, bucket: &str, credentials: GcpCredentialProvider) -> Result<Self> {
        // Bounded connects and reads, as object_store's clients have; a whole request is
        // not bounded (a pack on a slow link takes what it takes).
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                base_url: base_url.trim_end_matches('/').to_string(),
                bucket: bucket.to_string(),
                credentials,
            }),
        })
    }

    /// `{base}/storage/v1/b/{bucket}/o{rest}`.
    fn objects_url(&self, rest: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o{rest}",
            self.inner.base_url,
            encode(&self.inner.bucket)
        )
    }

    fn object_url(&self, location: &Path) -> String {
        self.objects_url(&format!("/{}", encode(location.as_ref())))
    }

    /// A request with the current OAuth token (none when the credentials disable OAuth, as
    /// an emulator's do).
    async fn request(&self, method: Method, url: &str) -> Result<RequestBuilder> {
        let credential = self.inner.credentials.get_credential().await?;
        let request = self.inner.client.request(method, url);
        Ok(match credential.bearer.as_str() {
            "" => request,
            token => request.bearer_auth(token),
        })
    }

    /// Sends `request`; a status other than success becomes the error it stands for.
    async fn send(&self, request: RequestBuilder, path: &str) -> Result<Response> {
        let response = request.send().await.map_err(|e| Error::Generic {
            store: STORE,
            source: Box::new(e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let refused = Box::new(Refused {
            status: HttpStatus::new(status.as_u16()),
            body: body.split_whitespace().collect::<Vec<_>>().join(" "),
        });
        let path = path.to_string();
        Err(match status {
            StatusCode::NOT_FOUND => Error::NotFound {
                path,
                source: refused,
            },
            StatusCode::UNAUTHORIZED => Error::Unauthenticated {
                path,
                source: refused,
            },
            StatusCode::FORBIDDEN => Error::PermissionDenied {
                path,
                source: refused,
            },
            _ => Error::Generic {
                store: STORE,
                source: refused,
            },
        })
    }

    async fn metadata(&self, location: &Path) -> Result<ObjectMeta> {
        let request = self
            .request(Method::GET, &self.object_url(location))
            .await?;
        let response = self.send(request, location.as_ref()).await?;
        let object: Object = json(response).await?;
        meta(object)
    }

    /// Every page of `GET /o?prefix=...`, with `/` as delimiter when asked.
    async fn list_pages(&self, prefix: Option<&Path>, delimited: bool) -> Result<Vec<Page>> {
        let prefix = prefix.map_or(String::new(), |p| format!("{p}/"));
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!("?prefix={}", encode(&prefix));
            if delimited {
                query.push_str("&delimiter=%2F");
            }
            if let Some(token) = &token {
                query.push_str(&format!("&pageToken={}", encode(token)));
            }
            let request = self.request(Method::GET, &self.objects_url(&query)).await?;
            let page: Page = json(self.send(request, &prefix).await?).await?;
            let next = page.next_page_token.clone().filter(|t| !t.is_empty());
            // A server that hands back the token it was given would be listed for ever.
            if next.is_some() && next == token {
                return Err(Error::Generic {
                    store: STORE,
                    source: format!("listing {prefix}: the server gave the same page token twice")
                        .into(),
                });
            }
            token = next;
            pages.push(page);
            if token.is_none() {
                return Ok(pages);
            }
        }
    }
}

/// A path segment or query value with everything but RFC 3986's unreserved characters
/// percent-encoded (`/` too: an object's name is one segment of the URL).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T> {
    let body = response.bytes().await.map_err(|e| Error::Generic {
        store: STORE,
        source: Box::new(e),
    })?;
    serde_json::from_slice(&body).map_err(|e| Error::Generic {
        store: STORE,
        source: format!("the server's answer is not the JSON API's: {e}").into(),
    })
}

/// The bytes a media download carries and the object's size: from `Content-Range` on a 206,
/// from `Content-Length` on a 200 (the whole object, also when a range was asked and
/// ignored: the caller sees the range it got).
fn served(response: &Response) -> Option<(Range<u64>, u64)> {
    let header = |name| response.headers().get(name)?.to_str().ok();
    if response.status() == StatusCode::PARTIAL_CONTENT {
        let (span, size) = header(reqwest::header::CONTENT_RANGE)?
            .strip_prefix("bytes ")?
            .split_once('/')?;
        let (start, end) = span.split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        return Some((start..end.checked_add(1)?, size.parse().ok()?));
    }
    let size: u64 = header(reqwest::header::CONTENT_LENGTH)?.parse().ok()?;
    Some((0..size, size))
}

fn meta(object: Object) -> Result<ObjectMeta> {
    let invalid = |what: String| Error::Generic {
        store: STORE,
        source: what.into(),
    };
    let size = object.size.parse().map_err(|_| {
        invalid(format!(
            "{}: size `{}` is no number",
            object.name, object.size
        ))
    })?;
    let last_modified = match &object.updated {
        Some(text) => humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
            .map_err(|_| invalid(format!("{}: updated `{text}` is no time", object.name)))?,
        None => SystemTime::UNIX_EPOCH,
    };
    Ok(ObjectMeta {
        location: Path::parse(&object.name)
            .map_err(|_| invalid(format!("`{}` is no object path", object.name)))?,
        last_modified: last_modified.into(),
        size,
        e_tag: object.etag,
        version: object.generation,
    })
}

#[async_trait]
impl ObjectStore for GcsJsonStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return Err(own::not_implemented("a conditional put", STORE));
        }
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.inner.base_url,
            encode(&self.inner.bucket),
            encode(location.as_ref())
        );
        let length = payload.content_length();
        let parts: Vec<Bytes> = payload.into_iter().collect();
        let body = reqwest::Body::wrap_stream(stream::iter(
            parts.into_iter().map(Ok::<_, std::convert::Infallible>),
        ));
        let request = self
            .request(Method::POST, &url)
            .await?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let object: Object = json(self.send(request, location.as_ref()).await?).await?;
        Ok(PutResult {
            e_tag: object.etag,
            version: object.generation,
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
        if options.head {
            let meta = self.metadata(location).await?;
            return Ok(own::head(meta));
        }
        // One request: the media download's headers say the size (Content-Range or
        // Content-Length) and the time, as Google's servers and fake-gcs-server send them.
        let url = format!("{}?alt=media", self.object_url(location));
        let mut request = self.request(Method::GET, &url).await?;
        if let Some(range) = &options.range {
            range.is_valid().map_err(|e| Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?;
            request = request.header(reqwest::header::RANGE, range.to_string());
        }
        let response = self.send(request, location.as_ref()).await?;
        let (range, size) = served(&response).ok_or_else(|| Error::Generic {
            store: STORE,
            source: format!(
                "{location}: the answer ({}) says neither Content-Range nor Content-Length",
                response.status()
            )
            .into(),
        })?;
        let last_modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: last_modified.into(),
            size,
            e_tag: header("etag"),
            version: header("x-goog-generation"),
        };
        let payload = response
            .bytes_stream()
            .map_err(|e| Error::Generic {
                store: STORE,
                source: Box::new(e),
            })
            .boxed();
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
                    let request = this
                        .request(Method::DELETE, &this.object_url(&location))
                        .await?;
                    this.send(request, location.as_ref()).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let this = self.clone();
        let prefix = prefix.cloned();
        stream::once(async move { this.list_pages(prefix.as_ref(), false).await })
            .map_ok(|pages| stream::iter(pages.into_iter().flat_map(|page| page.items).map(meta)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
            extensions: Default::default(),
        };
        for page in self.list_pages(prefix, true).await? {
            for object in page.items {
                listed.objects.push(meta(object)?);
            }
            for common in page.prefixes {
                if let Ok(path) = Path::parse(common.trim_end_matches('/')) {
                    listed.common_prefixes.push(path);
                }
            }
        }
        Ok(listed)
    }

    async fn copy_opts(&self, _from: &Path, _to: &Path, _options: CopyOptions) -> Result<()> {
        Err(own::not_implemented("copy", STORE))
    }
}

impl fmt::Display for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GcsJsonStore({}, {})",
            self.inner.base_url, self.inner.bucket
        )
    }
}

impl fmt::Debug for GcsJsonStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_one_url_segment() {
        assert_eq!(encode("packs/ab/c+d.pack"), "packs%2Fab%2Fc%2Bd.pack");
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn the_json_apis_metadata_becomes_object_meta() {
        let object = Object {
            name: "manifests/k.json".into(),
            size: "42".into(),
            updated: Some("2026-12-07T10:00:00.123Z".into()),
            etag: Some("CJ".into()),
            generation: Some("7".into()),
        };
        let meta = meta(object).unwrap();
        assert_eq!(meta.size, 42);
        assert_eq!(meta.location.as_ref(), "manifests/k.json");
        assert_eq!(meta.version.as_deref(), Some("7"));
    }
}
