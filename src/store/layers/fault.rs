//! Fault injection, for tests only: fails or stalls a named operation of the
//! destination below on command, optionally only for keys containing a text
//! and only once a stream passed a number of bytes. The faults are armed
//! through a [`Faults`] handle that the test keeps while the engine uses the
//! destination.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::StorageKind;
use crate::pipeline::Source;
use crate::store::{Destination, ObjectInfo, Upload, io_error_kind};
use crate::{Error, Result};

/// The operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    /// A write to an upload (with `after_bytes`: once the upload passed them).
    Write,
    Commit,
    PutAtomic,
    Open,
    /// A read from an opened object (with `after_bytes`: once the read passed them).
    Read,
    Get,
    Size,
    List,
    ListPartial,
    Delete,
}

/// What happens when a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The operation fails with this kind and does nothing.
    Fail(StorageKind),
    /// The operation is carried out, then reported as failed: the answer of a
    /// request that timed out after the server had done it.
    FailAfterApplying(StorageKind),
    /// The operation waits this long, then goes on.
    Stall(Duration),
}

#[derive(Debug, Clone)]
pub struct Fault {
    op: Op,
    key_contains: Option<String>,
    after_bytes: Option<u64>,
    effect: Effect,
    /// How many more times it fires; `None`: every time.
    remaining: Option<usize>,
}

impl Fault {
    pub fn new(op: Op, effect: Effect) -> Self {
        Fault {
            op,
            key_contains: None,
            after_bytes: None,
            effect,
            remaining: None,
        }
    }

    pub fn fail(op: Op, kind: StorageKind) -> Self {
        Self::new(op, Effect::Fail(kind))
    }

    pub fn fail_after_applying(op: Op, kind: StorageKind) -> Self {
        Self::new(op, Effect::FailAfterApplying(kind))
    }

    pub fn stall(op: Op, duration: Duration) -> Self {
        Self::new(op, Effect::Stall(duration))
    }

    /// Only for keys (or listed prefixes) containing `text`.
    pub fn on_key(mut self, text: &str) -> Self {
        self.key_contains = Some(text.to_string());
        self
    }

    /// For `Write` and `Read`: only once the stream carried `bytes`.
    pub fn after_bytes(mut self, bytes: u64) -> Self {
        self.after_bytes = Some(bytes);
        self
    }

    /// Fires `n` times, then never again.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, op: Op, key: &str) -> bool {
        self.op == op
            && self
                .key_contains
                .as_ref()
                .is_none_or(|text| key.contains(text.as_str()))
    }
}

/// One fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub op: Op,
    pub key: String,
    pub effect: Effect,
}

#[derive(Debug, Default)]
struct State {
    armed: Vec<Fault>,
    fired: Vec<Fired>,
}

/// The commands of a fault layer; clones command the same layer.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Faults {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms a fault; the first armed fault that matches an operation fires.
    pub fn inject(&self, fault: Fault) {
        self.lock().armed.push(fault);
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        self.lock().armed.clear();
    }

    /// The faults that fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.lock().fired.clone()
    }

    /// The effect due for `op` on `key` with `position` bytes of its stream
    /// done, counting it as fired.
    fn take(&self, op: Op, key: &str, position: Option<u64>) -> Option<Effect> {
        let mut state = self.lock();
        let index = state.armed.iter().position(|fault| {
            fault.matches(op, key)
                && match (fault.after_bytes, position) {
                    (None, _) => true,
                    (Some(after), Some(position)) => position >= after,
                    (Some(_), None) => false,
                }
        })?;
        let fault = &mut state.armed[index];
        let effect = fault.effect;
        if let Some(remaining) = &mut fault.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                state.armed.remove(index);
            }
        }
        state.fired.push(Fired {
            op,
            key: key.to_string(),
            effect,
        });
        Some(effect)
    }

    /// How many bytes a stream at `position` may carry before a fault of
    /// `op` on `key` is due.
    fn room(&self, op: Op, key: &str, position: u64) -> Option<u64> {
        self.lock()
            .armed
            .iter()
            .filter(|fault| fault.matches(op, key))
            .filter_map(|fault| fault.after_bytes)
            .filter(|after| *after > position)
            .map(|after| after - position)
            .min()
    }
}

fn injected(destination: &str, op: Op, key: &str, kind: StorageKind) -> Error {
    Error::storage(
        destination,
        kind,
        format!("injected fault: {op:?} of {key} failed ({kind:?})"),
    )
}

/// Runs `operation` unless a fault of `op` on `key` says otherwise.
fn guarded<T>(
    faults: &Faults,
    destination: &str,
    op: Op,
    key: &str,
    operation: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match faults.take(op, key, None) {
        None => operation(),
        Some(Effect::Stall(duration)) => {
            std::thread::sleep(duration);
            operation()
        }
        Some(Effect::Fail(kind)) => Err(injected(destination, op, key, kind)),
        Some(Effect::FailAfterApplying(kind)) => {
            // Whatever it returned (an upload is dropped, so aborted), the caller hears of a failure.
            drop(operation());
            Err(injected(destination, op, key, kind))
        }
    }
}

pub struct FaultDestination {
    inner: Box<dyn Destination>,
    faults: Faults,
}

impl FaultDestination {
    pub fn new(inner: Box<dyn Destination>, faults: Faults) -> Self {
        FaultDestination { inner, faults }
    }
}

impl Destination for FaultDestination {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let upload = guarded(&self.faults, self.name(), Op::Create, key, || {
            self.inner.create(key)
        })?;
        Ok(Box::new(FaultUpload {
            inner: Some(upload),
            faults: self.faults.clone(),
            destination: self.name().to_string(),
            key: key.to_string(),
            written: 0,
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        guarded(&self.faults, self.name(), Op::PutAtomic, key, || {
            self.inner.put_atomic(key, bytes)
        })
    }

    fn open(&self, key: &str) -> Result<Source> {
        let inner = guarded(&self.faults, self.name(), Op::Open, key, || {
            self.inner.open(key)
        })?;
        Ok(Box::new(FaultReader {
            inner,
            faults: self.faults.clone(),
            key: key.to_string(),
            read: 0,
        }))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        guarded(&self.faults, self.name(), Op::Get, key, || {
            self.inner.get(key)
        })
    }

    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        guarded(&self.faults, self.name(), Op::Get, key, || {
            self.inner.get_at_most(key, limit)
        })
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        guarded(&self.faults, self.name(), Op::Size, key, || {
            self.inner.size(key)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        guarded(&self.faults, self.name(), Op::List, prefix, || {
            self.inner.list(prefix)
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        guarded(&self.faults, self.name(), Op::Delete, key, || {
            self.inner.delete(key)
        })
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        guarded(&self.faults, self.name(), Op::ListPartial, prefix, || {
            self.inner.list_partial(prefix)
        })
    }

    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        self.inner.remove_empty_folder(key)
    }
}

struct FaultUpload {
    /// `None` once a fault that applies the write failed it.
    inner: Option<Box<dyn Upload>>,
    faults: Faults,
    destination: String,
    key: String,
    written: u64,
}

impl Write for FaultUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(io::Error::other("upload already closed"));
        };
        match self.faults.take(Op::Write, &self.key, Some(self.written)) {
            None => {}
            Some(Effect::Stall(duration)) => std::thread::sleep(duration),
            Some(Effect::Fail(kind)) | Some(Effect::FailAfterApplying(kind)) => {
                return Err(io::Error::new(
                    io_error_kind(kind),
                    injected(&self.destination, Op::Write, &self.key, kind).to_string(),
                ));
            }
        }
        // Stop exactly where a fault waits, so that it fires after its bytes.
        let room = self.faults.room(Op::Write, &self.key, self.written);
        let len = room.map_or(buf.len(), |room| buf.len().min(room as usize));
        let n = inner.write(&buf[..len])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

impl Upload for FaultUpload {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let Some(inner) = self.inner.take() else {
            return Err(Error::destination(
                &self.destination,
                "upload already closed",
            ));
        };
        guarded(
            &self.faults,
            &self.destination,
            Op::Commit,
            &self.key,
            || inner.commit(),
        )
    }

    fn abort(mut self: Box<Self>) {
        if let Some(inner) = self.inner.take() {
            inner.abort();
        }
    }
}

struct FaultReader {
    inner: Source,
    faults: Faults,
    key: String,
    read: u64,
}

impl Read for FaultReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.faults.take(Op::Read, &self.key, Some(self.read)) {
            None => {}
            Some(Effect::Stall(duration)) => std::thread::sleep(duration),
            Some(Effect::Fail(kind)) | Some(Effect::FailAfterApplying(kind)) => {
                return Err(io::Error::new(
                    io_error_kind(kind),
                    format!("injected fault: Read of {} failed ({kind:?})", self.key),
                ));
            }
        }
        let room = self.faults.room(Op::Read, &self.key, self.read);
        let len = room.map_or(buf.len(), |room| buf.len().min(room as usize));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryDestination;

    fn setup() -> (MemoryDestination, FaultDestination, Faults) {
        let memory = MemoryDestination::new("m");
        let faults = Faults::new();
        let dest = FaultDestination::new(Box::new(memory.clone()), faults.clone());
        (memory, dest, faults)
    }

    #[test]
    fn a_fault_fires_on_its_operation_and_key_only() {
        let (memory, dest, faults) = setup();
        faults.inject(Fault::fail(Op::PutAtomic, StorageKind::NoSpace).on_key("manifest"));
        dest.put_atomic("job/data", b"1").unwrap();
        let error = dest.put_atomic("job/x.manifest.json", b"2").unwrap_err();
        assert_eq!(error.storage_kind(), Some(StorageKind::NoSpace));
        assert_eq!(memory.keys(), ["job/data"]);
        dest.delete("job/data").unwrap();
        assert_eq!(faults.fired().len(), 1);
        assert_eq!(faults.fired()[0].key, "job/x.manifest.json");
    }

    #[test]
    fn a_write_fault_fires_after_its_bytes_and_the_upload_leaves_nothing() {
        let (memory, dest, faults) = setup();
        faults.inject(Fault::fail(Op::Write, StorageKind::Transient).after_bytes(10));
        let mut upload = dest.create("job/big").unwrap();
        let error = upload.write_all(&[7; 25]).unwrap_err();
        assert_eq!(StorageKind::of_io(&error), StorageKind::Transient);
        assert_eq!(memory.list_partial("job/").unwrap()[0].size, 10);
        drop(upload);
        assert!(memory.keys().is_empty());
        assert!(memory.partial_keys().is_empty());
    }

    #[test]
    fn a_read_fault_fires_after_its_bytes() {
        let (memory, dest, faults) = setup();
        memory.insert("job/a", &[1; 100]);
        faults.inject(Fault::fail(Op::Read, StorageKind::Damaged).after_bytes(40));
        let mut read = Vec::new();
        let error = dest
            .open("job/a")
            .unwrap()
            .read_to_end(&mut read)
            .unwrap_err();
        assert_eq!(read.len(), 40);
        assert_eq!(StorageKind::of_io(&error), StorageKind::Damaged);
    }

    #[test]
    fn a_commit_failing_after_applying_it_leaves_the_object_but_reports_failure() {
        let (memory, dest, faults) = setup();
        faults.inject(Fault::fail_after_applying(Op::Commit, StorageKind::Transient).times(1));
        let mut upload = dest.create("job/a").unwrap();
        upload.write_all(b"data").unwrap();
        assert!(upload.commit().is_err());
        assert_eq!(memory.bytes("job/a").unwrap(), b"data");
        // Fired once: the next commit goes through.
        let mut upload = dest.create("job/b").unwrap();
        upload.write_all(b"data").unwrap();
        upload.commit().unwrap();
    }

    #[test]
    fn a_failed_create_or_open_does_nothing_and_stalls_go_on() {
        let (memory, dest, faults) = setup();
        faults.inject(Fault::fail(Op::Create, StorageKind::Denied).times(1));
        assert_eq!(
            dest.create("job/a").err().and_then(|e| e.storage_kind()),
            Some(StorageKind::Denied)
        );
        assert!(memory.partial_keys().is_empty());
        faults.inject(Fault::stall(Op::List, Duration::from_millis(50)));
        let started = std::time::Instant::now();
        dest.list("job/").unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        faults.clear();
        faults.inject(Fault::fail(Op::Open, StorageKind::NotFound));
        assert!(dest.open("job/a").is_err());
    }
}
