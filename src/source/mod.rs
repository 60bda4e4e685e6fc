//! Sources produce the plaintext byte stream of a backup, and know how to turn
//! that stream back into a restore target of their kind. They know nothing of
//! compression, encryption or destinations.

pub mod files;
pub mod sqlite;

use std::io::{Read, Write};
use std::path::Path;

use crate::Result;
use crate::config::{Job, SourceConfig};

/// The backup side of a source.
pub trait Dump: Send + Sync {
    /// The manifest's `source.kind`.
    fn kind(&self) -> &'static str;
    /// The innermost file extension of the data object (`sqlite`, `tar`, …).
    fn extension(&self) -> &'static str;
    /// What is being read, for messages.
    fn describe(&self) -> String;
    /// Expected plaintext size, for progress bars.
    fn size_hint(&self) -> Option<u64>;
    /// Writes the plaintext stream to `out` and returns facts for the manifest.
    fn dump(&self, out: &mut dyn Write) -> Result<serde_json::Value>;
}

pub fn for_job(job: &Job) -> Box<dyn Dump> {
    match &job.source {
        SourceConfig::Sqlite { path } => Box::new(sqlite::SqliteSource::new(&job.name, path)),
        SourceConfig::Files { path, exclude } => {
            Box::new(files::FilesSource::new(&job.name, path, exclude))
        }
    }
}

/// What a restore writes: a single file or a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetShape {
    File,
    Folder,
}

/// The restore side, chosen by the manifest's `source.kind`.
pub trait Restorer {
    fn shape(&self) -> TargetShape;
    /// Writes the plaintext `stream` into `temp` (a new file or an empty folder).
    fn write(&self, stream: &mut dyn Read, temp: &Path) -> Result<()>;
    /// Checks what was written before it replaces the target.
    fn check(&self, temp: &Path) -> Result<()>;
    /// Files that belong with the target and must move with it (e.g. SQLite's -wal).
    fn companions(&self, target: &Path) -> Vec<std::path::PathBuf> {
        let _ = target;
        Vec::new()
    }
}

pub fn restorer_for(kind: &str) -> Result<Box<dyn Restorer>> {
    match kind {
        "sqlite" => Ok(Box::new(sqlite::SqliteRestorer)),
        "files" => Ok(Box::new(files::FilesRestorer)),
        other => Err(crate::Error::Usage(format!(
            "this version of cairn cannot restore artifacts of source kind `{other}`"
        ))),
    }
}
