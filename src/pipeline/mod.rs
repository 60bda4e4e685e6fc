//! The streaming pipeline: plaintext → hash → compress → encrypt → hash → sink,
//! and its reverse for reading artifacts back. Every stage is a bounded
//! `Write` or `Read` adapter; no stage holds a whole backup in memory.

pub mod compress;
pub mod encrypt;
pub mod hash;
pub mod pipe;

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

pub use hash::{Digest, DigestCell, HashingReader, HashingWriter};

use crate::config::CompressionKind;
use crate::keys::{DecryptKey, EncryptKey};

/// Buffer size used between stages and for chunks sent across threads.
pub const CHUNK: usize = 256 * 1024;

/// Reads up to [`CHUNK`] bytes into a new buffer, fewer only at the end of
/// `reader`; an empty buffer means the end. Whole chunks can then be handed to
/// another thread without copying them again.
pub fn read_chunk(reader: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut chunk = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    Ok(chunk)
}

/// A writing stage that must be finished explicitly: `finish` writes trailers
/// (zstd frame end, age last chunk, …) and then finishes the stage below it.
/// A stage dropped without `finish` leaves a stream that does not decode.
pub trait Sink: Write + Send {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// A `Read` that may cross threads.
pub type Source = Box<dyn Read + Send>;

/// How the stored bytes were encrypted; recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionKind {
    None,
    Age,
    AgePassphrase,
    Openpgp,
}

impl EncryptionKind {
    pub fn of(key: &EncryptKey) -> Self {
        match key {
            EncryptKey::None => Self::None,
            EncryptKey::AgeRecipients(_) => Self::Age,
            EncryptKey::AgePassphrase(_) => Self::AgePassphrase,
            EncryptKey::OpenPgp(_) => Self::Openpgp,
        }
    }

    pub fn extension(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Age | Self::AgePassphrase => Some("age"),
            Self::Openpgp => Some("gpg"),
        }
    }
}

pub fn compression_extension(kind: CompressionKind) -> Option<&'static str> {
    match kind {
        CompressionKind::Zstd => Some("zst"),
        CompressionKind::Gzip => Some("gz"),
        CompressionKind::None => None,
    }
}

/// Builds the writing side: what is written to the returned sink is compressed,
/// then encrypted, then written to `out`.
pub fn encoder(
    compression: &crate::config::Compression,
    key: &EncryptKey,
    out: Box<dyn Sink>,
) -> io::Result<Box<dyn Sink>> {
    let encrypted = encrypt::encryptor(key, out)?;
    compress::compressor(compression, encrypted)
}

/// Builds the reading side: decrypts, then decompresses what `stored` yields.
pub fn decoder(
    stored: Source,
    compression: CompressionKind,
    encryption: EncryptionKind,
    key: &DecryptKey,
) -> crate::Result<Source> {
    let decrypted = encrypt::decryptor(stored, encryption, key)?;
    compress::decompressor(compression, decrypted)
        .map_err(|e| crate::Error::Run(format!("cannot start decompression: {e}")))
}

/// Copies `reader` into `writer` in `CHUNK`-sized pieces (`io::copy` uses 8 KiB,
/// which multiplies system calls and wake-ups between the pipeline's threads).
pub fn copy(
    reader: &mut (impl Read + ?Sized),
    writer: &mut (impl Write + ?Sized),
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Buffers small writes into large ones before the stage below.
pub struct Buffered(io::BufWriter<Box<dyn Sink>>);

impl Buffered {
    pub fn boxed(inner: Box<dyn Sink>) -> Box<dyn Sink> {
        Box::new(Buffered(io::BufWriter::with_capacity(CHUNK, inner)))
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Sink for Buffered {
    fn finish(self: Box<Self>) -> io::Result<()> {
        self.0.into_inner().map_err(|e| e.into_error())?.finish()
    }
}

/// A sink that discards what it is given (used to read artifacts through for verification).
pub struct Discard;

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for Discard {
    fn finish(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}
