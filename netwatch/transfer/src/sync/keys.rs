//! Which keys a sync covers: the prefix that limits them, and the manifests listed on a
//! mirror (object stores list by path; the keys are read back from the paths).

use std::str::FromStr;

use futures::TryStreamExt;
use object_store::path::Path;

use crate::{ArtifactKey, MirrorStore, StoreError};

/// The start of the keys a sync is limited to, like `builds/` or `builds/app-1.`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

/// A text no key can begin with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` cannot begin an artifact key: {problem}; keys are segments of letters, digits, `.`, `_`, `-` and `+` joined by `/`, and a prefix is the start of one, like \"builds/\" or \"builds/app-1.\"")]
pub struct PrefixError {
    pub text: String,
    pub problem: &'static str,
}

impl FromStr for KeyPrefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        // Some key begins with it exactly when it and one more letter is a key.
        match format!("{text}x").parse::<ArtifactKey>() {
            Ok(_) => Ok(Self(text.to_string())),
            Err(error) => Err(PrefixError {
                text: text.chars().take(80).collect(),
                problem: error.problem,
            }),
        }
    }
}

impl KeyPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(super) fn matches(&self, key: &ArtifactKey) -> bool {
        key.as_str().starts_with(&self.0)
    }

    /// The whole segments of the prefix: where listing starts (object stores list by
    /// segment, so `builds/ap` lists `builds` and keeps the keys that match).
    pub(super) fn directory(&self) -> &str {
        self.0
            .rsplit_once('/')
            .map_or("", |(directory, _)| directory)
    }
}

impl MirrorStore {
    /// The object paths under `manifests/<directory>` (all manifests when it is empty).
    pub(crate) async fn list_manifests(&self, directory: &str) -> Result<Vec<String>, StoreError> {
        let prefix = match directory {
            "" => "manifests".to_string(),
            directory => format!("manifests/{directory}"),
        };
        // Made from a checked prefix, so it parses.
        let listed = self
            .store
            .list(Some(&Path::from(prefix.as_str())))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await;
        match listed {
            Ok(paths) => Ok(paths),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(StoreError::Request {
                mirror: self.name().to_string(),
                operation: "LIST",
                path: format!("{prefix}/"),
                source: Box::new(source),
            }),
        }
    }
}

/// The key a manifest's object path names, if it names one.
pub(crate) fn key_of(path: &str) -> Option<ArtifactKey> {
    path.strip_prefix("manifests/")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}
