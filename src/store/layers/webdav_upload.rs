//! WebDAV uploads streamed as one chunked PUT (`store::webdav`) in place of
//! OpenDAL's writer, which buffers whole objects in memory. The PUT goes to a
//! `.partial/` name and `commit` moves it into place. Only `create` is
//! replaced; everything else goes to the destination below.

use crate::Result;
use crate::pipeline::Source;
use crate::store::webdav::WebdavStreamer;
use crate::store::{Destination, ObjectInfo, Upload, remote};

pub struct WebdavUpload {
    inner: Box<dyn Destination>,
    streamer: WebdavStreamer,
}

impl WebdavUpload {
    pub fn new(inner: Box<dyn Destination>, streamer: WebdavStreamer) -> Self {
        WebdavUpload { inner, streamer }
    }
}

impl Destination for WebdavUpload {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>> {
        let runtime = remote::runtime()?;
        let temp = remote::partial_key(key);
        self.streamer.ensure_folder(runtime, &temp, self.name())?;
        Ok(self.streamer.start(runtime, key, &temp, self.name()))
    }

    fn put_atomic(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put_atomic(key, bytes)
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
        self.inner.delete(key)
    }

    fn list_partial(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list_partial(prefix)
    }

    fn remove_empty_folder(&self, key: &str) -> Result<()> {
        self.inner.remove_empty_folder(key)
    }
}
