//! A `files` source and an `fs` destination must not contain each other: a
//! destination inside the source makes every backup include the earlier ones,
//! and a source inside the destination is a folder that `gc` and `prune` clean.

use std::path::{Path, PathBuf};

use crate::config::{Config, DestinationConfig, Job, SourceConfig};
use crate::{Error, Result};

/// The path with links and `..` resolved as far as it exists; the missing rest
/// (a destination folder the first backup creates) is appended as written.
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Refuses a job whose `files` source and an `fs` destination overlap (exit 2).
pub fn refuse_overlap(config: &Config, job: &Job) -> Result<()> {
    let SourceConfig::Files { path: source, .. } = &job.source else {
        return Ok(());
    };
    let source = resolved(source);
    for name in &job.destinations {
        let Some(DestinationConfig::Fs { path }) = config.destinations.get(name) else {
            continue;
        };
        let dest = resolved(path);
        let why = if dest.starts_with(&source) {
            "the destination is inside the source folder, so every backup would also hold the earlier ones"
        } else if source.starts_with(&dest) {
            "the source folder is inside the destination, where cairn cleans up its own files"
        } else {
            continue;
        };
        return Err(Error::Usage(format!(
            "job `{}`: source folder {} and destination `{name}` ({}) overlap: {why}; put the destination outside the source folder",
            job.name,
            source.display(),
            dest.display()
        )));
    }
    Ok(())
}
