//! One table of the TOML tree with the spans of its keys and values: typed getters whose errors
//! point at the value, and the check that every key is known.

use std::{ops::Range, path::Path, time::Duration};

use toml::{
    de::{DeString, DeTable, DeValue},
    Spanned,
};

use super::{read::TABLES, ConfigError, Location};

type Value<'i> = Spanned<DeValue<'i>>;

const DURATION: &str = "a duration in quotes, like \"5s\" or \"500ms\"";
const POSITIVE_DURATION: &str = "a duration above zero, like \"3s\" or \"500ms\"";
const RATIO: &str = "a ratio between 0 and 1 (both excluded), like 0.02";
const BOOLEAN: &str = "true or false";

/// The text being read and the file it came from.
pub(super) struct Doc<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a Path,
}

impl Doc<'_> {
    pub(super) fn at(&self, offset: usize) -> Location {
        Location::of(self.origin.to_path_buf(), self.text, offset)
    }

    /// What the user wrote at `span`, kept to one short line.
    fn written(&self, span: Range<usize>) -> String {
        const MAX: usize = 60;
        let text = self.text.get(span).unwrap_or_default();
        let line = text.lines().next().unwrap_or_default();
        if line.len() < text.len() || line.chars().count() > MAX {
            let short: String = line.chars().take(MAX).collect();
            format!("{short}...")
        } else {
            line.to_string()
        }
    }
}

/// One table of the file (or one absent, which gives defaults), holding only known keys.
pub(super) struct Table<'a> {
    pub(super) doc: &'a Doc<'a>,
    name: &'static str,
    span: Range<usize>,
    entries: Option<&'a DeTable<'a>>,
}

impl<'a> Table<'a> {
    pub(super) fn new(
        doc: &'a Doc<'a>,
        name: &'static str,
        keys: &[&str],
        span: Range<usize>,
        entries: Option<&'a DeTable<'a>>,
    ) -> Result<Self, ConfigError> {
        let table = Self {
            doc,
            name,
            span,
            entries,
        };
        let unknown = entries
            .into_iter()
            .flat_map(|entries| entries.iter())
            .map(|(key, _)| key)
            .filter(|key| !keys.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            Some(key) => Err(table.unknown_key(key, keys)),
            None => Ok(table),
        }
    }

    /// The sub-table `key` of this one, which is `name` in messages.
    pub(super) fn table(
        &self,
        key: &'static str,
        name: &'static str,
        keys: &[&str],
    ) -> Result<Table<'a>, ConfigError> {
        match self.get(key) {
            None => Table::new(self.doc, name, keys, self.span.start..self.span.start, None),
            Some(value) => match value.get_ref() {
                DeValue::Table(entries) => {
                    Table::new(self.doc, name, keys, value.span(), Some(entries))
                }
                _ => Err(self.invalid(
                    key,
                    format!("a table: a {name} header followed by its keys"),
                )),
            },
        }
    }

    pub(super) fn get(&self, key: &'static str) -> Option<&'a Value<'a>> {
        self.entries?.get(key)
    }

    /// Where `key`'s value is and how it was written (the table's header if it is absent).
    pub(super) fn place(&self, key: &'static str) -> (Location, String) {
        match self.get(key) {
            Some(value) => (
                self.doc.at(value.span().start),
                self.doc.written(value.span()),
            ),
            None => (self.doc.at(self.span.start), "(not set)".to_string()),
        }
    }

    pub(super) fn invalid(&self, key: &'static str, expected: impl Into<String>) -> ConfigError {
        let (at, value) = self.place(key);
        // A `[key]` or `[[key]]` header is shown as it is, not as `key = [key]`.
        let header = value.trim_start_matches('[').starts_with(key);
        ConfigError::Invalid {
            at,
            key,
            written: if header {
                value
            } else {
                format!("{key} = {value}")
            },
            expected: expected.into(),
        }
    }

    pub(super) fn missing(&self, key: &'static str, expected: &'static str) -> ConfigError {
        ConfigError::Missing {
            at: self.doc.at(self.span.start),
            table: self.name.to_string(),
            key,
            expected,
        }
    }

    fn unknown_key(&self, key: &Spanned<DeString<'_>>, keys: &[&str]) -> ConfigError {
        let name = key.get_ref().as_ref();
        let elsewhere = TABLES
            .iter()
            .find(|(table, keys)| *table != self.name && keys.contains(&name));
        // clap's threshold for its "did you mean" (Jaro similarity above 0.7).
        let nearest = keys
            .iter()
            .map(|known| (strsim::jaro(name, known), known))
            .filter(|(similarity, _)| *similarity > 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let hint = match (elsewhere, nearest) {
            (Some((table, _)), _) => format!("; did you mean to put it in {table}?"),
            (None, Some((_, known))) => format!("; did you mean `{known}`?"),
            (None, None) => {
                let all: Vec<String> = keys.iter().map(|known| format!("`{known}`")).collect();
                format!(": expected one of {}", all.join(", "))
            }
        };
        ConfigError::UnknownKey {
            at: self.doc.at(key.span().start),
            key: name.to_string(),
            table: self.name.to_string(),
            hint,
        }
    }

    pub(super) fn string(
        &self,
        key: &'static str,
        expected: &str,
    ) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key).map(|value| value.get_ref()) {
            None => Ok(None),
            Some(DeValue::String(text)) => Ok(Some(text.as_ref())),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    /// An array of strings.
    pub(super) fn strings(
        &self,
        key: &'static str,
        expected: &str,
    ) -> Result<Option<Vec<&'a str>>, ConfigError> {
        match self.get(key).map(|value| value.get_ref()) {
            None => Ok(None),
            Some(DeValue::Array(items)) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(text) => Ok(text.as_ref()),
                    _ => Err(self.invalid(key, expected)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    pub(super) fn boolean(&self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key).map(|value| value.get_ref()) {
            None => Ok(None),
            Some(DeValue::Boolean(yes)) => Ok(Some(*yes)),
            Some(_) => Err(self.invalid(key, BOOLEAN)),
        }
    }

    /// A whole number that is not negative.
    pub(super) fn integer(
        &self,
        key: &'static str,
        expected: &str,
    ) -> Result<Option<u64>, ConfigError> {
        match self.get(key).map(|value| value.get_ref()) {
            None => Ok(None),
            Some(DeValue::Integer(int)) => u64::from_str_radix(int.as_str(), int.radix())
                .map(Some)
                .map_err(|_| self.invalid(key, expected)),
            Some(_) => Err(self.invalid(key, expected)),
        }
    }

    pub(super) fn ratio(&self, key: &'static str) -> Result<Option<f64>, ConfigError> {
        match self.get(key).map(|value| value.get_ref()) {
            None => Ok(None),
            Some(DeValue::Float(float)) => match float.as_str().parse::<f64>() {
                Ok(ratio) if ratio > 0.0 && ratio < 1.0 => Ok(Some(ratio)),
                _ => Err(self.invalid(key, RATIO)),
            },
            Some(_) => Err(self.invalid(key, RATIO)),
        }
    }

    pub(super) fn duration(&self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        let Some(text) = self.string(key, DURATION)? else {
            return Ok(None);
        };
        humantime::parse_duration(text).map(Some).map_err(|source| {
            let (at, value) = self.place(key);
            ConfigError::BadDuration {
                at,
                key,
                value,
                source,
            }
        })
    }

    pub(super) fn positive_duration(
        &self,
        key: &'static str,
    ) -> Result<Option<Duration>, ConfigError> {
        match self.duration(key)? {
            Some(zero) if zero.is_zero() => Err(self.invalid(key, POSITIVE_DURATION)),
            other => Ok(other),
        }
    }
}
