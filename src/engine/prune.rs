//! `prune`: applies a job's retention policy to what each destination lists.
//!
//! The policy (`retention.rs`) is pure; this module gathers the candidates from
//! the catalog (plus the "bad" marks of the state store), refuses to act when
//! the job's latest backup failed, and deletes what the policy does not keep:
//! the manifest first (which un-commits the artifact), then the data object.

use serde::Serialize;

use crate::Result;
use crate::config::{Config, Job};
use crate::engine::{CopyHealth, copy_health};
use crate::retention::{self, Candidate, Decision};
use crate::state::CopyMarks;
use crate::state::{RunFilter, RunKind, RunStatus, StateStore};
use crate::store::naming;
use crate::store::signature::{self, Trust};
use crate::store::{self, catalog};

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub id: String,
    pub created_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub id: String,
    pub created_at: jiff::Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub reason: String,
    pub bytes: u64,
    /// Set when the deletion itself failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Untrusted {
    pub id: String,
    pub created_at: jiff::Timestamp,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub job: String,
    pub destination: String,
    pub dry_run: bool,
    pub keep: Vec<Kept>,
    pub delete: Vec<Deleted>,
    /// Why nothing was deleted, when the safety rules stopped the prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Manifests that could not be read are never touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untouched: Vec<String>,
    /// Artifacts whose signature does not verify: neither kept by a rule nor
    /// deleted, for a person to decide about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untrusted: Vec<Untrusted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PruneReport {
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.delete.iter().any(|d| d.error.is_some())
    }
}

/// All destinations of one job, as one history entry.
#[derive(Debug, Clone, Serialize)]
pub struct JobPrune {
    pub job: String,
    pub destinations: Vec<PruneReport>,
}

impl crate::engine::runs::Summary for JobPrune {
    fn run_end(&self) -> crate::state::RunEnd {
        let errors: Vec<String> = self
            .destinations
            .iter()
            .flat_map(|d| {
                d.error
                    .iter()
                    .map(move |e| format!("{}: {e}", d.destination))
                    .chain(d.delete.iter().filter_map(|x| x.error.clone()))
            })
            .collect();
        let deleted = catalog::total_bytes(
            self.destinations
                .iter()
                .flat_map(|d| d.delete.iter().filter(|x| x.error.is_none()))
                .map(|x| x.bytes),
        );
        crate::state::RunEnd {
            success: errors.is_empty(),
            bytes: Some(deleted),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            details: serde_json::to_value(self).ok(),
            ..Default::default()
        }
    }
}

/// Why the latest backup run forbids pruning, if it does.
fn latest_backup_failed(store: Option<&dyn StateStore>, job: &Job) -> Option<String> {
    if job.prune_on_failure {
        return None;
    }
    let runs = store?
        .runs(&RunFilter {
            job: Some(job.name.clone()),
            kind: Some(RunKind::Backup),
            limit: Some(5),
            ..RunFilter::default()
        })
        .ok()?;
    let latest = runs.iter().find(|r| r.status != RunStatus::Running)?;
    (latest.status != RunStatus::Success).then(|| {
        format!(
            "the latest backup (run {} at {}) did not succeed: nothing is deleted until a backup succeeds (set prune_on_failure = true to prune anyway)",
            latest.id, latest.started_at
        )
    })
}

pub fn prune(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    dry_run: bool,
) -> JobPrune {
    let blocked = latest_backup_failed(store, job);
    let marks = store
        .and_then(|s| s.copy_marks(&job.name).ok())
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let destinations = job
        .destinations
        .iter()
        .map(|name| {
            let mut report = PruneReport {
                job: job.name.clone(),
                destination: name.clone(),
                dry_run,
                keep: Vec::new(),
                delete: Vec::new(),
                skipped: blocked.clone(),
                untouched: Vec::new(),
                untrusted: Vec::new(),
                error: None,
            };
            if let Err(e) = prune_destination(config, job, name, &marks, now, &mut report) {
                report.error = Some(e.to_string());
            }
            report
        })
        .collect();
    JobPrune {
        job: job.name.clone(),
        destinations,
    }
}

fn prune_destination(
    config: &Config,
    job: &Job,
    name: &str,
    marks: &CopyMarks,
    now: jiff::Timestamp,
    report: &mut PruneReport,
) -> Result<()> {
    let dest = store::open(config, name)?;
    let listing = catalog::list_job_cached(
        config,
        dest.as_ref(),
        &job.name,
        job.signing.public_key.as_ref(),
    )?;
    report.untouched = listing
        .unreadable
        .iter()
        .map(|u| format!("{}: unreadable manifest: {}", u.key, u.problem))
        .collect();
    // Artifacts that anyone who can write to storage may have planted are
    // neither counted nor deleted.
    let (untrusted, trusted): (Vec<&catalog::Artifact>, Vec<&catalog::Artifact>) = listing
        .artifacts
        .iter()
        .partition(|a| a.trust.is_untrusted());
    for artifact in untrusted {
        if let Trust::Untrusted(problem) = &artifact.trust {
            tracing::warn!(job = %job.name, destination = %name, id = %artifact.manifest.id, "untrusted artifact left alone: {problem}");
            report.untrusted.push(Untrusted {
                id: artifact.manifest.id.clone(),
                created_at: artifact.manifest.created_at,
                problem: problem.clone(),
            });
        }
    }
    // Only keys cairn's naming gives this job's artifacts are ever deleted; a
    // manifest that names anything else is reported and left alone.
    let mut ours: Vec<&catalog::Artifact> = Vec::new();
    for artifact in trusted {
        match naming::owned_keys(&job.name, &artifact.manifest_key, &artifact.manifest) {
            Ok(_) => ours.push(artifact),
            Err(why) => report.untouched.push(format!(
                "{}: not cairn's naming, left alone: {why}",
                artifact.manifest_key
            )),
        }
    }
    let candidates: Vec<Candidate> = ours
        .iter()
        .map(|a| Candidate {
            id: a.manifest.id.clone(),
            created_at: a.manifest.created_at,
            tag: a.manifest.tag.clone(),
            good: copy_health(a, marks) == CopyHealth::Good,
        })
        .collect();
    let decisions = retention::apply(job.retention_for(name), &candidates, now, &job.timezone);
    for (artifact, (_, decision)) in ours.iter().zip(decisions) {
        let m = &artifact.manifest;
        match decision {
            Decision::Keep(reasons) => report.keep.push(Kept {
                id: m.id.clone(),
                created_at: m.created_at,
                tag: m.tag.clone(),
                reasons: reasons.iter().map(ToString::to_string).collect(),
            }),
            // A mark from before marks were kept per copy does not say which
            // copy is damaged: such a copy is not deleted on the mark alone.
            Decision::Delete if marks.bad_only_as_whole(&m.id, name) => report.keep.push(Kept {
                id: m.id.clone(),
                created_at: m.created_at,
                tag: m.tag.clone(),
                reasons: vec![format!(
                    "marked bad before marks were kept per copy, so not deleted: `cairn verify {} {}` finds the damaged copy",
                    job.name, m.id
                )],
            }),
            Decision::Delete => {
                let reason = match copy_health(artifact, marks) {
                    CopyHealth::Broken(problem) => format!("broken copy: {problem}"),
                    CopyHealth::MarkedBad(mark) => format!(
                        "this copy is marked bad (copies in other destinations are judged on their own): {}",
                        mark.reason
                    ),
                    CopyHealth::Good => "no rule keeps it".to_string(),
                };
                report.delete.push(Deleted {
                    id: m.id.clone(),
                    created_at: m.created_at,
                    tag: m.tag.clone(),
                    reason,
                    bytes: m.data.size,
                    error: None,
                });
            }
        }
    }
    if report.dry_run || report.skipped.is_some() {
        return Ok(());
    }
    for (deleted, artifact) in report.delete.iter_mut().filter_map(|d| {
        let a = ours.iter().find(|a| a.manifest.id == d.id)?;
        Some((d, a))
    }) {
        let result = dest
            .delete(&artifact.manifest_key)
            .and_then(|()| match dest.delete(&artifact.manifest.data.key) {
                // The manifest is gone, so the artifact is; a data object left
                // behind is garbage that `gc` removes.
                Err(e) => {
                    tracing::warn!(job = %job.name, destination = %name, error = %e, "data object left for gc");
                    Ok(())
                }
                ok => ok,
            })
            .map(|()| {
                // Deleting a signature that is not there is fine; one left
                // behind is an orphan that `gc` removes.
                let signature_key = signature::signature_key(&artifact.manifest_key);
                if let Err(e) = dest.delete(&signature_key) {
                    tracing::warn!(job = %job.name, destination = %name, error = %e, "signature left for gc");
                }
            });
        match result {
            Ok(()) => {
                tracing::info!(job = %job.name, destination = %name, id = %deleted.id, reason = %deleted.reason, "pruned")
            }
            Err(e) => deleted.error = Some(e.to_string()),
        }
    }
    Ok(())
}

/// The policy in force in `destination`, in words.
pub fn describe_policy(job: &Job, destination: &str) -> String {
    let p = job.retention_for(destination);
    if p.is_empty() {
        return "no retention policy: every good artifact is kept".into();
    }
    let mut parts = Vec::new();
    let mut add = |name: &str, v: Option<u32>| {
        if let Some(n) = v.filter(|&n| n > 0) {
            parts.push(format!("{name} {n}"));
        }
    };
    add("last", p.keep_last);
    add("hourly", p.keep_hourly);
    add("daily", p.keep_daily);
    add("weekly", p.keep_weekly);
    add("monthly", p.keep_monthly);
    add("yearly", p.keep_yearly);
    if let Some(w) = p.keep_within.filter(|w| !w.is_zero()) {
        parts.push(format!("within {}s", w.as_secs()));
    }
    for (tag, n) in &p.keep_tags {
        parts.push(format!("tag {tag} {n}"));
    }
    parts.join(", ")
}
