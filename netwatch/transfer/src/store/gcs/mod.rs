//! Google Cloud Storage settings from where Google's own tools look for them:
//! `GOOGLE_APPLICATION_CREDENTIALS`, a service account's key file or the file `gcloud auth
//! application-default login` writes. A service account file may name another server
//! (`gcs_base_url`, with `disable_oauth`: an emulator), as object_store reads it. No
//! metadata-server lookup: a host without credentials gets a clear error instead of requests
//! to an address that may not answer. Requests go through the JSON API ([`json`]).

pub mod json;

use std::{env, path::PathBuf};

use object_store::gcp::GoogleCloudStorageBuilder;

/// A bucket's client settings: object_store's builder (for the credentials) and the server.
pub(crate) struct Settings {
    pub builder: GoogleCloudStorageBuilder,
    /// `gcs_base_url` from a service account file, else Google's.
    pub base_url: String,
}

/// Where credentials were looked for, for the error that says none were found.
pub(crate) const LOOKED: &str = "GOOGLE_APPLICATION_CREDENTIALS (a service account key file, \
    or the file `gcloud auth application-default login` writes)";

/// Why no GCS client could be configured.
#[derive(Debug)]
pub(crate) enum Missing {
    Credentials,
    /// The file named cannot be read, or is not a credentials file.
    Unreadable {
        path: PathBuf,
        reason: String,
    },
}

/// A builder for `bucket` with the environment's credentials.
pub(crate) fn settings(bucket: &str) -> Result<Settings, Missing> {
    let path = env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    settings_with(bucket, path)
}

/// A builder for `bucket` with the credentials file at `path`.
fn settings_with(bucket: &str, path: Option<PathBuf>) -> Result<Settings, Missing> {
    let path = path.ok_or(Missing::Credentials)?;
    let unreadable = |reason: String| Missing::Unreadable {
        path: path.clone(),
        reason,
    };
    let text = read_regular(&path).map_err(unreadable)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| unreadable(format!("not JSON: {e}")))?;
    let builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
    let base_url = json["gcs_base_url"]
        .as_str()
        .unwrap_or(json::DEFAULT_BASE_URL)
        .to_string();
    let builder = match json["type"].as_str() {
        Some("service_account") => builder.with_service_account_path(path.display().to_string()),
        Some("authorized_user") => builder.with_application_credentials(path.display().to_string()),
        other => {
            return Err(unreadable(format!(
            "its \"type\" is {}, where netwatch reads \"service_account\" or \"authorized_user\"",
            other.map_or("missing".to_string(), |t| format!("\"{t}\""))
        )))
        }
    };
    Ok(Settings { builder, base_url })
}

/// Largest credentials file read: Google's are a few KiB.
const MAX_CREDENTIALS: u64 = 1 << 20;

/// The file at `path` if it is a regular file of at most [`MAX_CREDENTIALS`]: opened without
/// blocking, so a FIFO or device named by mistake is refused instead of waited on.
fn read_regular(path: &std::path::Path) -> Result<String, String> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    if meta.len() > MAX_CREDENTIALS {
        return Err(format!(
            "{} bytes, more than a credentials file has ({MAX_CREDENTIALS} at most)",
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(MAX_CREDENTIALS)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_is_needed_and_read_before_any_request() {
        assert!(matches!(
            settings_with("b", None),
            Err(Missing::Credentials)
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.json");
        assert!(matches!(
            settings_with("b", Some(missing)),
            Err(Missing::Unreadable { .. })
        ));
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"type": "external_account"}"#).unwrap();
        match settings_with("b", Some(other)) {
            Err(Missing::Unreadable { reason, .. }) => {
                assert!(reason.contains("\"external_account\""), "{reason}")
            }
            other => panic!("expected Unreadable, got {:?}", other.map(|_| ())),
        }
        let fifo = dir.path().join("fifo.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        match settings_with("b", Some(fifo)) {
            Err(Missing::Unreadable { reason, .. }) => {
                assert!(reason.contains("not a regular file"), "{reason}")
            }
            other => panic!("expected Unreadable, got {:?}", other.map(|_| ())),
        }
        let service = dir.path().join("service.json");
        std::fs::write(&service, r#"{"type": "service_account"}"#).unwrap();
        assert!(settings_with("b", Some(service)).is_ok());
    }
}
