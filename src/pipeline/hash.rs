//! SHA-256 and byte counting as pass-through stages.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::Sink;

/// Size and SHA-256 of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub size: u64,
    pub sha256: String,
}

/// Where a hashing stage leaves its result once the stream is finished.
pub type DigestCell = Arc<OnceLock<Digest>>;

pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    size: u64,
    cell: DigestCell,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> (Self, DigestCell) {
        let cell = DigestCell::default();
        (
            HashingWriter {
                inner,
                hasher: sha2::Sha256::new(),
                size: 0,
                cell: cell.clone(),
            },
            cell,
        )
    }

    /// Records the digest and returns the inner writer.
    pub fn into_parts(self) -> (W, Digest) {
        let digest = Digest {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        };
        let _ = self.cell.set(digest.clone());
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Sink for HashingWriter<Box<dyn Sink>> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        let (inner, _) = self.into_parts();
        inner.finish()
    }
}

pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    size: u64,
    cell: DigestCell,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> (Self, DigestCell) {
        let cell = DigestCell::default();
        (
            HashingReader {
                inner,
                hasher: sha2::Sha256::new(),
                size: 0,
                cell: cell.clone(),
            },
            cell,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // End of stream: publish the digest exactly once.
            let hasher = std::mem::take(&mut self.hasher);
            let _ = self.cell.set(Digest {
                size: self.size,
                sha256: hex::encode(hasher.finalize()),
            });
        } else {
            self.hasher.update(&buf[..n]);
            self.size += n as u64;
        }
        Ok(n)
    }
}

impl<R> std::fmt::Debug for HashingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingReader")
            .field("size", &self.size)
            .finish()
    }
}

/// Reads `reader` to its end and returns the digest of what it yielded.
pub fn digest_of(reader: impl Read) -> io::Result<Digest> {
    let (mut hashing, cell) = HashingReader::new(reader);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(cell.get().cloned().unwrap_or(Digest {
        size: 0,
        sha256: hex::encode(sha2::Sha256::new().finalize()),
    }))
}
