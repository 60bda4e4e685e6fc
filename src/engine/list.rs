//! `list`: every artifact of some jobs in all their destinations.

use serde::Serialize;

use crate::config::{CompressionKind, Config, Job};
use crate::engine::{CopyHealth, Opened, copy_health};
use crate::pipeline::EncryptionKind;
use crate::store::ArtifactState;
use crate::store::signature::Trust;

/// One line of `cairn list --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: String,
    pub job: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub created_at: jiff::Timestamp,
    pub destination: String,
    /// The data object's path inside its destination.
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub plaintext_size: u64,
    pub plaintext_sha256: String,
    pub source: String,
    pub codecs: Vec<String>,
    pub compression: CompressionKind,
    pub encryption: EncryptionKind,
    /// `signed`, `untrusted` (with `trust_problem`) or `unchecked` (the job sets
    /// no `signing.public_key`).
    #[serde(flatten)]
    pub trust: Trust,
}

/// Something that is in storage but is not a usable artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub job: String,
    pub destination: String,
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub problems: Vec<Problem>,
}

/// Lists each job in the destinations opened for it (all of the job's, or
/// only the one asked for). Copies marked bad are listed as problems, not as
/// artifacts.
pub fn list(config: &Config, jobs: &[(&Job, Vec<Opened>)]) -> Listing {
    let store = crate::state::open_or_warn(config);
    let marks_of = |job: &Job| {
        store
            .as_ref()
            .and_then(|s| s.copy_marks(&job.name).ok())
            .unwrap_or_default()
    };
    let mut out = Listing::default();
    for (job, destinations) in jobs {
        for opened in destinations {
            let dest_name = &opened.name;
            let listing = opened.list_job(config, job);
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    out.problems.push(Problem {
                        job: job.name.clone(),
                        destination: dest_name.clone(),
                        key: String::new(),
                        problem: e,
                    });
                    continue;
                }
            };
            for bad in listing.unreadable {
                out.problems.push(Problem {
                    job: job.name.clone(),
                    destination: bad.destination,
                    key: bad.key,
                    problem: bad.problem,
                });
            }
            let marks = marks_of(job);
            for artifact in listing.artifacts {
                if let CopyHealth::MarkedBad(mark) = copy_health(&artifact, &marks) {
                    out.problems.push(Problem {
                        job: job.name.clone(),
                        destination: artifact.destination.clone(),
                        key: artifact.manifest_key.clone(),
                        problem: format!(
                            "the copy of {} here is marked bad: {} (`cairn repair {}` replaces it from a good copy)",
                            artifact.manifest.id, mark.reason, job.name
                        ),
                    });
                    continue;
                }
                let m = artifact.manifest;
                match artifact.state {
                    ArtifactState::Ok => out.entries.push(Entry {
                        id: m.id,
                        job: m.job,
                        tag: m.tag,
                        created_at: m.created_at,
                        destination: artifact.destination,
                        key: m.data.key,
                        size: m.data.size,
                        sha256: m.data.sha256,
                        plaintext_size: m.plaintext.size,
                        plaintext_sha256: m.plaintext.sha256,
                        source: m.source.kind,
                        codecs: m.codecs,
                        compression: m.compression.kind,
                        encryption: m.encryption.kind,
                        trust: artifact.trust,
                    }),
                    ArtifactState::Broken(problem) => out.problems.push(Problem {
                        job: job.name.clone(),
                        destination: artifact.destination,
                        key: artifact.manifest_key,
                        problem,
                    }),
                }
            }
        }
    }
    out.entries.sort_by(|a, b| {
        (&a.job, a.created_at, &a.destination).cmp(&(&b.job, b.created_at, &b.destination))
    });
    out
}
