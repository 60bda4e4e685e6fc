//! Progress reporting as seen by the engine. The CLI decides how (and whether)
//! to show it.

use std::io::{self, Read, Write};
use std::sync::Arc;

pub trait Progress: Send + Sync {
    /// A new phase of work, with its expected size in bytes when known.
    fn start(&self, label: &str, total: Option<u64>);
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// Shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Counts bytes written through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub progress: Arc<dyn Progress>,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes read through it.
pub struct CountingReader<R> {
    pub inner: R,
    pub progress: Arc<dyn Progress>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
