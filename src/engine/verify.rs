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
    /// The copy is damaged (not merely unreachable).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub damaged: bool,
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

impl super::runs::Summary for VerifyReport {
    fn run_end(&self) -> crate::state::RunEnd {
        let errors: Vec<String> = self
            .copies
            .iter()
            .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.destination)))
            .collect();
        crate::state::RunEnd {
            success: self.ok(),
            bytes: None,
            artifact_id: Some(self.id.clone()),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            details: serde_json::to_value(self).ok(),
        }
    }
}

/// How deep a verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Stored bytes, then decrypt and decompress and check the plaintext (where
    /// this host holds the key; else the stored bytes and the age header).
    Full,
    /// Size and SHA-256 of the stored bytes only.
    Quick,
}

pub fn verify(job: &Job, located: &Located, progress: Arc<dyn Progress>) -> Result<VerifyReport> {
    verify_with(job, located, Depth::Full, progress)
}

pub fn verify_with(
    job: &Job,
    located: &Located,
    depth: Depth,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport> {
    let key = match depth {
        Depth::Full => verification_key(job)?,
        Depth::Quick => Err("quick: size and SHA-256 of the stored bytes only".to_string()),
    };
    let age_header = depth == Depth::Full;
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
            Err(note) => verify_stored(dest.as_ref(), manifest, age_header, progress.clone())
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
                damaged: false,
            },
            Err(e) => {
                tracing::error!(job = %job.name, id = %manifest.id, destination = %dest.name(), error = %e, "verification failed");
                CopyVerdict {
                    destination: dest.name().to_string(),
                    ok: false,
                    depth: "full",
                    note: None,
                    damaged: matches!(e, Error::Integrity { .. }),
                    error: Some(e.to_string()),
                }
            }
        });
    }
    let unreachable = located.unreachable.iter().map(|u| (u, false));
    for ((name, reason), damaged) in unreachable.chain(located.damaged.iter().map(|d| (d, true))) {
        copies.push(CopyVerdict {
            destination: name.clone(),
            ok: false,
            depth: "full",
            note: None,
            error: Some(reason.clone()),
            // "this copy is marked bad" was not read again: already marked.
            damaged: damaged && reason.starts_with("this copy:"),
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
    age_header: bool,
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
    if age_header && manifest.encryption.kind == crate::pipeline::EncryptionKind::Age {
        age::Decryptor::new_buffered(std::io::BufReader::new(dest.open(&manifest.data.key)?))
            .map_err(|e| damaged(format!("the age header cannot be read: {e}")))?;
    }
    Ok(())
}

/// Verifies a just-committed artifact in `destinations` as the job's `verify`
/// says (`off`: `None`), recorded as a verify run whose end is emitted. A copy
/// that fails marks the artifact bad.
pub fn after_backup(
    run: &super::job::Request<'_>,
    id: &str,
    destinations: &[Arc<dyn crate::store::Destination>],
) -> Option<VerifyReport> {
    let job = run.job;
    let depth = match job.verify {
        crate::config::VerifyMode::Off => return None,
        crate::config::VerifyMode::Quick => Depth::Quick,
        crate::config::VerifyMode::Full => Depth::Full,
    };
    let result = super::job::recorded(run, crate::state::RunKind::Verify, || {
        let selector = super::Selector {
            id: Some(id.to_string()),
            ..super::Selector::default()
        };
        let located = super::locate(run.config, job, destinations, &selector)?;
        verify_with(job, &located, depth, run.progress.clone())
    });
    if let Some(store) = run.store
        && let Ok(report) = &result
    {
        mark_if_damaged(store, report, "verification after backup");
    }
    Some(result.unwrap_or_else(|e| {
        tracing::error!(job = %job.name, id = %id, error = %e, "verification after backup failed");
        VerifyReport {
            job: job.name.clone(),
            id: id.to_string(),
            copies: vec![CopyVerdict {
                destination: String::new(),
                ok: false,
                depth: "full",
                note: None,
                damaged: matches!(e, Error::Integrity { .. }),
                error: Some(e.to_string()),
            }],
        }
    }))
}

/// Marks each copy that was found damaged bad (an unreachable destination is
/// not damage); the other copies keep their standing.
pub fn mark_if_damaged(store: &dyn crate::state::StateStore, report: &VerifyReport, what: &str) {
    for copy in report.copies.iter().filter(|c| c.damaged) {
        if let Some(e) = &copy.error {
            crate::state::marks::mark_copy_bad(
                store,
                &report.job,
                &report.id,
                &copy.destination,
                &format!("{what}: {e}"),
            );
        }
    }
}

/// Clears the marks that earlier verifications set on copies that now
/// verified fully and cleanly (the damage was transient or repaired). Marks
/// from drills stay: only a passing drill clears those. An old mark of the
/// whole artifact is dropped once every copy has a verdict of its own.
pub fn clear_if_verified(
    store: &dyn crate::state::StateStore,
    report: &VerifyReport,
    destinations: &[String],
) {
    let marks = store.copy_marks(&report.job).unwrap_or_default();
    let by_verification =
        |m: &crate::state::ArtifactMark| m.bad && m.reason.starts_with("verification");
    for copy in report.copies.iter().filter(|c| c.ok && c.depth == "full") {
        if marks
            .0
            .get(&(report.id.clone(), copy.destination.clone()))
            .is_some_and(by_verification)
        {
            crate::state::marks::clear_copy_mark(
                store,
                &report.job,
                &report.id,
                &copy.destination,
                "verified again: this copy matches",
            );
        }
    }
    let judged = |c: &&CopyVerdict| (c.ok && c.depth == "full") || c.damaged;
    let every_copy_judged = !report.copies.is_empty()
        && report.copies.iter().all(|c| judged(&c))
        && destinations.iter().all(|d| {
            report
                .copies
                .iter()
                .filter(judged)
                .any(|c| &c.destination == d)
        });
    if every_copy_judged
        && marks
            .0
            .get(&(report.id.clone(), crate::state::EVERY_COPY.to_string()))
            .is_some_and(by_verification)
        && let Err(e) = store.forget_whole_mark(&report.job, &report.id)
    {
        tracing::error!(job = %report.job, id = %report.id, error = %e, "cannot update the artifact's marks");
    }
}
