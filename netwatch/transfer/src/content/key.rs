//! Artifact keys: the names under which manifests are stored. A key becomes part of an object
//! path and of a cache path, so only a safe set of characters is allowed and no segment can
//! climb out of the store.

use std::{fmt, str::FromStr};

/// At most this many bytes: far above any sensible name, far below any path limit.
pub const MAX_KEY_LEN: usize = 512;

/// A checked artifact key, like `builds/app/1.4.2/app.tar.zst`: segments of ASCII letters,
/// digits, `.`, `_`, `-` and `+` separated by single `/`; no segment starts with `.` (so
/// neither `.` nor `..`, nor hidden names that temporary files use).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactKey(String);

/// Why a text is not an artifact key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an artifact key: {problem}; expected segments of letters, digits, `.`, `_`, `-` and `+` joined by `/`, like \"builds/app/1.4.2.tar\"")]
pub struct KeyError {
    pub text: String,
    pub problem: &'static str,
}

impl ArtifactKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ArtifactKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |problem| KeyError {
            text: text.chars().take(80).collect(),
            problem,
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.len() > MAX_KEY_LEN {
            return Err(fail("it is longer than 512 bytes"));
        }
        if text.starts_with('/') {
            return Err(fail("it starts with `/`: keys are relative to the store"));
        }
        for segment in text.split('/') {
            if segment.is_empty() {
                return Err(fail("it has an empty segment (`//`, or `/` at the end)"));
            }
            if segment.starts_with('.') {
                return Err(fail(
                    "a segment starts with `.` (`..` could leave the store)",
                ));
            }
            let allowed =
                |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+');
            if !segment.bytes().all(allowed) {
                return Err(fail("it has a character outside the allowed set"));
            }
        }
        Ok(Self(text.to_string()))
    }
}

impl fmt::Display for ArtifactKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_accepted() {
        for key in ["app.tar", "builds/app/1.4.2/app.tar.zst", "a_b-c+d/E9"] {
            assert_eq!(key.parse::<ArtifactKey>().unwrap().as_str(), key);
        }
    }

    #[test]
    fn keys_that_could_leave_the_store_are_refused_with_the_reason() {
        for (key, problem) in [
            ("", "empty"),
            ("/etc/passwd", "starts with `/`"),
            ("../secret", "starts with `.`"),
            ("a/../../b", "starts with `.`"),
            ("a/./b", "starts with `.`"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\\..\\b", "outside the allowed set"),
            ("a b", "outside the allowed set"),
            ("café", "outside the allowed set"),
            ("a\0b", "outside the allowed set"),
        ] {
            let error = key.parse::<ArtifactKey>().unwrap_err();
            assert!(error.problem.contains(problem), "{key:?}: {error}");
        }
        assert!("a".repeat(513).parse::<ArtifactKey>().is_err());
    }
}
