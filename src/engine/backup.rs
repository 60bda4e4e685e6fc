//! `backup`: source → pipeline → every destination at once, then the commit.
//!
//! Threads: the source writes plaintext into a bounded pipe (hashing it on the
//! way); the calling thread compresses, encrypts and hashes; one thread per
//! destination writes. Nothing is committed unless every stage finished cleanly;
//! a destination that fails does not stop the others.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::hooks;
use crate::cancel::{CANCELLED, Cancel, CancellableWriter};
use crate::config::Job;
use crate::keys::{self, EncryptKey};
use crate::pipeline::{self, Buffered, Digest, EncryptionKind, HashingWriter, Sink, pipe};
use crate::progress::{CountingWriter, Progress};
use crate::store::manifest::{CompressionInfo, EncryptionInfo, FORMAT, SourceInfo, StoredObject};
use crate::store::signature::{self, SigningKey};
use crate::store::{Destination, Manifest, Upload, naming};
use crate::{Error, Result};

/// Chunks in flight per destination; with `pipeline::CHUNK` this bounds memory.
const DESTINATION_QUEUE: usize = 4;
/// Chunks in flight between the source and the compressor.
const SOURCE_QUEUE: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub tag: Option<String>,
    /// Set by the daemon at shutdown: the run stops and commits nothing.
    pub cancel: Cancel,
    /// Checked right before each manifest is written (a replica's lease).
    pub fence: Option<Fence>,
}

/// A check that must pass for a backup to commit: an error aborts the
/// uploads and the run commits nothing. The caller decides what it checks
/// (a daemon's child: that its fire's lease is still its own).
#[derive(Clone)]
pub struct Fence(Arc<dyn Fn() -> Result<()> + Send + Sync>);

impl Fence {
    pub fn new(check: impl Fn() -> Result<()> + Send + Sync + 'static) -> Fence {
        Fence(Arc::new(check))
    }

    pub fn check(&self) -> Result<()> {
        (self.0)()
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fence")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationOutcome {
    pub destination: String,
    pub committed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub job: String,
    pub id: String,
    pub manifest: Manifest,
    pub destinations: Vec<DestinationOutcome>,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// `after` hooks that failed (the artifact itself is committed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_errors: Vec<String>,
    /// The read-back after the commit (`verify` of the job; none when `off`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<super::verify::VerifyReport>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl crate::engine::runs::Summary for BackupReport {
    fn run_end(&self) -> crate::state::RunEnd {
        let errors: Vec<String> = self
            .destinations
            .iter()
            .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.destination)))
            .chain(self.hook_errors.iter().cloned())
            .chain(
                self.verification
                    .iter()
                    .flat_map(|v| &v.copies)
                    .filter_map(|c| {
                        c.error
                            .as_ref()
                            .map(|e| format!("verification in {}: {e}", c.destination))
                    }),
            )
            .collect();
        crate::state::RunEnd {
            success: !self.failed(),
            bytes: Some(self.manifest.data.size),
            artifact_id: Some(self.id.clone()),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            details: Some(serde_json::json!({
                "plaintext_bytes": self.manifest.plaintext.size,
                "tag": self.manifest.tag,
                "destinations": self.destinations,
            })),
        }
    }
}

impl BackupReport {
    /// Some destination did not get the artifact.
    pub fn partially_failed(&self) -> bool {
        self.destinations.iter().any(|d| !d.committed)
    }

    /// The run should be reported as failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.partially_failed()
            || !self.hook_errors.is_empty()
            || self.verification.as_ref().is_some_and(|v| !v.ok())
    }
}

/// Backs `job` up into `destinations` (the job's, opened), with its hooks
/// around the run.
pub fn backup(
    job: &Job,
    destinations: &[Arc<dyn Destination>],
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    let result = hooks::before(job).and_then(|()| run(job, destinations, options, progress));
    let hook_errors = hooks::after(
        job,
        &hooks::Outcome {
            success: result.as_ref().is_ok_and(|r| !r.partially_failed()),
            artifact_id: result.as_ref().ok().map(|r| r.id.as_str()),
            error: result.as_ref().err().map(ToString::to_string),
        },
    );
    for error in &hook_errors {
        tracing::error!(job = %job.name, "{error}");
    }
    result.map(|mut report| {
        report.hook_errors = hook_errors;
        report
    })
}

fn run(
    job: &Job,
    destinations: &[Arc<dyn Destination>],
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    let started = Instant::now();
    // Fail closed: no key, no backup.
    let key = keys::encrypt_key(job)?;
    let signer = signing_key(job)?;
    let source = crate::source::for_job(job)?;

    let created_at = jiff::Timestamp::now();
    let id = naming::new_id(created_at);
    let encryption_kind = EncryptionKind::of(&key);
    let extensions: Vec<&str> = [
        Some(source.extension()),
        pipeline::compression_extension(job.compression.kind),
        encryption_kind.extension(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let data_key = naming::data_key(&job.name, &id, &extensions);

    let mut outcomes: Vec<DestinationOutcome> = Vec::new();
    let mut uploads: Vec<(&dyn Destination, Box<dyn Upload>)> = Vec::new();
    for dest in destinations {
        match dest.create(&data_key) {
            Ok(upload) => uploads.push((dest.as_ref(), upload)),
            Err(e) => {
                tracing::error!(job = %job.name, destination = %dest.name(), error = %e, "cannot start upload");
                outcomes.push(failed(dest.name(), e.to_string()));
            }
        }
    }
    if uploads.is_empty() {
        return Err(all_failed(&job.name, &outcomes));
    }

    progress.start(&format!("backup {}", job.name), source.size_hint());
    let streamed = std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut writers = Vec::new();
        for (dest, upload) in uploads {
            let (tx, rx) = sync_channel::<Arc<[u8]>>(DESTINATION_QUEUE);
            senders.push(Some(tx));
            // The run's span (job, run id) follows its lines into the threads.
            let span = tracing::Span::current();
            writers.push((
                dest,
                scope.spawn(move || span.in_scope(|| write_destination(upload, rx))),
            ));
        }
        let fanout = FanOut { senders };
        let (stored_hasher, stored_cell) = HashingWriter::new(Buffered::boxed(Box::new(fanout)));
        let chain = pipeline::encoder(&job.compression, &key, Box::new(stored_hasher));

        let (pipe_writer, mut pipe_reader) = pipe::pipe(SOURCE_QUEUE);
        let source_ref = source.as_ref();
        let source_progress = progress.clone();
        let cancel = options.cancel.clone();
        let span = tracing::Span::current();
        let producer = scope.spawn(move || -> Result<(serde_json::Value, Digest)> {
            let _run = span.enter();
            let counting = CountingWriter {
                inner: CancellableWriter {
                    inner: pipe_writer,
                    cancel,
                },
                progress: source_progress,
            };
            let (mut hashing, _) = HashingWriter::new(counting);
            let facts = source_ref.dump(&mut hashing)?;
            let (counting, digest) = hashing.into_parts();
            counting.inner.inner.close().map_err(|e| {
                Error::source(source_ref.kind(), format!("stream interrupted: {e}"))
            })?;
            Ok((facts, digest))
        });

        let streamed: std::result::Result<(), String> = match chain {
            Err(e) => Err(format!("cannot start the pipeline: {e}")),
            Ok(mut chain) => match pipeline::copy(&mut pipe_reader, &mut chain) {
                Ok(_) => chain.finish().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        drop(pipe_reader);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::source(&job.name, "the source thread panicked")));
        let written: Vec<_> = writers
            .into_iter()
            .map(|(dest, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err((None, "the destination thread panicked".to_string())));
                (dest, result)
            })
            .collect();
        (streamed, produced, stored_cell.get().cloned(), written)
    });
    progress.finish();
    let (streamed, produced, stored, written) = streamed;

    // Decide whether anything may be committed.
    let mut destination_errors: Vec<(String, String)> = Vec::new();
    let mut complete: Vec<(&dyn Destination, Box<dyn Upload>)> = Vec::new();
    for (dest, result) in written {
        match result {
            Ok(upload) => complete.push((dest, upload)),
            Err((_, message)) => destination_errors.push((dest.name().to_string(), message)),
        }
    }
    for (name, message) in &destination_errors {
        tracing::error!(job = %job.name, destination = %name, error = %message, "write failed");
        outcomes.push(failed(name, message.clone()));
    }
    // The first failure in the stream's order is the cause; later ones follow from it.
    let outcome = match (streamed, produced, stored) {
        (Err(_), _, _) if complete.is_empty() && !destination_errors.is_empty() => {
            Err(all_failed(&job.name, &outcomes))
        }
        (Err(message), _, _) => Err(Error::Run(format!(
            "backup of job `{}` failed; nothing was committed: {message}",
            job.name
        ))),
        (Ok(()), Err(e), _) => Err(e),
        (Ok(()), Ok(_), None) => Err(Error::Run("the pipeline ended without a result".into())),
        (Ok(()), Ok(produced), Some(stored)) if !complete.is_empty() => Ok((produced, stored)),
        _ => Err(all_failed(&job.name, &outcomes)),
    };
    let outcome = match outcome {
        Ok(_) if options.cancel.is_cancelled() => Err(Error::Run(format!(
            "backup of job `{}` {CANCELLED}; nothing was committed",
            job.name
        ))),
        other => other,
    };
    let ((facts, plaintext), stored) = match outcome {
        Ok(done) => done,
        Err(e) => {
            for (_, upload) in complete {
                upload.abort();
            }
            return Err(e);
        }
    };

    let manifest = Manifest {
        format: FORMAT,
        id: id.clone(),
        job: job.name.clone(),
        tag: options.tag.clone(),
        created_at,
        finished_at: jiff::Timestamp::now(),
        source: SourceInfo {
            kind: source.kind().to_string(),
            facts,
        },
        codecs: codecs(source.kind(), job, encryption_kind),
        compression: CompressionInfo {
            kind: job.compression.kind,
            level: job.compression.level,
        },
        encryption: EncryptionInfo {
            kind: encryption_kind,
            recipients: match &key {
                EncryptKey::AgeRecipients(r) => r.iter().map(ToString::to_string).collect(),
                _ => Vec::new(),
            },
        },
        data: StoredObject {
            key: data_key.clone(),
            size: stored.size,
            sha256: stored.sha256.clone(),
        },
        plaintext,
        cairn_version: crate::VERSION.to_string(),
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let manifest_key = naming::manifest_key(&job.name, &id);
    let manifest_bytes = manifest.to_json();
    let signature_key = signature::signature_key(&manifest_key);
    let signed = match signer.as_ref().map(|signer| {
        let file_name = manifest_key.rsplit('/').next().unwrap_or(&manifest_key);
        signer.sign(&manifest_bytes, file_name)
    }) {
        Some(Err(e)) => {
            for (_, upload) in complete {
                upload.abort();
            }
            return Err(Error::Crypto(format!(
                "cannot sign the manifest of job `{}`; nothing was committed: {e}",
                job.name
            )));
        }
        Some(Ok(bytes)) => Some(bytes),
        None => None,
    };
    let signature = signed
        .as_deref()
        .map(|bytes| (signature_key.as_str(), bytes));
    for (dest, upload) in complete {
        if let Some(fence) = &options.fence
            && let Err(e) = fence.check()
        {
            tracing::error!(job = %job.name, destination = %dest.name(), error = %e, "not committed: the fence check failed");
            upload.abort();
            outcomes.push(failed(dest.name(), e.to_string()));
            continue;
        }
        match commit(
            dest,
            upload,
            &data_key,
            stored.size,
            signature,
            &manifest_key,
            &manifest_bytes,
        ) {
            Ok(()) => {
                tracing::info!(job = %job.name, id = %id, destination = %dest.name(), bytes = stored.size, "artifact committed");
                outcomes.push(DestinationOutcome {
                    destination: dest.name().to_string(),
                    committed: true,
                    error: None,
                });
            }
            Err(e) => {
                tracing::error!(job = %job.name, destination = %dest.name(), error = %e, "commit failed");
                outcomes.push(failed(dest.name(), e.to_string()));
            }
        }
    }
    // Report in the job's destination order.
    outcomes.sort_by_key(|o| job.destinations.iter().position(|d| *d == o.destination));
    if outcomes.iter().all(|o| !o.committed) {
        return Err(all_failed(&job.name, &outcomes));
    }
    Ok(BackupReport {
        job: job.name.clone(),
        id,
        manifest,
        destinations: outcomes,
        duration: started.elapsed(),
        hook_errors: Vec::new(),
        verification: None,
    })
}

/// The job's signing key, loaded before anything is written. A job that checks
/// signatures but cannot sign would only make untrusted artifacts: refused.
pub fn signing_key(job: &Job) -> Result<Option<SigningKey>> {
    let Some(path) = &job.signing.key_file else {
        return match &job.signing.public_key {
            Some(_) => Err(Error::Crypto(format!(
                "job `{}` trusts only manifests signed by signing.public_key, but has no signing.key_file to sign with: its backups would be untrusted",
                job.name
            ))),
            None => Ok(None),
        };
    };
    let key = SigningKey::load(path)?;
    if let Some(trusted) = &job.signing.public_key
        && trusted.as_str() != key.public_key().as_str()
    {
        return Err(Error::Crypto(format!(
            "the signing key {} belongs to public key {}, but job `{}` trusts {}: its backups would be untrusted",
            path.display(),
            key.public_key().as_str(),
            job.name,
            trusted.as_str()
        )));
    }
    Ok(Some(key))
}

/// Data object first, checked, then the signature, then the manifest: the
/// manifest is the commit.
fn commit(
    dest: &dyn Destination,
    upload: Box<dyn Upload>,
    data_key: &str,
    size: u64,
    signature: Option<(&str, &[u8])>,
    manifest_key: &str,
    manifest: &[u8],
) -> Result<()> {
    let injected = |e: io::Error| Error::storage(dest.name(), crate::StorageKind::Other, e);
    crate::fault_point::reached("backup.before_data_commit").map_err(injected)?;
    upload.commit()?;
    match dest.size(data_key)? {
        Some(found) if found == size => {}
        found => {
            let _ = dest.delete(data_key);
            return Err(Error::destination(
                dest.name(),
                format!(
                    "stored object {data_key} has {found:?} bytes after writing {size}; not committed"
                ),
            ));
        }
    }
    if let Some((signature_key, signature)) = signature
        && let Err(e) = dest.put_atomic(signature_key, signature)
    {
        let _ = dest.delete(signature_key);
        let _ = dest.delete(data_key);
        return Err(e);
    }
    if let Err(e) = crate::fault_point::reached("backup.before_manifest")
        .map_err(injected)
        .and_then(|()| dest.put_atomic(manifest_key, manifest))
    {
        // The write may have landed before the error (a timeout after success, a
        // failed folder sync): a manifest that is there, whole, is the commit.
        if dest.get(manifest_key).is_ok_and(|found| found == manifest) {
            tracing::warn!(destination = %dest.name(), error = %e, "the manifest was written despite an error");
            return Ok(());
        }
        let _ = dest.delete(manifest_key);
        if let Some((signature_key, _)) = signature {
            let _ = dest.delete(signature_key);
        }
        let _ = dest.delete(data_key);
        return Err(e);
    }
    Ok(())
}

fn codecs(source_kind: &str, job: &Job, encryption: EncryptionKind) -> Vec<String> {
    let mut chain = vec![source_kind.to_string()];
    if job.compression.kind != crate::config::CompressionKind::None {
        chain.push(format!("{:?}", job.compression.kind).to_lowercase());
    }
    if encryption != EncryptionKind::None {
        chain.push(
            serde_json::to_value(encryption)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        );
    }
    chain
}

fn failed(destination: &str, error: String) -> DestinationOutcome {
    DestinationOutcome {
        destination: destination.to_string(),
        committed: false,
        error: Some(error),
    }
}

fn all_failed(job: &str, outcomes: &[DestinationOutcome]) -> Error {
    let reasons: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.error.as_ref().map(|e| {
                if e.starts_with("destination `") {
                    e.clone()
                } else {
                    format!("destination `{}`: {e}", o.destination)
                }
            })
        })
        .collect();
    Error::Run(format!(
        "backup of job `{job}` failed; nothing was committed: {}",
        if reasons.is_empty() {
            "no destination accepted the data".to_string()
        } else {
            reasons.join("; ")
        }
    ))
}

type WriteResult = std::result::Result<Box<dyn Upload>, (Option<Box<dyn Upload>>, String)>;

/// One destination's writer thread: takes chunks until the channel closes.
fn write_destination(mut upload: Box<dyn Upload>, chunks: Receiver<Arc<[u8]>>) -> WriteResult {
    for chunk in chunks {
        if let Err(e) = upload
            .write_all(&chunk)
            .and_then(|()| crate::fault_point::reached("backup.upload_write"))
        {
            upload.abort();
            return Err((None, e.to_string()));
        }
    }
    Ok(upload)
}

/// The last stage: hands each chunk to every destination still alive.
struct FanOut {
    senders: Vec<Option<SyncSender<Arc<[u8]>>>>,
}

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let chunk: Arc<[u8]> = Arc::from(buf);
        for slot in &mut self.senders {
            if let Some(tx) = slot
                && tx.send(chunk.clone()).is_err()
            {
                // That destination's thread stopped; its error is collected at join.
                *slot = None;
            }
        }
        if self.senders.iter().all(Option::is_none) {
            return Err(io::Error::other("every destination failed"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for FanOut {
    fn finish(self: Box<Self>) -> io::Result<()> {
        // Dropping the senders tells each destination thread the stream is complete.
        Ok(())
    }
}
