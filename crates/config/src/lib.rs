//! What tollgate's configuration files (`gateway.toml`, `sync.toml`) share: an
//! error that names the file, the line and the key and says what to write
//! instead, and parsers for the values both use (durations, limits, addresses,
//! sizes), each reporting at the value's own line.
//!
//! ```
//! use std::path::Path;
//! use toml::Spanned;
//! use tollgate_config::Locator;
//!
//! #[derive(serde::Deserialize)]
//! struct File { every: Spanned<String> }
//!
//! let text = "# a comment\nevery = \"soon\"\n";
//! let at = Locator::new(Path::new("sync.toml"), text, "docs/sync.md");
//! let file: File = toml::from_str(text).unwrap();
//! let err = at.duration("every", &file.every).unwrap_err();
//! assert_eq!(err.to_string(), "sync.toml:2: `every`: `soon` is not a duration: write it like `60s`, `500ms` or `1h`");
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_core::Rate;
use toml::Spanned;

/// A configuration mistake, with the file, line and key it is at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// The 1-based line of the offending value (0 when the file could not be read).
    pub line: usize,
    /// The key, like `limits[1].rate`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(
                f,
                "{}:{}: `{}`: {}",
                self.file.display(),
                self.line,
                self.key,
                self.problem
            )
        }
    }
}

/// Builds errors for one file's text.
pub struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Where every key is documented, for errors about unknown keys.
    docs: &'static str,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file`, whose keys `docs` documents.
    pub fn new(file: &'a Path, text: &'a str, docs: &'static str) -> Self {
        Self { file, text, docs }
    }

    /// Reads a file, with an error that names it.
    pub fn read(file: &Path, example: &str) -> Result<String, ConfigError> {
        std::fs::read_to_string(file).map_err(|err| ConfigError {
            file: file.to_owned(),
            line: 0,
            key: String::new(),
            problem: format!("cannot read it ({err}); check the path, or start from {example}"),
        })
    }

    /// The 1-based line a span starts on.
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    /// An error at `span`.
    pub fn error(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: self.line_of(span),
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// An error at a value.
    pub fn at<T>(
        &self,
        value: &Spanned<T>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        self.error(&value.span(), key, problem)
    }

    /// A syntax or shape error from the TOML parser.
    pub fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let key = self.text.get(span.clone()).unwrap_or("").trim().to_owned();
        ConfigError {
            file: self.file.to_owned(),
            line: self.line_of(&span),
            key: if key.is_empty() { "(file)".into() } else { key },
            problem: format!(
                "{}; see {} for every key",
                err.message().trim_end_matches('\n'),
                self.docs
            ),
        }
    }

    /// Parses the whole file.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| self.toml_error(&e))
    }

    /// A duration like `60s`, `500ms`, `5min` or `1h` (not zero).
    pub fn duration(&self, key: &str, value: &Spanned<String>) -> Result<Duration, ConfigError> {
        tollgate_core::parse_duration(value.get_ref())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                self.at(
                    value,
                    key,
                    format!(
                        "`{}` is not a duration: write it like `60s`, `500ms` or `1h`",
                        value.get_ref()
                    ),
                )
            })
    }

    /// An optional duration, or `default`.
    pub fn duration_or(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        value
            .as_ref()
            .map_or(Ok(default), |v| self.duration(key, v))
    }

    /// A limit like `50/60s`, `50/min`, `20/s` or `50 per 60s`.
    pub fn rate(&self, key: &str, value: &Spanned<String>) -> Result<Rate, ConfigError> {
        value
            .get_ref()
            .parse()
            .map_err(|e: tollgate_core::ParseRateError| self.at(value, key, e.to_string()))
    }

    /// A socket address like `127.0.0.1:8080`.
    pub fn address(&self, key: &str, value: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().map_err(|_| {
            self.at(
                value,
                key,
                format!(
                    "`{}` is not an address: write it like `127.0.0.1:8080`",
                    value.get_ref()
                ),
            )
        })
    }

    /// A size like `1MiB`, `64KiB` or `1048576` (bytes).
    pub fn bytes(&self, key: &str, value: &Spanned<String>) -> Result<u64, ConfigError> {
        parse_bytes(value.get_ref()).ok_or_else(|| {
            self.at(
                value,
                key,
                format!(
                    "`{}` is not a size: write it like `1MiB`, `64KiB` or `1048576`",
                    value.get_ref()
                ),
            )
        })
    }
}

/// The ```` ```toml ```` blocks of a Markdown text: the docs' configuration
/// examples, so tests can check that each one loads.
///
/// ```
/// let doc = "Intro\n```toml\nlisten = \"127.0.0.1:8080\"\n```\n";
/// assert_eq!(tollgate_config::toml_blocks(doc), ["listen = \"127.0.0.1:8080\"\n"]);
/// ```
pub fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_the_units_people_write() {
        assert_eq!(parse_bytes("1MiB"), Some(1 << 20));
        assert_eq!(parse_bytes("64 KiB"), Some(64 << 10));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("lots"), None);
    }
}
