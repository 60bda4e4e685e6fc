//! Typed errors of the engine. The CLI renders them; each variant knows whether it
//! is the user's input that is wrong (exit code 2) or a run that failed (exit code 1).

use std::path::PathBuf;

/// A configuration that cannot be used, located in its file. It is defined here,
/// not in `config`, so that `error` stays a leaf that every module may use
/// (`config` re-exports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a destination, so that callers can act on it: try the
/// next copy, retry later, or stop and tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// The object (or the container) does not exist.
    NotFound,
    /// Credentials are wrong or lack the permission.
    Denied,
    /// A timeout, a dropped connection, a throttled or unavailable service: may work later.
    Transient,
    /// The destination is full or over its quota.
    NoSpace,
    /// The object exists but its bytes are not what was stored.
    Damaged,
    /// Anything else.
    Other,
}

impl StorageKind {
    /// The kind of a local I/O error.
    pub fn of_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::NotFound => StorageKind::NotFound,
            K::PermissionDenied => StorageKind::Denied,
            K::StorageFull | K::QuotaExceeded => StorageKind::NoSpace,
            K::TimedOut
            | K::Interrupted
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::WouldBlock => StorageKind::Transient,
            K::InvalidData | K::UnexpectedEof => StorageKind::Damaged,
            _ => StorageKind::Other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing, malformed or inconsistent.
    #[error("{0}")]
    Config(#[from] ConfigError),

    /// The command line names something that does not exist or cannot be combined.
    #[error("{0}")]
    Usage(String),

    /// Reading the data to back up failed.
    #[error("source of job `{job}`: {message}")]
    Source { job: String, message: String },

    /// A destination could not be read or written. `kind` tells the caller
    /// what to do next (try another copy, retry, stop); `message` keeps the
    /// underlying error's text.
    #[error("destination `{destination}`: {message}")]
    Destination {
        destination: String,
        kind: StorageKind,
        message: String,
    },

    /// Keys could not be loaded or data could not be encrypted or decrypted.
    #[error("{0}")]
    Crypto(String),

    /// Stored data does not match what its manifest promises.
    #[error("artifact {id} of job `{job}` is damaged: {message}")]
    Integrity {
        job: String,
        id: String,
        message: String,
    },

    /// The artifact's manifest is not signed by the key the job trusts.
    #[error("artifact {id} of job `{job}` is untrusted: {message}")]
    Untrusted {
        job: String,
        id: String,
        message: String,
    },

    /// No artifact matches what was asked for.
    #[error("{0}")]
    NotFound(String),

    /// A restore target cannot be written as asked.
    #[error("target {}: {message}", path.display())]
    Target { path: PathBuf, message: String },

    /// Stored content that cairn's own writer never produces (a planted or
    /// hostile archive): refused before anything is written.
    #[error("{0}")]
    Foreign(String),

    /// Any other failure of a run, with its context.
    #[error("{0}")]
    Run(String),
}

impl Error {
    /// Exit code convention of the field: 2 for bad usage or config, 1 for a failed run.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// A destination error whose kind is not known (prefer [`Error::storage`]).
    pub fn destination(destination: &str, message: impl std::fmt::Display) -> Self {
        Self::storage(destination, StorageKind::Other, message)
    }

    pub fn storage(destination: &str, kind: StorageKind, message: impl std::fmt::Display) -> Self {
        Error::Destination {
            destination: destination.to_string(),
            kind,
            message: message.to_string(),
        }
    }

    /// The storage kind of a destination error; `Damaged` for integrity failures.
    pub fn storage_kind(&self) -> Option<StorageKind> {
        match self {
            Error::Destination { kind, .. } => Some(*kind),
            Error::Integrity { .. } => Some(StorageKind::Damaged),
            _ => None,
        }
    }

    pub fn source(job: &str, message: impl std::fmt::Display) -> Self {
        Error::Source {
            job: job.to_string(),
            message: message.to_string(),
        }
    }
}
