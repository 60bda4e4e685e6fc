//! Test support for engine unit tests: in-memory destinations behind the
//! fault-injection layer, a job config that needs no server, and manifests,
//! catalog entries and located artifacts built by hand.

use std::sync::{Arc, Mutex};

use super::Located;
use crate::config::Config;
use crate::pipeline::Source;
use crate::progress::{Progress, Silent};
use crate::store::catalog::{Artifact, ArtifactState};
use crate::store::layers::fault::{FaultDestination, Faults};
use crate::store::memory::MemoryDestination;
use crate::store::signature::Trust;
use crate::store::{Destination, Manifest, ObjectInfo, Upload, naming};
use crate::{Error, Result, StorageKind};

/// An in-memory destination behind a fault layer, with the handles a test
/// needs: the objects (to look at) and the faults (to arm).
pub struct Faulty {
    pub memory: MemoryDestination,
    pub faults: Faults,
    pub destination: Arc<dyn Destination>,
}

impl Faulty {
    pub fn new(name: &str) -> Faulty {
        let memory = MemoryDestination::new(name);
        let faults = Faults::new();
        let destination = Arc::new(FaultDestination::new(
            Box::new(memory.clone()),
            faults.clone(),
        ));
        Faulty {
            memory,
            faults,
            destination,
        }
    }

    /// How many usable artifacts of job `app` it lists.
    pub fn artifacts(&self) -> usize {
        crate::store::catalog::list_job(&self.memory, "app")
            .map(|listing| listing.artifacts.len())
            .unwrap_or_default()
    }
}

/// A config in `dir` with one job `app` whose source prints `bytes` random
/// bytes, unencrypted, into destinations `a` and `b` (folders in `dir` that
/// the tests replace with [`Faulty`] ones), with its state store in `dir`.
pub fn config(dir: &std::path::Path, bytes: usize, verify: &str) -> Config {
    let text = format!(
        r#"[state]
path = "state.db"

[destinations.a]
kind = "fs"
path = "a"

[destinations.b]
kind = "fs"
path = "b"

[jobs.app]
source = {{ kind = "command", backup = ["sh", "-c", "head -c {bytes} /dev/urandom"] }}
destinations = ["a", "b"]
encryption = {{ kind = "none" }}
verify = "{verify}"
"#
    );
    let path = dir.join("cairn.toml");
    match Config::parse(&path, &text) {
        Ok(config) => config,
        Err(e) => panic!("test config: {e}"),
    }
}

/// An opener that hands out `destinations` by name.
pub fn opener(destinations: &[&Faulty]) -> impl Fn(&str) -> Result<Arc<dyn Destination>> + 'static {
    let destinations: Vec<Arc<dyn Destination>> =
        destinations.iter().map(|d| d.destination.clone()).collect();
    move |name| {
        destinations
            .iter()
            .find(|d| d.name() == name)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("unknown destination `{name}`")))
    }
}

pub fn silent() -> Arc<dyn Progress> {
    Arc::new(Silent)
}

/// A manifest of job `job` made at `at` (`2026-03-01T12:00:00Z`), id suffix `suffix`.
pub fn manifest(job: &str, at: &str, suffix: &str) -> Manifest {
    let created: jiff::Timestamp = at.parse().expect("a test timestamp");
    let id = format!("{}-{suffix}", created.strftime("%Y%m%dT%H%M%SZ"));
    serde_json::from_value(serde_json::json!({
        "format": 1,
        "id": id,
        "job": job,
        "created_at": created,
        "finished_at": created,
        "source": { "kind": "sqlite", "facts": {} },
        "codecs": ["sqlite", "zstd"],
        "compression": { "kind": "zstd", "level": 3 },
        "encryption": { "kind": "none" },
        "data": {
            "key": naming::data_key(job, &id, &["db", "zst"]),
            "size": 1000,
            "sha256": "00",
        },
        "plaintext": { "size": 4096, "sha256": "11" },
        "cairn_version": "test",
        "host": "test-host",
    }))
    .expect("a test manifest")
}

/// The catalog's entry for `manifest` in `destination`.
pub fn artifact(destination: &str, manifest: &Manifest, state: ArtifactState) -> Artifact {
    Artifact {
        destination: destination.to_string(),
        manifest_key: naming::manifest_key(&manifest.job, &manifest.id),
        manifest: manifest.clone(),
        state,
        trust: Trust::Unchecked,
    }
}

/// A destination that holds nothing: every read says "not found", every write
/// is refused, deletes are recorded (and fail for keys containing
/// `fail_deletes`). Tests of the fallback loop decide per destination name what
/// an attempt returns, so nothing is ever read from it.
pub struct Empty {
    pub name: String,
    /// Every key deleted so far, in order (shared, so a test keeps a handle).
    pub deleted: Arc<Mutex<Vec<String>>>,
    pub fail_deletes: Option<String>,
}

impl Empty {
    pub fn new(name: &str) -> Self {
        Empty {
            name: name.to_string(),
            deleted: Arc::default(),
            fail_deletes: None,
        }
    }

    fn missing(&self, key: &str) -> Error {
        Error::storage(
            &self.name,
            StorageKind::NotFound,
            format!("{key} does not exist"),
        )
    }
}

impl Destination for Empty {
    fn name(&self) -> &str {
        &self.name
    }
    fn location(&self) -> String {
        format!("empty test destination {}", self.name)
    }
    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        Err(Error::storage(
            &self.name,
            StorageKind::Denied,
            format!("{key}: read-only"),
        ))
    }
    fn put_atomic(&self, key: &str, _: &[u8]) -> Result<()> {
        Err(Error::storage(
            &self.name,
            StorageKind::Denied,
            format!("{key}: read-only"),
        ))
    }
    fn open(&self, key: &str) -> Result<Source> {
        Err(self.missing(key))
    }
    fn size(&self, _: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    fn list(&self, _: &str) -> Result<Vec<ObjectInfo>> {
        Ok(Vec::new())
    }
    fn delete(&self, key: &str) -> Result<()> {
        if self
            .fail_deletes
            .as_deref()
            .is_some_and(|f| key.contains(f))
        {
            return Err(Error::storage(
                &self.name,
                StorageKind::Denied,
                format!("cannot delete {key}: AccessDenied"),
            ));
        }
        if let Ok(mut deleted) = self.deleted.lock() {
            deleted.push(key.to_string());
        }
        Ok(())
    }
    fn list_partial(&self, _: &str) -> Result<Vec<ObjectInfo>> {
        Ok(Vec::new())
    }
}

/// One artifact located in each of `destinations`, in that order.
pub fn located_in(destinations: &[&str]) -> Located {
    let manifest = manifest("app", "2026-03-01T12:00:00Z", "abcd");
    let copies = destinations
        .iter()
        .map(|name| {
            let copy: Arc<dyn Destination> = Arc::new(Empty::new(name));
            (copy, artifact(name, &manifest, ArtifactState::Ok))
        })
        .collect();
    Located {
        manifest,
        copies,
        unreachable: Vec::new(),
        damaged: Vec::new(),
    }
}
