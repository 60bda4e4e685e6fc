//! Test support for engine unit tests: an in-memory destination that can be
//! told to fail one operation, and a job config that needs no server.
//! (`store/memory.rs` and its fault layer replace this once merged.)

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::store::{Destination, ObjectInfo, Upload};
use crate::{Error, Result, StorageKind};

/// What a [`Memory`] destination is told to get wrong.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Uploads fail once this many bytes were written.
    pub write_after: Option<usize>,
    /// `Upload::commit` fails (nothing becomes visible).
    pub commit: bool,
    /// `put_atomic` fails for keys ending so.
    pub put_ending: Option<String>,
}

#[derive(Default)]
struct Objects {
    committed: BTreeMap<String, Vec<u8>>,
    partial: BTreeMap<String, Vec<u8>>,
}

/// A destination whose objects live in memory.
pub struct Memory {
    name: String,
    objects: Arc<Mutex<Objects>>,
    faults: Faults,
}

impl Memory {
    pub fn new(name: &str, faults: Faults) -> Arc<Memory> {
        Arc::new(Memory {
            name: name.to_string(),
            objects: Arc::default(),
            faults,
        })
    }

    /// Every committed key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .map(|o| o.committed.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Keys of uploads neither committed nor aborted.
    pub fn partial_keys(&self) -> Vec<String> {
        self.objects
            .lock()
            .map(|o| o.partial.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn fail(&self, message: &str) -> Error {
        Error::storage(&self.name, StorageKind::Transient, message)
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryUpload {
    key: String,
    objects: Arc<Mutex<Objects>>,
    written: Vec<u8>,
    faults: Faults,
    name: String,
}

impl Write for MemoryUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self
            .faults
            .write_after
            .is_some_and(|limit| self.written.len() + buf.len() > limit)
        {
            return Err(io::Error::other("injected: the connection was reset"));
        }
        self.written.extend_from_slice(buf);
        if let Ok(mut o) = self.objects.lock() {
            o.partial.insert(self.key.clone(), self.written.clone());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for MemoryUpload {
    fn commit(self: Box<Self>) -> Result<()> {
        let mut o = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        o.partial.remove(&self.key);
        if self.faults.commit {
            return Err(Error::storage(
                &self.name,
                StorageKind::Transient,
                "injected: commit failed",
            ));
        }
        o.committed.insert(self.key.clone(), self.written);
        Ok(())
    }

    fn abort(self: Box<Self>) {
        if let Ok(mut o) = self.objects.lock() {
            o.partial.remove(&self.key);
        }
    }
}

impl Destination for Memory {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        format!("memory:{}", self.name)
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        Ok(Box::new(MemoryUpload {
            key: key.to_string(),
            objects: self.objects.clone(),
            written: Vec::new(),
            faults: self.faults.clone(),
            name: self.name.clone(),
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if self
            .faults
            .put_ending
            .as_deref()
            .is_some_and(|end| key.ends_with(end))
        {
            return Err(self.fail("injected: write failed"));
        }
        self.objects()
            .committed
            .insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn open(&self, key: &str) -> Result<crate::pipeline::Source> {
        match self.objects().committed.get(key) {
            Some(bytes) => Ok(Box::new(io::Cursor::new(bytes.clone()))),
            None => Err(Error::storage(
                &self.name,
                StorageKind::NotFound,
                format!("{key} not found"),
            )),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.objects().committed.get(key).map(|b| b.len() as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .objects()
            .committed
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, b)| ObjectInfo {
                key: k.clone(),
                size: b.len() as u64,
                modified: Some(jiff::Timestamp::now()),
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.objects().committed.remove(key);
        Ok(())
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .objects()
            .partial
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, b)| ObjectInfo {
                key: k.clone(),
                size: b.len() as u64,
                modified: None,
            })
            .collect())
    }
}

/// A config in `dir` with one job `app` whose source prints `bytes` random
/// bytes, unencrypted, into destinations `a` and `b` (folders in `dir` that
/// the tests replace with [`Memory`] ones), with its state store in `dir`.
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
pub fn opener(
    destinations: Vec<Arc<Memory>>,
) -> impl Fn(&str) -> Result<Arc<dyn Destination>> + 'static {
    move |name| {
        destinations
            .iter()
            .find(|d| d.name() == name)
            .map(|d| d.clone() as Arc<dyn Destination>)
            .ok_or_else(|| Error::Usage(format!("unknown destination `{name}`")))
    }
}
