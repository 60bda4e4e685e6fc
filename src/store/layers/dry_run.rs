//! Dry runs: writes and deletes become recorded no-ops, reads go through.
//! Whoever asked for the dry run reads the record to say what would have been
//! written or deleted.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Result;
use crate::pipeline::Source;
use crate::store::{Destination, ObjectInfo, Upload};

/// What a dry run would have done to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WouldDo {
    /// An object of `size` bytes written under `key`.
    Write {
        key: String,
        size: u64,
    },
    Delete {
        key: String,
    },
}

/// The record of a dry run; clones share it.
#[derive(Debug, Clone, Default)]
pub struct DryRunRecord {
    actions: Arc<Mutex<Vec<WouldDo>>>,
}

impl DryRunRecord {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<WouldDo>> {
        self.actions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, action: WouldDo) {
        self.lock().push(action);
    }

    /// Everything the run would have done, in order.
    pub fn actions(&self) -> Vec<WouldDo> {
        self.lock().clone()
    }

    /// The keys that would have been written, with their sizes.
    pub fn written(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter_map(|action| match action {
                WouldDo::Write { key, size } => Some((key.clone(), *size)),
                WouldDo::Delete { .. } => None,
            })
            .collect()
    }

    /// The keys that would have been deleted.
    pub fn deleted(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|action| match action {
                WouldDo::Delete { key } => Some(key.clone()),
                WouldDo::Write { .. } => None,
            })
            .collect()
    }
}

pub struct DryRun {
    inner: Box<dyn Destination>,
    record: DryRunRecord,
}

impl DryRun {
    pub fn new(inner: Box<dyn Destination>, record: DryRunRecord) -> Self {
        DryRun { inner, record }
    }
}

impl Destination for DryRun {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        tracing::debug!(destination = %self.name(), key, "dry run: not writing");
        Ok(Box::new(DryRunUpload {
            record: self.record.clone(),
            key: key.to_string(),
            size: 0,
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        tracing::debug!(destination = %self.name(), key, "dry run: not writing");
        self.record.push(WouldDo::Write {
            key: key.to_string(),
            size: bytes.len() as u64,
        });
        Ok(())
    }

    fn open(&self, key: &str) -> Result<Source> {
        self.inner.open(key)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inner.get(key)
    }

    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        self.inner.get_at_most(key, limit)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        tracing::debug!(destination = %self.name(), key, "dry run: not deleting");
        self.record.push(WouldDo::Delete {
            key: key.to_string(),
        });
        Ok(())
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list_partial(prefix)
    }

    fn remove_empty_folder(&self, _key: &str) -> Result<()> {
        Ok(())
    }
}

/// Counts what would have been uploaded; records it on commit.
struct DryRunUpload {
    record: DryRunRecord,
    key: String,
    size: u64,
}

impl Write for DryRunUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for DryRunUpload {
    fn commit(self: Box<Self>) -> Result<()> {
        self.record.push(WouldDo::Write {
            key: self.key,
            size: self.size,
        });
        Ok(())
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryDestination;

    #[test]
    fn writes_and_deletes_are_recorded_and_nothing_changes() {
        let memory = MemoryDestination::new("m");
        memory.insert("job/old", b"old");
        let record = DryRunRecord::new();
        let dest = DryRun::new(Box::new(memory.clone()), record.clone());
        let mut upload = dest.create("job/new").unwrap();
        upload.write_all(&[0; 1000]).unwrap();
        upload.commit().unwrap();
        let mut aborted = dest.create("job/aborted").unwrap();
        aborted.write_all(b"x").unwrap();
        aborted.abort();
        dest.put_atomic("job/new.manifest.json", b"{}").unwrap();
        dest.delete("job/old").unwrap();
        dest.remove_empty_folder("job").unwrap();
        assert_eq!(
            record.written(),
            [
                ("job/new".to_string(), 1000),
                ("job/new.manifest.json".to_string(), 2)
            ]
        );
        assert_eq!(record.deleted(), ["job/old"]);
        assert_eq!(memory.keys(), ["job/old"]);
        assert!(memory.partial_keys().is_empty());
        // Reads see the destination as it is.
        assert_eq!(dest.get("job/old").unwrap(), b"old");
        assert_eq!(dest.list("job/").unwrap().len(), 1);
    }
}
