//! The catalog: the artifacts of a job, read from a destination itself. Nothing
//! here depends on local state, so a new machine with only the config sees
//! every backup.

use serde::Serialize;

use super::naming::{MANIFEST_SUFFIX, job_prefix};
use super::signature::{self, PublicKey, Trust};
use super::{Destination, Manifest};
use crate::{Error, Result};

/// Whether an artifact can be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "problem", rename_all = "kebab-case")]
pub enum ArtifactState {
    Ok,
    /// The manifest names a data object that is missing or of the wrong size.
    Broken(String),
}

#[derive(Debug, Clone)]
pub struct Artifact {
    pub destination: String,
    pub manifest_key: String,
    pub manifest: Manifest,
    pub state: ArtifactState,
    /// Whether the manifest's signature verifies (see `list_job_checked`).
    pub trust: Trust,
}

/// A manifest that cannot be read at all.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub destination: String,
    pub key: String,
    pub problem: String,
}

pub struct Listing {
    /// Oldest first.
    pub artifacts: Vec<Artifact>,
    pub unreadable: Vec<Unreadable>,
}

/// Lists `job`'s artifacts in `dest`, checking each manifest against its data object.
pub fn list_job(dest: &dyn Destination, job: &str) -> Result<Listing> {
    list_job_checked(dest, job, None)
}

/// `list_job`, and with `public_key` also each manifest's signature, checked
/// over the very bytes that were parsed.
pub fn list_job_checked(
    dest: &dyn Destination,
    job: &str,
    public_key: Option<&PublicKey>,
) -> Result<Listing> {
    let objects = dest.list(&job_prefix(job))?;
    let sizes: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut artifacts = Vec::new();
    let mut unreadable = Vec::new();
    for object in objects.iter().filter(|o| o.key.ends_with(MANIFEST_SUFFIX)) {
        let parsed = dest.get(&object.key).and_then(|bytes| {
            let manifest = Manifest::from_json(&bytes).map_err(Error::Run)?;
            Ok((manifest, bytes))
        });
        let (manifest, bytes) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                unreadable.push(Unreadable {
                    destination: dest.name().to_string(),
                    key: object.key.clone(),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        let state = if manifest.job != job || !manifest.data.key.starts_with(&job_prefix(job)) {
            ArtifactState::Broken(format!(
                "manifest belongs to job `{}` ({}), not `{job}`",
                manifest.job, manifest.data.key
            ))
        } else {
            match sizes.get(manifest.data.key.as_str()) {
                None => {
                    ArtifactState::Broken(format!("data object {} is missing", manifest.data.key))
                }
                Some(&size) if size != manifest.data.size => ArtifactState::Broken(format!(
                    "data object {} has {size} bytes, the manifest says {}",
                    manifest.data.key, manifest.data.size
                )),
                Some(_) => ArtifactState::Ok,
            }
        };
        let trust = match public_key {
            None => Trust::Unchecked,
            Some(public_key) => {
                let signature_key = signature::signature_key(&object.key);
                let signature = sizes.get(signature_key.as_str()).map(|&size| {
                    if size > signature::MAX_SIGNATURE_BYTES {
                        return Err(Error::Run(format!(
                            "{signature_key} has {size} bytes, more than a minisign signature"
                        )));
                    }
                    dest.get(&signature_key)
                });
                signature::assess(public_key, &bytes, signature)
            }
        };
        artifacts.push(Artifact {
            destination: dest.name().to_string(),
            manifest_key: object.key.clone(),
            manifest,
            state,
            trust,
        });
    }
    artifacts.sort_by(|a, b| {
        (a.manifest.created_at, &a.manifest.id).cmp(&(b.manifest.created_at, &b.manifest.id))
    });
    Ok(Listing {
        artifacts,
        unreadable,
    })
}

/// Picks one artifact: by id (or unique id prefix), else the newest at or before
/// `at`, else the newest. Only usable artifacts are candidates.
pub fn select<'a>(
    artifacts: &'a [Artifact],
    job: &str,
    id: Option<&str>,
    at: Option<jiff::Timestamp>,
) -> Result<&'a Artifact> {
    let mut usable = artifacts.iter().filter(|a| a.state == ArtifactState::Ok);
    if let Some(id) = id {
        let matches: Vec<&Artifact> = artifacts
            .iter()
            .filter(|a| a.manifest.id == id || a.manifest.id.starts_with(id))
            .collect();
        let exact: Vec<&&Artifact> = matches.iter().filter(|a| a.manifest.id == id).collect();
        let chosen = match (exact.as_slice(), matches.as_slice()) {
            ([one], _) => *one,
            ([], [one]) => one,
            ([], []) => {
                return Err(Error::NotFound(format!(
                    "job `{job}` has no artifact with id {id} (see `cairn list {job}`)"
                )));
            }
            _ => {
                return Err(Error::Usage(format!(
                    "id prefix {id} matches several artifacts of job `{job}`; give more of the id"
                )));
            }
        };
        return match &chosen.state {
            ArtifactState::Ok => Ok(chosen),
            ArtifactState::Broken(problem) => Err(Error::Integrity {
                job: job.to_string(),
                id: chosen.manifest.id.clone(),
                message: problem.clone(),
            }),
        };
    }
    let chosen = match at {
        Some(at) => usable.rfind(|a| a.manifest.created_at <= at),
        None => usable.next_back(),
    };
    chosen.ok_or_else(|| {
        Error::NotFound(match at {
            Some(at) => format!("job `{job}` has no complete artifact made at or before {at}"),
            None => format!("job `{job}` has no complete artifact yet: run `cairn backup {job}`"),
        })
    })
}
