//! Typed errors of the engine and the exit code each maps to.
//!
//! Messages name the file, the place (key path, record, line, column) and the rule that failed; they never
//! carry a key, and never a value read from an identifier column.

use std::path::PathBuf;

/// Process exit codes, documented in `--help` and README.
pub mod exit {
    pub const OK: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const INVALID_PERMIT: i32 = 3;
    pub const BAD_INPUT: i32 = 4;
    pub const KEY: i32 = 5;
    pub const VERIFY: i32 = 6;
    pub const OUTPUT: i32 = 7;
    pub const PRIVACY: i32 = 8;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The permit text does not parse or breaks a rule of the permit model.
    #[error("invalid permit {file}: {at}: {message}")]
    Permit {
        file: PathBuf,
        /// The key path (`datasets[1].columns[3].action`) or TOML position.
        at: String,
        message: String,
    },

    /// A source file is missing, malformed or does not match the permit's schema.
    #[error("bad input {file}: {at}: {message}")]
    Input {
        file: PathBuf,
        /// Record, line and column where they exist.
        at: String,
        message: String,
    },

    /// A key is missing, unreadable or too weak. Never carries key material.
    #[error("key {source_name}: {message}")]
    Key {
        source_name: String,
        message: String,
    },

    /// A delivery does not match its manifest.
    #[error("verification failed for {path}: {message}")]
    Verify { path: PathBuf, message: String },

    /// The output cannot be written.
    #[error("cannot write delivery {path}: {message}")]
    Output { path: PathBuf, message: String },

    /// A generalisation hierarchy is malformed or does not cover a value of the data.
    #[error("hierarchy {source_name}: {message}")]
    Hierarchy {
        source_name: String,
        message: String,
    },

    /// No transformation meets the permit's privacy models within its suppression limit, or a written
    /// delivery fails the re-check of its equivalence classes.
    #[error("privacy models not met: {0}")]
    Privacy(String),

    /// The command line asks for something that cannot be done (a column named twice…).
    #[error("usage: {0}")]
    Usage(String),

    /// A failure inside the engine or a library it drives.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The error's kind in one word, for JSON error records (`permit`, `input`, `key`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Permit { .. } => "permit",
            Error::Input { .. } => "input",
            Error::Key { .. } => "key",
            Error::Verify { .. } => "verify",
            Error::Output { .. } => "output",
            Error::Hierarchy { .. } => "hierarchy",
            Error::Privacy(_) => "privacy",
            Error::Usage(_) => "usage",
            Error::Internal(_) => "internal",
        }
    }

    /// The file the error is about and where in it (a permit's key path, a record and column),
    /// for JSON error records.
    pub fn place(&self) -> (Option<&std::path::Path>, Option<&str>) {
        match self {
            Error::Permit { file, at, .. } | Error::Input { file, at, .. } => {
                (Some(file), Some(at))
            }
            Error::Verify { path, .. } | Error::Output { path, .. } => (Some(path), None),
            _ => (None, None),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Permit { .. } => exit::INVALID_PERMIT,
            Error::Input { .. } => exit::BAD_INPUT,
            Error::Key { .. } => exit::KEY,
            Error::Verify { .. } => exit::VERIFY,
            Error::Output { .. } => exit::OUTPUT,
            Error::Hierarchy { .. } => exit::BAD_INPUT,
            Error::Privacy(_) => exit::PRIVACY,
            Error::Usage(_) => exit::USAGE,
            Error::Internal(_) => exit::INTERNAL,
        }
    }

    pub fn input(
        file: impl Into<PathBuf>,
        at: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            file: file.into(),
            at: at.into(),
            message: message.into(),
        }
    }

    pub fn output(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Output {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub fn verify(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Verify {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<polars::error::PolarsError> for Error {
    fn from(e: polars::error::PolarsError) -> Self {
        Error::Internal(format!("polars: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
