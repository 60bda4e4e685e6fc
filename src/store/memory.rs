//! A destination that keeps its objects in memory, for tests of the engine
//! without servers or folders. It keeps the same promises as the real ones:
//! an upload is invisible under its key until `commit` (meanwhile it is listed
//! by `list_partial` under `<folder>/.partial/`), an aborted or dropped upload
//! leaves nothing, missing keys are `StorageKind::NotFound`.
//!
//! Clones share the same objects, so a test can keep one handle to look at
//! (or damage) what the engine wrote through another.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Destination, ObjectInfo, Upload};
use crate::error::StorageKind;
use crate::pipeline::Source;
use crate::{Error, Result};

/// The folder (below each key's own folder) of unfinished uploads, as on `fs`.
const PARTIAL_DIR: &str = ".partial";

#[derive(Debug, Clone)]
struct Stored {
    bytes: Arc<Vec<u8>>,
    modified: jiff::Timestamp,
}

#[derive(Debug, Default)]
struct Objects {
    committed: BTreeMap<String, Stored>,
    /// Unfinished uploads, by their temporary key.
    partial: BTreeMap<String, Stored>,
    next_upload: u64,
}

#[derive(Clone)]
pub struct MemoryDestination {
    name: String,
    objects: Arc<Mutex<Objects>>,
}

impl MemoryDestination {
    pub fn new(name: &str) -> Self {
        MemoryDestination {
            name: name.to_string(),
            objects: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A panicking test thread must not hide the objects from the others.
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_key(&self, key: &str) -> Result<()> {
        super::naming::check_key(&self.name, key)
    }

    fn not_found(&self, key: &str) -> Error {
        Error::storage(
            &self.name,
            StorageKind::NotFound,
            format!("{key} does not exist in {}", self.location()),
        )
    }

    /// Every committed key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().committed.keys().cloned().collect()
    }

    /// The temporary keys of uploads not yet committed or aborted.
    pub fn partial_keys(&self) -> Vec<String> {
        self.lock().partial.keys().cloned().collect()
    }

    /// The bytes under `key`, if committed.
    pub fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.lock()
            .committed
            .get(key)
            .map(|stored| stored.bytes.as_ref().clone())
    }

    /// Replaces (or creates) an object directly, e.g. to damage one on purpose.
    pub fn insert(&self, key: &str, bytes: &[u8]) {
        self.lock().committed.insert(
            key.to_string(),
            Stored {
                bytes: Arc::new(bytes.to_vec()),
                modified: jiff::Timestamp::now(),
            },
        );
    }

    /// Removes an object directly, bypassing any layer above.
    pub fn remove(&self, key: &str) {
        self.lock().committed.remove(key);
    }

    /// Sets when an object (committed or partial) was last written, to make
    /// it look old; false when there is no such object.
    pub fn set_modified(&self, key: &str, modified: jiff::Timestamp) -> bool {
        let mut objects = self.lock();
        let objects = &mut *objects;
        match objects
            .committed
            .get_mut(key)
            .or_else(|| objects.partial.get_mut(key))
        {
            Some(stored) => {
                stored.modified = modified;
                true
            }
            None => false,
        }
    }

    /// `<folder>/.partial/<file>.cairn-<pid>-<n>-memory` for `<folder>/<file>`:
    /// the owner format of cairn's other partial uploads, so `gc` knows it.
    fn temp_key(key: &str, n: u64) -> String {
        let (dir, file) = match key.rsplit_once('/') {
            Some((dir, file)) => (format!("{dir}/"), file),
            None => (String::new(), key),
        };
        format!(
            "{dir}{PARTIAL_DIR}/{file}.cairn-{}-{n:08x}-memory",
            std::process::id()
        )
    }
}

fn info(key: &str, stored: &Stored) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: stored.bytes.len() as u64,
        modified: Some(stored.modified),
    }
}

fn is_partial(key: &str) -> bool {
    key.split('/').any(|part| part == PARTIAL_DIR)
}

impl Destination for MemoryDestination {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        format!("memory:{}", self.name)
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.check_key(key)?;
        let mut objects = self.lock();
        objects.next_upload += 1;
        let temp = Self::temp_key(key, objects.next_upload);
        objects.partial.insert(
            temp.clone(),
            Stored {
                bytes: Arc::default(),
                modified: jiff::Timestamp::now(),
            },
        );
        Ok(Box::new(MemoryUpload {
            objects: Arc::clone(&self.objects),
            destination: self.name.clone(),
            key: key.to_string(),
            temp,
            buffer: Vec::new(),
            open: true,
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.insert(key, bytes);
        Ok(())
    }

    fn open(&self, key: &str) -> Result<Source> {
        self.check_key(key)?;
        let bytes = self
            .lock()
            .committed
            .get(key)
            .map(|stored| Arc::clone(&stored.bytes))
            .ok_or_else(|| self.not_found(key))?;
        Ok(Box::new(Cursor::new(SharedBytes(bytes))))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.check_key(key)?;
        self.bytes(key).ok_or_else(|| self.not_found(key))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.check_key(key)?;
        Ok(self
            .lock()
            .committed
            .get(key)
            .map(|stored| stored.bytes.len() as u64))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        Ok(self
            .lock()
            .committed
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(key, _)| !is_partial(key))
            .map(|(key, stored)| info(key, stored))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.check_key(key)?;
        let mut objects = self.lock();
        if objects.committed.remove(key).is_none() {
            objects.partial.remove(key);
        }
        Ok(())
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir = format!("{prefix}{PARTIAL_DIR}/");
        let objects = self.lock();
        // Objects written there directly count too, as on the other stores.
        let mut found: Vec<ObjectInfo> = [&objects.partial, &objects.committed]
            .into_iter()
            .flat_map(|map| {
                map.range(dir.clone()..)
                    .take_while(|(key, _)| key.starts_with(&dir))
                    .map(|(key, stored)| info(key, stored))
            })
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

/// Lets a reader share the stored bytes instead of copying them.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct MemoryUpload {
    objects: Arc<Mutex<Objects>>,
    destination: String,
    key: String,
    temp: String,
    buffer: Vec<u8>,
    open: bool,
}

impl MemoryUpload {
    fn lock(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn discard(&mut self) {
        if std::mem::take(&mut self.open) {
            let temp = self.temp.clone();
            self.lock().partial.remove(&temp);
        }
    }
}

impl Write for MemoryUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.open {
            return Err(io::Error::other("upload already closed"));
        }
        self.buffer.extend_from_slice(buf);
        let size = self.buffer.len();
        let temp = self.temp.clone();
        // The partial object shows how far the upload got, as on a real store.
        if let Some(partial) = self.lock().partial.get_mut(&temp) {
            partial.bytes = Arc::new(vec![0; size]);
            partial.modified = jiff::Timestamp::now();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for MemoryUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        if !std::mem::take(&mut self.open) {
            return Err(Error::destination(
                &self.destination,
                "upload already closed",
            ));
        }
        let bytes = Arc::new(std::mem::take(&mut self.buffer));
        let mut objects = self.lock();
        objects.partial.remove(&self.temp);
        objects.committed.insert(
            self.key.clone(),
            Stored {
                bytes,
                modified: jiff::Timestamp::now(),
            },
        );
        Ok(())
    }

    fn abort(mut self: Box<Self>) {
        self.discard();
    }
}

impl Drop for MemoryUpload {
    fn drop(&mut self) {
        // Neither committed nor aborted: an error path. Leave nothing behind.
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn uploads_are_invisible_until_commit_and_listed_as_partial_meanwhile() {
        let dest = MemoryDestination::new("m");
        let mut upload = dest.create("job/a.bin").unwrap();
        upload.write_all(b"hello").unwrap();
        assert_eq!(dest.size("job/a.bin").unwrap(), None);
        assert!(dest.list("job/").unwrap().is_empty());
        let partial = dest.list_partial("job/").unwrap();
        assert_eq!(partial.len(), 1);
        assert!(partial[0].key.starts_with("job/.partial/a.bin.cairn-"));
        assert_eq!(partial[0].size, 5);
        upload.commit().unwrap();
        assert!(dest.list_partial("job/").unwrap().is_empty());
        assert_eq!(dest.get("job/a.bin").unwrap(), b"hello");
        let mut read = Vec::new();
        dest.open("job/a.bin")
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"hello");
    }

    #[test]
    fn aborted_and_dropped_uploads_leave_nothing() {
        let dest = MemoryDestination::new("m");
        let mut upload = dest.create("job/a.bin").unwrap();
        upload.write_all(b"x").unwrap();
        upload.abort();
        let mut dropped = dest.create("job/b.bin").unwrap();
        dropped.write_all(b"y").unwrap();
        drop(dropped);
        assert!(dest.keys().is_empty());
        assert!(dest.partial_keys().is_empty());
    }

    #[test]
    fn missing_keys_are_not_found_and_deleting_twice_is_fine() {
        let dest = MemoryDestination::new("m");
        let kind = |e: Error| e.storage_kind();
        assert_eq!(
            dest.open("job/none").err().and_then(kind),
            Some(StorageKind::NotFound)
        );
        assert_eq!(
            dest.get("job/none").err().and_then(kind),
            Some(StorageKind::NotFound)
        );
        assert_eq!(dest.size("job/none").unwrap(), None);
        dest.put_atomic("job/x", b"1").unwrap();
        dest.delete("job/x").unwrap();
        dest.delete("job/x").unwrap();
        assert!(dest.keys().is_empty());
    }

    #[test]
    fn lists_by_prefix_in_key_order_and_clones_share_objects() {
        let dest = MemoryDestination::new("m");
        let other = dest.clone();
        for key in ["job/b", "job/a", "jobs/c", "job2/d", "job/.partial/e"] {
            other.insert(key, b"z");
        }
        let keys: Vec<String> = dest
            .list("job/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["job/a", "job/b"]);
        assert!(dest.put_atomic("job/../x", b"1").is_err());
        assert!(dest.create("").is_err());
    }

    #[test]
    fn put_atomic_overwrites_and_set_modified_ages_an_object() {
        let dest = MemoryDestination::new("m");
        dest.put_atomic("job/m", b"first").unwrap();
        dest.put_atomic("job/m", b"second").unwrap();
        assert_eq!(dest.bytes("job/m").unwrap(), b"second");
        let old = jiff::Timestamp::from_second(1_000_000).unwrap();
        assert!(dest.set_modified("job/m", old));
        assert_eq!(dest.list("job/").unwrap()[0].modified, Some(old));
        assert!(!dest.set_modified("job/none", old));
    }
}
