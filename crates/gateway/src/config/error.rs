//! Configuration errors that say where and what to write instead.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
pub(super) struct Locator<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Locator<'_> {
    pub fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

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

    /// A syntax or shape error from the TOML parser.
    pub fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let key = self.text.get(span.clone()).unwrap_or("").trim().to_owned();
        ConfigError {
            file: self.file.to_owned(),
            line: self.line_of(&span),
            key: if key.is_empty() { "(file)".into() } else { key },
            problem: format!(
                "{}; see docs/gateway.md for every key",
                err.message().trim_end_matches('\n')
            ),
        }
    }
}
