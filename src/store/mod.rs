//! Destinations, artifact naming, manifests and the catalog.
//!
//! A destination stores opaque objects under `/`-separated keys. The commit
//! protocol lives above it: the data object is written under a temporary name
//! and committed, then the manifest is written last. An artifact exists if and
//! only if its manifest exists and names a data object of the recorded size.

pub mod catalog;
pub mod fs;
mod fs_at;
pub mod layers;
pub mod manifest;
pub mod manifest_cache;
pub mod memory;
pub mod naming;
pub mod remote;
pub mod signature;
pub mod webdav;

use std::io::{self, Write};

use crate::config::{Config, DestinationConfig};
use crate::pipeline::Source;
use crate::{Error, Result};

pub use catalog::{Artifact, ArtifactState};
pub use manifest::Manifest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the object was last written, where the store says.
    pub modified: Option<jiff::Timestamp>,
}

/// One place where artifacts are kept.
pub trait Destination: Send + Sync {
    /// The name from the config.
    fn name(&self) -> &str;
    /// Where it is, for humans; never contains credentials.
    fn location(&self) -> String;
    /// Starts writing a data object; nothing is visible under `key` before `commit`.
    fn create(&self, key: &str) -> Result<Box<dyn Upload>>;
    /// Writes a small object so that readers see either nothing or all of it.
    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Reads an object as a stream.
    fn open(&self, key: &str) -> Result<Source>;
    /// Reads a small object whole.
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        io::copy(&mut self.open(key)?, &mut bytes)
            .map_err(|e| Error::destination(self.name(), format!("cannot read {key}: {e}")))?;
        Ok(bytes)
    }
    /// The size of an object, or `None` when there is none.
    fn size(&self, key: &str) -> Result<Option<u64>>;
    /// Every object whose key starts with `prefix`, temporary ones excluded.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    fn delete(&self, key: &str) -> Result<()>;
    /// Temporary objects of unfinished uploads under `prefix` (`<prefix>.partial/`).
    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Removes the folder `key` if it is empty (stores without folders have none).
    fn remove_empty_folder(&self, _key: &str) -> Result<()> {
        Ok(())
    }
}

/// A data object being written.
pub trait Upload: Write + Send {
    /// Makes the object durable and visible under its key.
    fn commit(self: Box<Self>) -> Result<()>;
    /// Removes what was written; the key stays untouched.
    fn abort(self: Box<Self>);
}

/// Opens the destination named `name` in the config.
pub fn open(config: &Config, name: &str) -> Result<Box<dyn Destination>> {
    let dest = config.destinations.get(name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown destination `{name}` (defined: {})",
            config
                .destinations
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(match dest {
        DestinationConfig::Fs { path } => Box::new(fs::FsDestination::new(name, path.clone())),
        remote => Box::new(remote::RemoteDestination::open(name, remote)?),
    })
}
