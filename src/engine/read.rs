//! Reading an artifact back: stored bytes → (hash) → decrypt → decompress →
//! (hash) → a consumer, then both hashes and sizes checked against the manifest.
//!
//! The stored stream is read on its own thread to its very end, so its digest is
//! complete even when a decoder stops early, and damage is reported as damage
//! (not as whatever the decoder tripped over).

use std::io::{self, Read};
use std::sync::Arc;

use crate::keys::DecryptKey;
use crate::pipeline::{self, Digest, HashingReader, pipe};
use crate::progress::{CountingReader, Progress};
use crate::store::{Destination, Manifest};
use crate::{Error, Result};

/// What a consumer that sends whole chunks on reads them with.
pub use crate::pipeline::read_chunk;

/// What reading an artifact established.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub stored: Digest,
    pub plaintext: Digest,
}

/// Streams the plaintext of `manifest`'s data object in `dest` into `consume`.
/// Succeeds only if the stored bytes and the plaintext both match the manifest;
/// whatever `consume` wrote must be discarded otherwise.
pub fn read_artifact(
    dest: &dyn Destination,
    manifest: &Manifest,
    key: &DecryptKey,
    progress: Arc<dyn Progress>,
    consume: &mut dyn FnMut(&mut dyn Read) -> Result<()>,
) -> Result<ReadOutcome> {
    let stored = dest.open(&manifest.data.key)?;
    let damaged = |message: String| Error::Integrity {
        job: manifest.job.clone(),
        id: manifest.id.clone(),
        message,
    };

    let (decoded, stored_digest) = std::thread::scope(|scope| {
        let (mut pipe_writer, pipe_reader) = pipe::pipe(8);
        let reader = scope.spawn(move || -> io::Result<Digest> {
            let (mut hashing, digest) = HashingReader::new(CountingReader {
                inner: stored,
                progress,
            });
            let mut downstream_open = true;
            loop {
                let chunk = pipeline::read_chunk(&mut hashing)?;
                if chunk.is_empty() {
                    break;
                }
                // If the decoder stopped early, keep hashing to the end anyway.
                if downstream_open && pipe_writer.send(chunk).is_err() {
                    downstream_open = false;
                }
            }
            if downstream_open {
                let _ = pipe_writer.close();
            }
            digest
                .get()
                .cloned()
                .ok_or_else(|| io::Error::other("stored stream ended without a digest"))
        });

        let decoded = decode_into(pipe_reader, manifest, key, consume);
        let stored_digest = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        (decoded, stored_digest)
    });

    let stored_digest = stored_digest.map_err(|e| {
        Error::destination(
            dest.name(),
            format!("cannot read {}: {e}", manifest.data.key),
        )
    })?;
    check_stored(manifest, &stored_digest)?;
    let plaintext = decoded.map_err(|e| match e {
        Error::Crypto(_) | Error::Target { .. } | Error::Foreign(_) => e,
        other => damaged(format!("cannot decode the stored object: {other}")),
    })?;
    if plaintext != manifest.plaintext {
        return Err(damaged(format!(
            "the decoded data ({} bytes) does not match the plaintext recorded in the manifest ({} bytes, SHA-256 {})",
            plaintext.size, manifest.plaintext.size, manifest.plaintext.sha256
        )));
    }
    Ok(ReadOutcome {
        stored: stored_digest,
        plaintext,
    })
}

/// Streams the stored bytes of `manifest`'s data object, as they are (still
/// compressed and encrypted), into `consume`, then checks them against the
/// manifest. Whatever `consume` wrote must be discarded if this fails.
pub fn read_stored(
    dest: &dyn Destination,
    manifest: &Manifest,
    consume: &mut dyn FnMut(&mut dyn Read) -> Result<()>,
) -> Result<Digest> {
    let (mut hashing, digest) = HashingReader::new(dest.open(&manifest.data.key)?);
    consume(&mut hashing)?;
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| {
        Error::destination(
            dest.name(),
            format!("cannot read {}: {e}", manifest.data.key),
        )
    })?;
    let digest = digest
        .get()
        .cloned()
        .ok_or_else(|| Error::Run("the stored stream ended without a digest".into()))?;
    check_stored(manifest, &digest)?;
    Ok(digest)
}

/// Damage unless the stored bytes read are the ones the manifest records.
fn check_stored(manifest: &Manifest, stored: &Digest) -> Result<()> {
    let damaged = |message: String| Error::Integrity {
        job: manifest.job.clone(),
        id: manifest.id.clone(),
        message,
    };
    if stored.size != manifest.data.size {
        return Err(damaged(format!(
            "the stored object {} has {} bytes, the manifest says {} (truncated or replaced)",
            manifest.data.key, stored.size, manifest.data.size
        )));
    }
    if stored.sha256 != manifest.data.sha256 {
        return Err(damaged(format!(
            "the stored object {} does not match its SHA-256 in the manifest (its bytes were changed)",
            manifest.data.key
        )));
    }
    Ok(())
}

fn decode_into(
    stored: pipe::PipeReader,
    manifest: &Manifest,
    key: &DecryptKey,
    consume: &mut dyn FnMut(&mut dyn Read) -> Result<()>,
) -> Result<Digest> {
    let decoder = pipeline::decoder(
        Box::new(stored),
        manifest.compression.kind,
        manifest.encryption.kind,
        key,
    )?;
    let (mut plaintext, cell) = HashingReader::new(decoder);
    consume(&mut plaintext)?;
    io::copy(&mut plaintext, &mut io::sink())
        .map_err(|e| Error::Run(format!("decoding failed: {e}")))?;
    cell.get()
        .cloned()
        .ok_or_else(|| Error::Run("the decoded stream ended without a digest".into()))
}

/// A consumer that only reads (verification).
pub fn discard(stream: &mut dyn Read) -> Result<()> {
    io::copy(stream, &mut io::sink())
        .map(|_| ())
        .map_err(|e| Error::Run(format!("decoding failed: {e}")))
}
