//! Typed errors of the engine. The CLI renders them; each variant knows whether it
//! is the user's input that is wrong (exit code 2) or a run that failed (exit code 1).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is missing, malformed or inconsistent.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),

    /// The command line names something that does not exist or cannot be combined.
    #[error("{0}")]
    Usage(String),

    /// Reading the data to back up failed.
    #[error("source of job `{job}`: {message}")]
    Source { job: String, message: String },

    /// A destination could not be read or written.
    #[error("destination `{destination}`: {message}")]
    Destination {
        destination: String,
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

    pub fn destination(destination: &str, message: impl std::fmt::Display) -> Self {
        Error::Destination {
            destination: destination.to_string(),
            message: message.to_string(),
        }
    }

    pub fn source(job: &str, message: impl std::fmt::Display) -> Self {
        Error::Source {
            job: job.to_string(),
            message: message.to_string(),
        }
    }
}
