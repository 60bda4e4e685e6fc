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

use std::io::{self, Read, Write};

use crate::config::{Config, DestinationConfig};
use crate::error::StorageKind;
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
        self.get_at_most(key, u64::MAX)
    }
    /// Reads at most `limit` + 1 bytes of an object, so that a caller with a
    /// size cap sees that an object is over it without reading the rest.
    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(key)?
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Error::storage(
                    self.name(),
                    StorageKind::of_io(&e),
                    format!("cannot read {key}: {e}"),
                )
            })?;
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

/// The `io::ErrorKind` that carries `kind` through a stream's `io::Error`
/// (the inverse of [`StorageKind::of_io`]).
pub fn io_error_kind(kind: StorageKind) -> io::ErrorKind {
    match kind {
        StorageKind::NotFound => io::ErrorKind::NotFound,
        StorageKind::Denied => io::ErrorKind::PermissionDenied,
        StorageKind::Transient => io::ErrorKind::TimedOut,
        StorageKind::NoSpace => io::ErrorKind::StorageFull,
        StorageKind::Damaged => io::ErrorKind::InvalidData,
        StorageKind::Other => io::ErrorKind::Other,
    }
}

/// The layers [`compose`] puts over a destination. `open_with` fills in the
/// ones a destination's kind needs (WebDAV's upload, retries for remote
/// kinds); callers choose the rest.
#[derive(Clone, Default)]
pub struct Layers {
    /// Writes and deletes are recorded here instead of carried out.
    pub dry_run: Option<layers::dry_run::DryRunRecord>,
    /// Faults to inject on command (tests).
    #[cfg(any(test, feature = "fault-injection"))]
    pub faults: Option<layers::fault::Faults>,
    /// WebDAV uploads streamed instead of buffered by OpenDAL.
    pub webdav_upload: Option<webdav::WebdavStreamer>,
    /// Whole operations retried on transient errors.
    pub retry: Option<layers::retry::RetryPolicy>,
}

impl Layers {
    /// Layers for a dry run whose would-be writes and deletes go to `record`.
    pub fn dry_run(record: &layers::dry_run::DryRunRecord) -> Self {
        Layers {
            dry_run: Some(record.clone()),
            ..Layers::default()
        }
    }
}

/// Puts `layers` over `base`, the one place where they are put together.
/// From the inside out: WebDAV's streaming upload replaces `create` only;
/// injected faults (tests) sit below retries so that retries can be tested;
/// retries of whole operations on `Transient` errors; timing and logging of
/// every operation; the dry run outermost, so that nothing below it is ever
/// asked to write or delete.
pub fn compose(base: Box<dyn Destination>, layers: &Layers) -> Box<dyn Destination> {
    let mut dest = base;
    if let Some(streamer) = &layers.webdav_upload {
        dest = Box::new(layers::webdav_upload::WebdavUpload::new(
            dest,
            streamer.clone(),
        ));
    }
    #[cfg(any(test, feature = "fault-injection"))]
    if let Some(faults) = &layers.faults {
        dest = Box::new(layers::fault::FaultDestination::new(dest, faults.clone()));
    }
    if let Some(policy) = &layers.retry {
        dest = Box::new(layers::retry::Retry::new(dest, *policy));
    }
    dest = Box::new(layers::logging::Logging::new(dest));
    if let Some(record) = &layers.dry_run {
        dest = Box::new(layers::dry_run::DryRun::new(dest, record.clone()));
    }
    dest
}

/// Opens the destination named `name` in the config, with the layers every
/// destination of its kind gets.
pub fn open(config: &Config, name: &str) -> Result<Box<dyn Destination>> {
    open_with(config, name, &Layers::default())
}

/// Opens the destination named `name` with `extra` layers (a dry run, faults)
/// over the ones its kind gets.
pub fn open_with(config: &Config, name: &str, extra: &Layers) -> Result<Box<dyn Destination>> {
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
    let mut layers = extra.clone();
    let base: Box<dyn Destination> = match dest {
        DestinationConfig::Fs { path } => Box::new(fs::FsDestination::new(name, path.clone())),
        remote => {
            let opened = remote::RemoteDestination::open(name, remote)?;
            layers.retry = Some(layers::retry::RetryPolicy::of(opened.transfer()));
            if let DestinationConfig::Webdav {
                url,
                user,
                prefix,
                transfer,
                ..
            } = remote
            {
                layers.webdav_upload = Some(webdav::WebdavStreamer::new(
                    url,
                    prefix,
                    user.clone(),
                    opened.webdav_password(),
                    std::time::Duration::from_secs(transfer.timeout_secs),
                    opened.secrets(),
                )?);
            }
            Box::new(opened)
        }
    };
    Ok(compose(base, &layers))
}
