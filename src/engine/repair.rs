//! `repair` and `copy`: write a good copy of an artifact into a destination
//! whose copy is damaged or missing.
//!
//! The stored bytes are copied as they are (never decrypted or re-encrypted),
//! streamed from the intact copy through a SHA-256 into `Destination::create`,
//! and committed only when the digest matches the manifest; the new object is
//! then read back and checked, and the manifest is written last (the commit
//! protocol of a backup). A repaired copy's bad mark is cleared.

use std::io::{Read, Write};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, Job};
use crate::engine::{CopyHealth, copy_health};
use crate::pipeline::{self, HashingReader};
use crate::retention::{self, Candidate, Decision};
use crate::state::{CopyMarks, StateStore};
use crate::store::{self, Artifact, Destination, ObjectInfo, catalog};
use crate::{Error, Result};

/// What to repair or copy.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every damaged or missing copy that its destination's retention keeps.
    Repair,
    /// Into `to` only: the newest good artifact, one id (or unique prefix), or
    /// every good artifact that `to`'s retention keeps.
    Copy { to: String, which: Which },
}

#[derive(Debug, Clone)]
pub enum Which {
    Newest,
    Id(String),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Dry run: what would be copied.
    Planned,
    Repaired,
    Failed,
}

/// One copy written (or to be written) from a good one.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub id: String,
    /// Where the copy is written.
    pub destination: String,
    /// Where the good copy is read.
    pub from: String,
    /// What was wrong with the copy in `destination`.
    pub problem: String,
    pub bytes: u64,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A copy that cannot be repaired, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Unrepairable {
    pub id: String,
    pub destination: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub job: String,
    /// `repair` or `copy`.
    pub kind: &'static str,
    pub dry_run: bool,
    pub actions: Vec<Action>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unrepairable: Vec<Unrepairable>,
    /// Destinations that could not be listed: (destination, error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<(String, String)>,
}

impl RepairReport {
    pub fn failed(&self) -> bool {
        !self.unrepairable.is_empty()
            || !self.unreachable.is_empty()
            || self.actions.iter().any(|a| a.status == Status::Failed)
    }
}

impl super::runs::Summary for RepairReport {
    fn run_end(&self) -> crate::state::RunEnd {
        let errors: Vec<String> = self
            .actions
            .iter()
            .filter_map(|a| {
                a.error
                    .as_ref()
                    .map(|e| format!("{} in `{}`: {e}", a.id, a.destination))
            })
            .chain(
                self.unrepairable
                    .iter()
                    .map(|u| format!("{} in `{}`: {}", u.id, u.destination, u.problem)),
            )
            .chain(
                self.unreachable
                    .iter()
                    .map(|(d, e)| format!("`{d}` cannot be listed: {e}")),
            )
            .collect();
        let written = catalog::total_bytes(
            self.actions
                .iter()
                .filter(|a| a.status == Status::Repaired)
                .map(|a| a.bytes),
        );
        crate::state::RunEnd {
            success: errors.is_empty(),
            bytes: Some(written),
            artifact_id: None,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            details: serde_json::to_value(self).ok(),
        }
    }
}

/// One destination of the job, as listed.
struct Listed {
    dest: Arc<dyn Destination>,
    artifacts: Vec<Artifact>,
}

/// Plans and (unless `dry_run`) performs the repair or copy of `job` among
/// its `destinations` (as [`super::open_job`] opened them).
pub fn repair(
    config: &Config,
    job: &Job,
    destinations: &[super::Opened],
    store: Option<&dyn StateStore>,
    scope: &Scope,
    dry_run: bool,
) -> Result<RepairReport> {
    if let Scope::Copy { to, .. } = scope
        && !job.destinations.iter().any(|d| d == to)
    {
        return Err(Error::Usage(format!(
            "job `{}` does not use destination `{to}` (it uses {}): add it to the job's destinations first, so that list, prune and restore --from see the copies",
            job.name,
            job.destinations.join(", ")
        )));
    }
    let marks = store
        .and_then(|s| s.copy_marks(&job.name).ok())
        .unwrap_or_default();
    let mut report = RepairReport {
        job: job.name.clone(),
        kind: match scope {
            Scope::Repair => "repair",
            Scope::Copy { .. } => "copy",
        },
        dry_run,
        actions: Vec::new(),
        unrepairable: Vec::new(),
        unreachable: Vec::new(),
    };
    let mut listed = Vec::new();
    for super::Opened { name, destination } in destinations {
        let result = destination
            .as_ref()
            .map_err(ToString::to_string)
            .and_then(|dest| {
                let listing = catalog::list_job_cached(
                    config,
                    dest.as_ref(),
                    &job.name,
                    job.signing.public_key.as_ref(),
                )
                .map_err(|e| e.to_string())?;
                Ok(Listed {
                    dest: dest.clone(),
                    artifacts: listing.artifacts,
                })
            });
        match result {
            Ok(l) => listed.push(l),
            Err(e) => {
                tracing::warn!(job = %job.name, destination = %name, error = %e, "cannot list destination");
                report.unreachable.push((name.clone(), e));
            }
        }
    }
    let plan = plan(
        job,
        scope,
        &listed,
        &marks,
        jiff::Timestamp::now(),
        &mut report,
    )?;
    for (target, source, artifact, problem) in plan {
        let mut action = Action {
            id: artifact.manifest.id.clone(),
            destination: listed[target].dest.name().to_string(),
            from: listed[source].dest.name().to_string(),
            problem,
            bytes: artifact.manifest.data.size,
            status: Status::Planned,
            error: None,
        };
        if !dry_run {
            let had_manifest = listed[target]
                .artifacts
                .iter()
                .any(|a| a.manifest_key == artifact.manifest_key);
            match copy_artifact(
                listed[source].dest.as_ref(),
                listed[target].dest.as_ref(),
                artifact,
                had_manifest,
            ) {
                Ok(()) => {
                    action.status = Status::Repaired;
                    tracing::info!(job = %job.name, id = %action.id, from = %action.from, destination = %action.destination, "copy written from a good copy");
                    if let Some(store) = store {
                        crate::state::marks::clear_copy_mark(
                            store,
                            &job.name,
                            &action.id,
                            &action.destination,
                            &format!("repaired from the good copy in `{}`", action.from),
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(job = %job.name, id = %action.id, destination = %action.destination, error = %e, "repair failed");
                    action.status = Status::Failed;
                    action.error = Some(e.to_string());
                }
            }
        }
        report.actions.push(action);
    }
    Ok(report)
}

/// (target listing, source listing, the good copy, what is wrong in the target).
type Planned<'a> = (usize, usize, &'a Artifact, String);

fn plan<'a>(
    job: &Job,
    scope: &Scope,
    listed: &'a [Listed],
    marks: &CopyMarks,
    now: jiff::Timestamp,
    report: &mut RepairReport,
) -> Result<Vec<Planned<'a>>> {
    let prefix = crate::store::naming::job_prefix(&job.name);
    let ours =
        |a: &&Artifact| a.manifest.job == job.name && a.manifest.data.key.starts_with(&prefix);
    // Every id of the job, oldest first, with the first good copy of it.
    let mut ids: Vec<(&Artifact, Option<usize>)> = Vec::new();
    for (i, l) in listed.iter().enumerate() {
        for a in l.artifacts.iter().filter(ours) {
            // An untrusted copy (unsigned or wrongly signed) may be planted:
            // never a source to copy from.
            let good = copy_health(a, marks) == CopyHealth::Good && !a.trust.is_untrusted();
            match ids.iter_mut().find(|(x, _)| x.manifest.id == a.manifest.id) {
                Some((x, source)) => {
                    if source.is_none() && good {
                        *x = a;
                        *source = Some(i);
                    }
                }
                None => ids.push((a, good.then_some(i))),
            }
        }
    }
    ids.sort_by(|(a, _), (b, _)| {
        (a.manifest.created_at, &a.manifest.id).cmp(&(b.manifest.created_at, &b.manifest.id))
    });
    let targets: Vec<usize> = match scope {
        Scope::Repair => (0..listed.len()).collect(),
        Scope::Copy { to, .. } => {
            match listed.iter().position(|l| l.dest.name() == to.as_str()) {
                Some(i) => vec![i],
                // Unreachable: already reported.
                None => return Ok(Vec::new()),
            }
        }
    };
    let chosen: Option<Vec<&str>> = match scope {
        Scope::Copy {
            which: Which::Id(id),
            ..
        } => {
            let matches: Vec<&str> = ids
                .iter()
                .map(|(a, _)| a.manifest.id.as_str())
                .filter(|x| *x == id.as_str() || x.starts_with(id.as_str()))
                .collect();
            match matches.as_slice() {
                [] => {
                    return Err(Error::NotFound(format!(
                        "job `{}` has no artifact with id {id} (see `cairn list {}`)",
                        job.name, job.name
                    )));
                }
                [one] => Some(vec![*one]),
                _ if matches.contains(&id.as_str()) => Some(vec![id.as_str()]),
                _ => {
                    return Err(Error::Usage(format!(
                        "id prefix {id} matches several artifacts of job `{}`; give more of the id",
                        job.name
                    )));
                }
            }
        }
        Scope::Copy {
            which: Which::Newest,
            ..
        } => match ids.iter().rev().find(|(_, source)| source.is_some()) {
            Some((a, _)) => Some(vec![a.manifest.id.as_str()]),
            None => {
                return Err(Error::NotFound(format!(
                    "job `{}` has no good artifact to copy",
                    job.name
                )));
            }
        },
        Scope::Copy {
            which: Which::All, ..
        }
        | Scope::Repair => None,
    };
    let mut planned = Vec::new();
    for &target in &targets {
        let name = listed[target].dest.name();
        // Without a chosen id, only what this destination's retention keeps is
        // written: a copy that prune removed on purpose stays removed.
        let kept: Option<std::collections::BTreeSet<String>> = chosen.is_none().then(|| {
            let candidates: Vec<Candidate> = ids
                .iter()
                .map(|(a, source)| Candidate {
                    id: a.manifest.id.clone(),
                    created_at: a.manifest.created_at,
                    tag: a.manifest.tag.clone(),
                    good: source.is_some(),
                })
                .collect();
            retention::apply(job.retention_for(name), &candidates, now, &job.timezone)
                .into_iter()
                .filter(|(_, d)| matches!(d, Decision::Keep(_)))
                .map(|(id, _)| id)
                .collect()
        });
        for (artifact, source) in &ids {
            let id = artifact.manifest.id.as_str();
            if chosen.as_ref().is_some_and(|c| !c.contains(&id)) {
                continue;
            }
            let here = listed[target]
                .artifacts
                .iter()
                .find(|a| a.manifest.id == id);
            let problem = match here.map(|a| copy_health(a, marks)) {
                Some(CopyHealth::Good) => continue,
                Some(CopyHealth::Broken(problem)) => format!("broken: {problem}"),
                Some(CopyHealth::MarkedBad(mark)) => format!("marked bad: {}", mark.reason),
                None => "missing".to_string(),
            };
            let wanted = kept.as_ref().is_none_or(|k| k.contains(id));
            match source {
                // A good copy exists, but this destination's retention does
                // not keep the artifact: prune removes what is left of it.
                Some(_) if !wanted => {}
                Some(source) => planned.push((target, *source, *artifact, problem)),
                None if here.is_none() && !wanted => {}
                None => report.unrepairable.push(Unrepairable {
                    id: id.to_string(),
                    destination: name.to_string(),
                    problem: format!(
                        "{problem}, and no destination holds a good copy to repair it from"
                    ),
                }),
            }
        }
    }
    Ok(planned)
}

/// Copies the stored bytes of `artifact` (the good copy in `source`) into
/// `target`, manifest last. `had_manifest`: the target already lists the
/// artifact (damaged), so a failed manifest write leaves its data object.
fn copy_artifact(
    source: &dyn Destination,
    target: &dyn Destination,
    artifact: &Artifact,
    had_manifest: bool,
) -> Result<()> {
    let manifest = &artifact.manifest;
    let manifest_object = ObjectInfo {
        key: artifact.manifest_key.clone(),
        size: 0,
        modified: None,
    };
    // The manifest's own bytes are copied, so a signature over them stays valid.
    let manifest_bytes = catalog::read_manifest_bytes(source, &manifest_object)?;
    let read_again = store::Manifest::from_json(&manifest_bytes).map_err(Error::Run)?;
    if read_again.id != manifest.id || read_again.data.sha256 != manifest.data.sha256 {
        return Err(Error::Run(format!(
            "the manifest {} in `{}` changed while it was being copied",
            artifact.manifest_key,
            source.name()
        )));
    }
    let key = &manifest.data.key;
    let damaged = |message: String| Error::Integrity {
        job: manifest.job.clone(),
        id: manifest.id.clone(),
        message,
    };
    let mut upload = target.create(key)?;
    let (mut reader, digest) = HashingReader::new(source.open(key)?);
    let mut buf = vec![0u8; pipeline::CHUNK];
    let copied = (|| -> std::io::Result<()> {
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            upload.write_all(&buf[..n])?;
        }
    })();
    if let Err(e) = copied {
        upload.abort();
        return Err(Error::destination(
            target.name(),
            format!("cannot copy {key} from `{}`: {e}", source.name()),
        ));
    }
    let read = digest.get().cloned();
    if read
        .as_ref()
        .is_none_or(|d| d.size != manifest.data.size || d.sha256 != manifest.data.sha256)
    {
        upload.abort();
        return Err(damaged(format!(
            "the copy in `{}` no longer matches its manifest while it was read; nothing was written",
            source.name()
        )));
    }
    if let Err(e) = upload.flush() {
        upload.abort();
        return Err(Error::destination(
            target.name(),
            format!("cannot write {key}: {e}"),
        ));
    }
    upload.commit()?;
    let undo = |e: Error| {
        if !had_manifest {
            let _ = target.delete(key);
        }
        e
    };
    // Read the new copy back, like a quick verify, before it is committed by its manifest.
    let written = target
        .open(key)
        .and_then(|r| {
            pipeline::hash::digest_of(r).map_err(|e| {
                Error::destination(target.name(), format!("cannot read {key} back: {e}"))
            })
        })
        .map_err(undo)?;
    if written.size != manifest.data.size || written.sha256 != manifest.data.sha256 {
        return Err(undo(Error::destination(
            target.name(),
            format!(
                "the new copy of {key} reads back as {} bytes with another SHA-256: the destination does not keep what it is given",
                written.size
            ),
        )));
    }
    let signature_key = crate::store::signature::signature_key(&artifact.manifest_key);
    if let Ok(Some(size)) = source.size(&signature_key)
        && size <= catalog::MAX_MANIFEST_BYTES
    {
        let signature = source.get(&signature_key).map_err(undo)?;
        target
            .put_atomic(&signature_key, &signature)
            .map_err(undo)?;
    }
    target
        .put_atomic(&artifact.manifest_key, &manifest_bytes)
        .map_err(undo)
}
