//! What can be wrong with a configuration file, and where.

use std::{fmt, path::PathBuf};

/// A place in a configuration file, as people count: lines and columns from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: u32,
    pub column: u32,
}

impl Location {
    /// The place of byte `offset` in `text`.
    pub(super) fn of(path: PathBuf, text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            path,
            line: saturate(before.matches('\n').count() + 1),
            column: saturate(before[line_start..].chars().count() + 1),
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}, column {}",
            self.path.display(),
            self.line,
            self.column
        )
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` does not exist.
    #[error(
        "config file {} does not exist: create it (docs/config.md lists every key) or leave \
         out --config, which is optional, to run with the built-in defaults",
        path.display()
    )]
    NotFound {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file exists but could not be read (permissions, a directory, not UTF-8).
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The path names something that is not a regular file: a FIFO would block the command,
    /// a device like /dev/zero would never end.
    #[error("config file {} is {kind}, not a regular file: point --config (or NETWATCH_CONFIG) at a TOML file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// Run as root, a file another user owns or may write.
    #[error("config file {} is {why}: run as root, netwatch reads only a file owned by root that no one else may write (chown root, chmod go-w), so that another user cannot choose what root does", path.display())]
    Untrusted { path: PathBuf, why: String },
    /// Larger than any configuration needs: refused before it is read whole.
    #[error("config file {} is {size} bytes, more than the {max} a configuration file may have: is it the right file?", path.display())]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    /// The file is not UTF-8 text (TOML is).
    #[error("{at}: not UTF-8 text: a TOML file is UTF-8; save it as such")]
    NotUtf8 { at: Location },
    /// The text is not TOML.
    // The parser's message says what it expected, so it belongs in this message; `toml` is
    // not also given as `source()`, which would print it twice in an error chain.
    #[error("{at}: not valid TOML: {}", toml.message())]
    Syntax {
        at: Location,
        toml: Box<toml::de::Error>,
    },
    /// A key this version of netwatch does not know: a typo, or a key in the wrong table.
    #[error("{at}: unknown key `{key}` in {table}{hint}")]
    UnknownKey {
        at: Location,
        key: String,
        table: String,
        /// "; did you mean ...?", or empty when nothing is close.
        hint: String,
    },
    /// A table lacks a key that has no default.
    #[error("{at}: {table} has no `{key}`: expected {expected}")]
    Missing {
        at: Location,
        table: String,
        key: &'static str,
        expected: &'static str,
    },
    /// A duration that humantime cannot read.
    #[error("{at}: {key} = {value}: expected a duration like \"5s\" or \"500ms\"")]
    BadDuration {
        at: Location,
        key: &'static str,
        value: String,
        source: humantime::DurationError,
    },
    /// A value of the wrong type, or out of range, or at odds with another key.
    #[error("{at}: {written}: expected {expected}")]
    Invalid {
        at: Location,
        key: &'static str,
        /// `key = value` as written, or the header of a table that should not be one.
        written: String,
        expected: String,
    },
    /// The metrics address is not a loopback address, and no web configuration guards it.
    #[error(
        "{at}: listen = {value}: expected a loopback address like \"127.0.0.1:9477\" or \
         \"[::1]:9477\": off loopback the agent serves metrics only over TLS to scrapers that \
         authenticate, so set web_config to a file with tls_server_config and \
         basic_auth_users (docs/config.md), or set `enabled = false`"
    )]
    NotLoopback { at: Location, value: String },
    /// Two `[[endpoint]]` (or `[[mirror]]`) tables with the same name: clients (or
    /// `--mirror NAME`) could not tell them apart.
    #[error(
        "{at}: name = {value}: expected a name no other {table} has, but the one at line \
         {first_line} has it"
    )]
    DuplicateName {
        at: Location,
        value: String,
        /// `[[endpoint]]` or `[[mirror]]`.
        table: &'static str,
        first_line: u32,
    },
}

impl ConfigError {
    /// Where in the file the problem is, if it is in the file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::NotFound { .. }
            | Self::Read { .. }
            | Self::NotAFile { .. }
            | Self::Untrusted { .. }
            | Self::TooLarge { .. } => None,
            Self::NotUtf8 { at }
            | Self::Syntax { at, .. }
            | Self::UnknownKey { at, .. }
            | Self::Missing { at, .. }
            | Self::BadDuration { at, .. }
            | Self::Invalid { at, .. }
            | Self::NotLoopback { at, .. }
            | Self::DuplicateName { at, .. } => Some(at),
        }
    }
}
