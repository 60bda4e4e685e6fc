//! `verify`: read every copy of an artifact back and check it end to end.

use std::sync::Arc;

use serde::Serialize;

use super::{Located, read};
use crate::config::{EncryptionConfig, Job};
use crate::keys::{self, DecryptKey};
use crate::progress::Progress;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct CopyVerdict {
    pub destination: String,
    pub ok: bool,
    /// `full` (stored bytes and plaintext checked) or `stored-only`.
    pub depth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub job: String,
    pub id: String,
    pub copies: Vec<CopyVerdict>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        !self.copies.is_empty() && self.copies.iter().all(|c| c.ok)
    }
}

/// Keys for a full check, or the reason only the stored bytes can be checked:
/// a host that holds only age recipients cannot decrypt, and says so.
fn verification_key(job: &Job) -> Result<std::result::Result<DecryptKey, String>> {
    match (&job.encryption, keys::decrypt_key(job)) {
        (_, Ok(key)) => Ok(Ok(key)),
        (EncryptionConfig::Age { identity_file: None, .. }, Err(_)) => Ok(Err(
            "no encryption.identity_file on this host: checked the stored bytes only, not the plaintext".into(),
        )),
        (_, Err(e)) => Err(e),
    }
}

pub fn verify(job: &Job, located: &Located, progress: Arc<dyn Progress>) -> Result<VerifyReport> {
    let key = verification_key(job)?;
    let manifest = &located.manifest;
    let mut copies = Vec::new();
    for (dest, _) in &located.copies {
        progress.start(
            &format!("verify {} on {}", manifest.id, dest.name()),
            Some(manifest.data.size),
        );
        let result = match &key {
            Ok(key) => read::read_artifact(
                dest.as_ref(),
                manifest,
                key,
                progress.clone(),
                &mut read::discard,
            )
            .map(|_| ("full", None)),
            Err(note) => verify_stored(dest.as_ref(), manifest, progress.clone())
                .map(|_| ("stored-only", Some(note.clone()))),
        };
        progress.finish();
        copies.push(match result {
            Ok((depth, note)) => CopyVerdict {
                destination: dest.name().to_string(),
                ok: true,
                depth,
                note,
                error: None,
            },
            Err(e) => {
                tracing::error!(job = %job.name, id = %manifest.id, destination = %dest.name(), error = %e, "verification failed");
                CopyVerdict {
                    destination: dest.name().to_string(),
                    ok: false,
                    depth: "full",
                    note: None,
                    error: Some(e.to_string()),
                }
            }
        });
    }
    for (name, reason) in located.unreachable.iter().chain(&located.damaged) {
        copies.push(CopyVerdict {
            destination: name.clone(),
            ok: false,
            depth: "full",
            note: None,
            error: Some(reason.clone()),
        });
    }
    Ok(VerifyReport {
        job: job.name.clone(),
        id: manifest.id.clone(),
        copies,
    })
}

/// Size and SHA-256 of the stored bytes, and a readable age header.
fn verify_stored(
    dest: &dyn crate::store::Destination,
    manifest: &crate::store::Manifest,
    progress: Arc<dyn Progress>,
) -> Result<()> {
    let stored = crate::progress::CountingReader {
        inner: dest.open(&manifest.data.key)?,
        progress,
    };
    let digest = crate::pipeline::hash::digest_of(stored).map_err(|e| {
        Error::destination(
            dest.name(),
            format!("cannot read {}: {e}", manifest.data.key),
        )
    })?;
    let damaged = |message: String| Error::Integrity {
        job: manifest.job.clone(),
        id: manifest.id.clone(),
        message,
    };
    if digest.size != manifest.data.size || digest.sha256 != manifest.data.sha256 {
        return Err(damaged(format!(
            "the stored object {} ({} bytes) does not match the manifest ({} bytes, SHA-256 {})",
            manifest.data.key, digest.size, manifest.data.size, manifest.data.sha256
        )));
    }
    age::Decryptor::new_buffered(std::io::BufReader::new(dest.open(&manifest.data.key)?))
        .map_err(|e| damaged(format!("the age header cannot be read: {e}")))?;
    Ok(())
}
