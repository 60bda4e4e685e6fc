//! Timing and logging of every operation, at debug level (`CAIRN_LOG=debug`):
//! the destination's name, the operation, the key and how long it took. Keys
//! and names carry no credentials; locations are never logged here.

use std::io::{self, Write};
use std::time::Instant;

use crate::Result;
use crate::pipeline::Source;
use crate::store::{Destination, ObjectInfo, Upload};

pub struct Logging {
    inner: Box<dyn Destination>,
}

impl Logging {
    pub fn new(inner: Box<dyn Destination>) -> Self {
        Logging { inner }
    }

    fn timed<T>(&self, op: &'static str, key: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let result = run();
        log(self.inner.name(), op, key, started, None, &result);
        result
    }
}

fn log<T>(
    destination: &str,
    op: &'static str,
    key: &str,
    started: Instant,
    bytes: Option<u64>,
    result: &Result<T>,
) {
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(_) => tracing::debug!(destination, op, key, ms, bytes, "storage operation"),
        Err(e) => {
            tracing::debug!(destination, op, key, ms, bytes, error = %e, "storage operation failed")
        }
    }
}

impl Destination for Logging {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let started = Instant::now();
        let upload = self.timed("create", key, || self.inner.create(key))?;
        Ok(Box::new(LoggedUpload {
            inner: upload,
            destination: self.inner.name().to_string(),
            key: key.to_string(),
            started,
            bytes: 0,
        }))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.put_atomic(key, bytes);
        log(
            self.inner.name(),
            "put_atomic",
            key,
            started,
            Some(bytes.len() as u64),
            &result,
        );
        result
    }

    fn open(&self, key: &str) -> Result<Source> {
        self.timed("open", key, || self.inner.open(key))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.timed("get", key, || self.inner.get(key))
    }

    fn get_at_most(&self, key: &str, limit: u64) -> Result<Vec<u8>> {
        self.timed("get", key, || self.inner.get_at_most(key, limit))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.timed("size", key, || self.inner.size(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.timed("list", prefix, || self.inner.list(prefix))
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.timed("delete", key, || self.inner.delete(key))
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.timed("list_partial", prefix, || self.inner.list_partial(prefix))
    }

    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        self.timed("remove_empty_folder", key, || {
            self.inner.remove_empty_folder(key)
        })
    }
}

/// Logs the commit with the bytes written and the time since `create`.
struct LoggedUpload {
    inner: Box<dyn Upload>,
    destination: String,
    key: String,
    started: Instant,
    bytes: u64,
}

impl Write for LoggedUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Upload for LoggedUpload {
    fn commit(self: Box<Self>) -> Result<()> {
        let LoggedUpload {
            inner,
            destination,
            key,
            started,
            bytes,
        } = *self;
        let result = inner.commit();
        log(&destination, "commit", &key, started, Some(bytes), &result);
        result
    }

    fn abort(self: Box<Self>) {
        tracing::debug!(destination = %self.destination, key = %self.key, bytes = self.bytes, "upload aborted");
        self.inner.abort();
    }
}
