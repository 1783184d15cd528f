//! Errors from loading and checking `airlock.toml`.
//!
//! Every problem found in the file is a [`Diagnostic`] that names the file, the 1-based line and the
//! key, printed as `{file}:{line}: {message}` so editors and terminals can jump to it. Semantic
//! problems are collected and reported together, so one edit-and-retry round fixes them all.

use std::fmt;
use std::path::PathBuf;

use crate::secret::MissingSecret;

/// One problem at one place in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file, as given to [`crate::Config::load`] or [`crate::Config::from_str`].
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The key the problem is about, as a path such as `gateway.credential_ttl` or
    /// `resource[0].read.password` (array entries by 0-based index); empty for the file as a whole.
    pub key: String,
    /// What is wrong and, where it helps, what to do; it mentions the key in context.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Everything that can go wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not have the shape of an Airlock config (unknown key,
    /// missing key, wrong type). Parsing stops at the first such problem.
    #[error("{0}")]
    Parse(Diagnostic),
    /// The file parsed but its contents are inconsistent or out of range; every problem found.
    #[error("{}", DisplayLines(.0))]
    Invalid(Vec<Diagnostic>),
    /// Environment variables named by `password_env` are unset, empty or not UTF-8; every one found.
    #[error("{}", DisplayLines(.0))]
    MissingSecret(Vec<MissingSecret>),
}

impl ConfigError {
    /// The diagnostics this error carries (none for IO and secret errors): handy for tests and for
    /// tools that show problems in an editor.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Parse(diagnostic) => std::slice::from_ref(diagnostic),
            ConfigError::Invalid(diagnostics) => diagnostics,
            ConfigError::Io { .. } | ConfigError::MissingSecret(_) => &[],
        }
    }
}

/// Prints items one per line.
struct DisplayLines<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for DisplayLines<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}
