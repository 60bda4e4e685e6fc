//! `prune`: applies a job's retention policy to what each destination lists.
//!
//! Plan, then apply. [`plan_destination`] is pure: from a destination's
//! listing, the state store's "bad" marks and the policy it decides what is
//! kept and why, what is deleted and why (damaged copies among them), what is
//! left alone, and whether the job's failed latest backup refuses the prune.
//! [`apply`] deletes what a plan says: the manifest first (which un-commits
//! the artifact), then the data object, then its signature. A dry run renders
//! the plan as the report and deletes nothing.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, Job};
use crate::engine::{CopyHealth, copy_health};
use crate::retention::{self, Candidate, Decision, Policy};
use crate::state::CopyMarks;
use crate::state::{RunFilter, RunKind, RunStatus, StateStore};
use crate::store::naming;
use crate::store::signature::{self, Trust};
use crate::store::{Destination, catalog};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// Why a plan keeps an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// A rule of the retention policy.
    Policy(retention::Reason),
    /// Marked bad before marks were kept per copy: the mark does not say which
    /// copy is damaged, so none is deleted on it alone.
    MarkedBadAsWhole { job: String, id: String },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Policy(reason) => reason.fmt(f),
            KeepReason::MarkedBadAsWhole { job, id } => write!(
                f,
                "marked bad before marks were kept per copy, so not deleted: `cairn verify {job} {id}` finds the damaged copy"
            ),
        }
    }
}

/// Why a plan deletes an artifact's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// No rule of the policy keeps it.
    NoRuleKeeps,
    /// The copy is damaged: its data object is missing or of the wrong size.
    Broken(String),
    /// Verification or a drill marked this copy bad.
    MarkedBad(String),
}

impl DeleteReason {
    /// Whether the copy is deleted because it is damaged.
    pub fn damaged(&self) -> bool {
        !matches!(self, DeleteReason::NoRuleKeeps)
    }
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteReason::NoRuleKeeps => f.write_str("no rule keeps it"),
            DeleteReason::Broken(problem) => write!(f, "broken copy: {problem}"),
            DeleteReason::MarkedBad(reason) => write!(
                f,
                "this copy is marked bad (copies in other destinations are judged on their own): {reason}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedKeep {
    pub id: String,
    pub created_at: jiff::Timestamp,
    pub tag: Option<String>,
    pub reasons: Vec<KeepReason>,
}

/// A copy the plan deletes, with the keys that make it up (cairn's own names only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelete {
    pub id: String,
    pub created_at: jiff::Timestamp,
    pub tag: Option<String>,
    pub reason: DeleteReason,
    pub bytes: u64,
    pub manifest_key: String,
    pub data_key: String,
    pub signature_key: String,
}

/// What pruning one destination will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPlan {
    pub job: String,
    pub destination: String,
    pub keep: Vec<PlannedKeep>,
    pub delete: Vec<PlannedDelete>,
    /// Why nothing is deleted, when the safety rules refuse the prune.
    pub refused: Option<String>,
    /// Unreadable manifests and foreign names: never touched.
    pub untouched: Vec<String>,
    /// Artifacts whose signature does not verify: neither kept nor deleted.
    pub untrusted: Vec<Untrusted>,
    /// The destination could not be opened or listed: nothing is planned.
    pub error: Option<String>,
}

impl DestinationPlan {
    fn failed(job: &str, destination: &str, refused: Option<String>, error: String) -> Self {
        DestinationPlan {
            job: job.to_string(),
            destination: destination.to_string(),
            keep: Vec::new(),
            delete: Vec::new(),
            refused,
            untouched: Vec::new(),
            untrusted: Vec::new(),
            error: Some(error),
        }
    }

    /// The damaged copies the plan deletes.
    pub fn damaged(&self) -> impl Iterator<Item = &PlannedDelete> {
        self.delete.iter().filter(|d| d.reason.damaged())
    }

    /// The plan as a report, before anything was deleted.
    pub fn report(&self, dry_run: bool) -> PruneReport {
        PruneReport {
            job: self.job.clone(),
            destination: self.destination.clone(),
            dry_run,
            keep: self
                .keep
                .iter()
                .map(|k| Kept {
                    id: k.id.clone(),
                    created_at: k.created_at,
                    tag: k.tag.clone(),
                    reasons: k.reasons.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            delete: self
                .delete
                .iter()
                .map(|d| Deleted {
                    id: d.id.clone(),
                    created_at: d.created_at,
                    tag: d.tag.clone(),
                    reason: d.reason.to_string(),
                    bytes: d.bytes,
                    error: None,
                })
                .collect(),
            skipped: self.refused.clone(),
            untouched: self.untouched.clone(),
            untrusted: self.untrusted.clone(),
            error: self.error.clone(),
        }
    }
}

/// What pruning a job will do, per destination in the job's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub job: String,
    pub destinations: Vec<DestinationPlan>,
}

impl PrunePlan {
    /// The plan as a report (a dry run): what would be kept and deleted.
    pub fn report(&self, dry_run: bool) -> JobPrune {
        JobPrune {
            job: self.job.clone(),
            destinations: self
                .destinations
                .iter()
                .map(|d| d.report(dry_run))
                .collect(),
        }
    }
}

/// Everything [`plan_destination`] decides from, besides the listing.
pub struct PlanInputs<'a> {
    pub job: &'a str,
    pub destination: &'a str,
    pub policy: &'a Policy,
    pub marks: &'a CopyMarks,
    pub now: jiff::Timestamp,
    pub time_zone: &'a jiff::tz::TimeZone,
    /// Why the prune is refused (the latest backup failed), if it is.
    pub refused: Option<String>,
}

/// Decides what pruning one destination does, from its listing alone: no I/O.
pub fn plan_destination(inputs: &PlanInputs, listing: &catalog::Listing) -> DestinationPlan {
    let PlanInputs {
        job,
        destination,
        marks,
        ..
    } = *inputs;
    let mut plan = DestinationPlan {
        job: job.to_string(),
        destination: destination.to_string(),
        keep: Vec::new(),
        delete: Vec::new(),
        refused: inputs.refused.clone(),
        untouched: listing
            .unreadable
            .iter()
            .map(|u| format!("{}: unreadable manifest: {}", u.key, u.problem))
            .collect(),
        untrusted: Vec::new(),
        error: None,
    };
    // Artifacts that anyone who can write to storage may have planted are
    // neither counted nor deleted.
    let (untrusted, trusted): (Vec<&catalog::Artifact>, Vec<&catalog::Artifact>) = listing
        .artifacts
        .iter()
        .partition(|a| a.trust.is_untrusted());
    for artifact in untrusted {
        if let Trust::Untrusted(problem) = &artifact.trust {
            plan.untrusted.push(Untrusted {
                id: artifact.manifest.id.clone(),
                created_at: artifact.manifest.created_at,
                problem: problem.clone(),
            });
        }
    }
    // Only keys cairn's naming gives this job's artifacts are ever deleted; a
    // manifest that names anything else is reported and left alone.
    let mut ours: Vec<(&catalog::Artifact, String)> = Vec::new();
    for artifact in trusted {
        match naming::owned_keys(job, &artifact.manifest_key, &artifact.manifest) {
            Ok((_, data_key)) => ours.push((artifact, data_key)),
            Err(why) => plan.untouched.push(format!(
                "{}: not cairn's naming, left alone: {why}",
                artifact.manifest_key
            )),
        }
    }
    let candidates: Vec<Candidate> = ours
        .iter()
        .map(|(a, _)| Candidate {
            id: a.manifest.id.clone(),
            created_at: a.manifest.created_at,
            tag: a.manifest.tag.clone(),
            good: copy_health(a, marks) == CopyHealth::Good,
        })
        .collect();
    let decisions = retention::apply(inputs.policy, &candidates, inputs.now, inputs.time_zone);
    for ((artifact, data_key), (_, decision)) in ours.iter().zip(decisions) {
        let m = &artifact.manifest;
        let keep = |reasons: Vec<KeepReason>| PlannedKeep {
            id: m.id.clone(),
            created_at: m.created_at,
            tag: m.tag.clone(),
            reasons,
        };
        match decision {
            Decision::Keep(reasons) => plan
                .keep
                .push(keep(reasons.into_iter().map(KeepReason::Policy).collect())),
            Decision::Delete if marks.bad_only_as_whole(&m.id, destination) => {
                plan.keep.push(keep(vec![KeepReason::MarkedBadAsWhole {
                    job: job.to_string(),
                    id: m.id.clone(),
                }]))
            }
            Decision::Delete => plan.delete.push(PlannedDelete {
                id: m.id.clone(),
                created_at: m.created_at,
                tag: m.tag.clone(),
                reason: match copy_health(artifact, marks) {
                    CopyHealth::Broken(problem) => DeleteReason::Broken(problem.to_string()),
                    CopyHealth::MarkedBad(mark) => DeleteReason::MarkedBad(mark.reason.clone()),
                    CopyHealth::Good => DeleteReason::NoRuleKeeps,
                },
                bytes: m.data.size,
                manifest_key: artifact.manifest_key.clone(),
                data_key: data_key.clone(),
                signature_key: signature::signature_key(&artifact.manifest_key),
            }),
        }
    }
    plan
}

/// Plans the prune of `job` in each of `destinations` (opened by the caller,
/// in the job's order; one that could not be opened is planned as failed):
/// lists them and decides. Deletes nothing.
pub fn plan(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    destinations: &[super::Opened],
) -> PrunePlan {
    let refused = latest_backup_failed(store, job);
    let marks = store
        .and_then(|s| s.copy_marks(&job.name).ok())
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let destinations = destinations
        .iter()
        .map(|opened| {
            let name = opened.name.as_str();
            let dest = match &opened.destination {
                Ok(dest) => dest,
                Err(e) => {
                    return DestinationPlan::failed(&job.name, name, refused.clone(), e.to_string());
                }
            };
            let listed = catalog::list_job_cached(
                config,
                dest.as_ref(),
                &job.name,
                job.signing.public_key.as_ref(),
            );
            match listed {
                Ok(listing) => {
                    let plan = plan_destination(
                        &PlanInputs {
                            job: &job.name,
                            destination: name,
                            policy: job.retention_for(name),
                            marks: &marks,
                            now,
                            time_zone: &job.timezone,
                            refused: refused.clone(),
                        },
                        &listing,
                    );
                    for u in &plan.untrusted {
                        tracing::warn!(job = %job.name, destination = %name, id = %u.id, "untrusted artifact left alone: {}", u.problem);
                    }
                    plan
                }
                Err(e) => DestinationPlan::failed(&job.name, name, refused.clone(), e.to_string()),
            }
        })
        .collect();
    PrunePlan {
        job: job.name.clone(),
        destinations,
    }
}

/// Deletes what `plan` says in `destinations` (matched by name); a refused or
/// failed destination plan deletes nothing.
pub fn apply(plan: &PrunePlan, destinations: &[Arc<dyn Destination>]) -> JobPrune {
    let mut report = plan.report(false);
    for (planned, reported) in plan.destinations.iter().zip(&mut report.destinations) {
        if planned.refused.is_some() || planned.error.is_some() {
            continue;
        }
        let Some(dest) = destinations
            .iter()
            .find(|d| d.name() == planned.destination)
        else {
            reported.error = Some(format!(
                "destination `{}` was not opened",
                planned.destination
            ));
            continue;
        };
        for (delete, deleted) in planned.delete.iter().zip(&mut reported.delete) {
            if let Err(e) = delete_copy(&plan.job, dest.as_ref(), delete) {
                deleted.error = Some(e.to_string());
            }
        }
    }
    report
}

/// The manifest first (the artifact is gone with it), then the data object and
/// the signature: what is left of those is garbage that `gc` removes.
fn delete_copy(job: &str, dest: &dyn Destination, delete: &PlannedDelete) -> crate::Result<()> {
    let name = dest.name();
    dest.delete(&delete.manifest_key)?;
    crate::fault_point::reached("prune.after_manifest_delete")
        .map_err(|e| crate::Error::storage(name, crate::StorageKind::Other, e))?;
    if let Err(e) = dest.delete(&delete.data_key) {
        tracing::warn!(job = %job, destination = %name, error = %e, "data object left for gc");
    }
    // Deleting a signature that is not there is fine.
    if let Err(e) = dest.delete(&delete.signature_key) {
        tracing::warn!(job = %job, destination = %name, error = %e, "signature left for gc");
    }
    tracing::info!(job = %job, destination = %name, id = %delete.id, reason = %delete.reason, "pruned");
    Ok(())
}

/// Opens the job's destinations, plans, and applies the plan (or, on a dry
/// run, reports it). A destination that cannot be opened is reported failed.
pub fn prune(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    destinations: Vec<super::Opened>,
    dry_run: bool,
) -> JobPrune {
    let planned = plan(config, job, store, &destinations);
    if dry_run {
        planned.report(true)
    } else {
        let opened: Vec<Arc<dyn Destination>> = destinations
            .into_iter()
            .filter_map(|d| d.destination.ok())
            .collect();
        apply(&planned, &opened)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{Empty, artifact, manifest};
    use crate::state::ArtifactMark;
    use crate::store::Manifest;
    use crate::store::catalog::{Artifact, ArtifactState, Listing};

    const NOW: &str = "2026-03-10T12:00:00Z";

    fn listing(artifacts: Vec<Artifact>) -> Listing {
        Listing {
            artifacts,
            unreadable: Vec::new(),
        }
    }

    /// Every one of `manifests`, intact, in `destination`.
    fn all_in(destination: &str, manifests: &[Manifest]) -> Listing {
        listing(
            manifests
                .iter()
                .map(|m| artifact(destination, m, ArtifactState::Ok))
                .collect(),
        )
    }

    fn keep_last(n: u32) -> Policy {
        Policy {
            keep_last: Some(n),
            ..Policy::default()
        }
    }

    fn mark(reason: &str) -> ArtifactMark {
        ArtifactMark {
            bad: true,
            reason: reason.into(),
            at: "2026-03-09T00:00:00Z".parse().unwrap(),
        }
    }

    fn plan_of(
        destination: &str,
        policy: &Policy,
        marks: &CopyMarks,
        refused: Option<String>,
        listed: &Listing,
    ) -> DestinationPlan {
        plan_destination(
            &PlanInputs {
                job: "app",
                destination,
                policy,
                marks,
                now: NOW.parse().unwrap(),
                time_zone: &jiff::tz::TimeZone::UTC,
                refused,
            },
            listed,
        )
    }

    fn ids(plan: &DestinationPlan) -> (Vec<&str>, Vec<&str>) {
        (
            plan.keep.iter().map(|k| k.id.as_str()).collect(),
            plan.delete.iter().map(|d| d.id.as_str()).collect(),
        )
    }

    /// Three artifacts a day apart, oldest first.
    fn three() -> Vec<Manifest> {
        [
            "2026-03-01T10:00:00Z",
            "2026-03-02T10:00:00Z",
            "2026-03-03T10:00:00Z",
        ]
        .iter()
        .zip(["aaaa", "bbbb", "cccc"])
        .map(|(at, suffix)| manifest("app", at, suffix))
        .collect()
    }

    #[test]
    fn what_no_rule_keeps_is_deleted_with_its_keys() {
        let m = three();
        let listed = all_in("a", &m);
        let plan = plan_of("a", &keep_last(1), &CopyMarks::default(), None, &listed);
        assert_eq!(
            ids(&plan),
            (
                vec![m[2].id.as_str()],
                vec![m[0].id.as_str(), m[1].id.as_str()]
            )
        );
        assert_eq!(
            plan.keep[0].reasons,
            [
                KeepReason::Policy(retention::Reason::Last(1)),
                KeepReason::Policy(retention::Reason::NewestGood)
            ]
        );
        let first = &plan.delete[0];
        assert_eq!(first.reason, DeleteReason::NoRuleKeeps);
        assert_eq!(first.manifest_key, naming::manifest_key("app", &m[0].id));
        assert_eq!(first.data_key, m[0].data.key);
        assert_eq!(
            first.signature_key,
            format!("{}.minisig", first.manifest_key)
        );
        assert_eq!(plan.damaged().count(), 0);
    }

    #[test]
    fn a_damaged_newest_copy_is_deleted_and_the_newest_good_one_is_kept() {
        let m = three();
        let listed = listing(vec![
            artifact("a", &m[0], ArtifactState::Ok),
            artifact("a", &m[1], ArtifactState::Ok),
            artifact(
                "a",
                &m[2],
                ArtifactState::Broken("the data object is missing".into()),
            ),
        ]);
        let plan = plan_of("a", &keep_last(1), &CopyMarks::default(), None, &listed);
        assert_eq!(
            ids(&plan),
            (
                vec![m[1].id.as_str()],
                vec![m[0].id.as_str(), m[2].id.as_str()]
            )
        );
        let damaged: Vec<&PlannedDelete> = plan.damaged().collect();
        assert_eq!(damaged.len(), 1);
        assert_eq!(
            damaged[0].reason,
            DeleteReason::Broken("the data object is missing".into())
        );
    }

    #[test]
    fn a_copy_marked_bad_is_deleted_here_and_judged_on_its_own_elsewhere() {
        let m = three();
        let mut marks = CopyMarks::default();
        marks.0.insert(
            (m[2].id.clone(), "a".into()),
            mark("verify: SHA-256 mismatch"),
        );
        let in_a = all_in("a", &m);
        let in_b = all_in("b", &m);
        let a = plan_of("a", &keep_last(1), &marks, None, &in_a);
        let b = plan_of("b", &keep_last(1), &marks, None, &in_b);
        // In `a` the newest good one is the middle artifact; the marked copy goes.
        assert_eq!(
            ids(&a),
            (
                vec![m[1].id.as_str()],
                vec![m[0].id.as_str(), m[2].id.as_str()]
            )
        );
        assert_eq!(
            a.delete[1].reason,
            DeleteReason::MarkedBad("verify: SHA-256 mismatch".into())
        );
        // In `b` the same artifact's copy is good: it is the one kept.
        assert_eq!(
            ids(&b),
            (
                vec![m[2].id.as_str()],
                vec![m[0].id.as_str(), m[1].id.as_str()]
            )
        );
    }

    #[test]
    fn a_missing_copy_costs_nothing_in_the_destination_that_has_one() {
        let m = three();
        // `b` lost the newest artifact entirely (never listed there).
        let in_b = listing(vec![
            artifact("b", &m[0], ArtifactState::Ok),
            artifact("b", &m[1], ArtifactState::Ok),
        ]);
        let b = plan_of("b", &keep_last(1), &CopyMarks::default(), None, &in_b);
        assert_eq!(ids(&b), (vec![m[1].id.as_str()], vec![m[0].id.as_str()]));
    }

    #[test]
    fn an_old_whole_artifact_mark_keeps_every_copy() {
        let m = three();
        let mut marks = CopyMarks::default();
        marks.0.insert(
            (m[0].id.clone(), crate::state::EVERY_COPY.into()),
            mark("drill: restore failed"),
        );
        let listed = all_in("a", &m);
        let plan = plan_of("a", &keep_last(1), &marks, None, &listed);
        assert_eq!(
            ids(&plan),
            (
                vec![m[0].id.as_str(), m[2].id.as_str()],
                vec![m[1].id.as_str()]
            )
        );
        assert_eq!(
            plan.keep[0].reasons,
            [KeepReason::MarkedBadAsWhole {
                job: "app".into(),
                id: m[0].id.clone()
            }]
        );
    }

    #[test]
    fn foreign_names_and_untrusted_artifacts_are_left_alone() {
        let m = three();
        let mut foreign = artifact("a", &m[0], ArtifactState::Ok);
        foreign.manifest.data.key = "app/../../etc/passwd".into();
        let mut untrusted = artifact("a", &m[1], ArtifactState::Ok);
        untrusted.trust = Trust::Untrusted("no signature".into());
        let listed = listing(vec![
            foreign,
            untrusted,
            artifact("a", &m[2], ArtifactState::Ok),
        ]);
        let plan = plan_of("a", &keep_last(1), &CopyMarks::default(), None, &listed);
        assert_eq!(ids(&plan), (vec![m[2].id.as_str()], vec![]));
        assert_eq!(plan.untrusted.len(), 1);
        assert_eq!(plan.untouched.len(), 1);
        assert!(
            plan.untouched[0].contains("not cairn's naming"),
            "{:?}",
            plan.untouched
        );
    }

    #[test]
    fn a_refused_plan_deletes_nothing_and_an_applied_one_deletes_manifest_first() {
        let m = three();
        let listed = all_in("a", &m);
        let refused = plan_of(
            "a",
            &keep_last(1),
            &CopyMarks::default(),
            Some("the latest backup did not succeed".into()),
            &listed,
        );
        let allowed = plan_of("a", &keep_last(2), &CopyMarks::default(), None, &listed);
        let dest = Empty::new("a");
        let deleted = dest.deleted.clone();
        let dests: Vec<Arc<dyn Destination>> = vec![Arc::new(dest)];
        let plan = |d: DestinationPlan| PrunePlan {
            job: "app".into(),
            destinations: vec![d],
        };
        let refused_report = apply(&plan(refused), &dests);
        assert_eq!(refused_report.destinations[0].delete.len(), 2);
        assert!(!refused_report.destinations[0].failed());
        assert!(deleted.lock().unwrap().is_empty());

        let report = apply(&plan(allowed.clone()), &dests);
        assert!(!report.destinations[0].failed());
        let d = &allowed.delete[0];
        assert_eq!(
            *deleted.lock().unwrap(),
            [
                d.manifest_key.clone(),
                d.data_key.clone(),
                d.signature_key.clone()
            ]
        );
    }

    #[test]
    fn a_failed_delete_is_reported_on_its_artifact() {
        let m = three();
        let listed = all_in("a", &m);
        let plan = plan_of("a", &keep_last(1), &CopyMarks::default(), None, &listed);
        let mut dest = Empty::new("a");
        dest.fail_deletes = Some(m[0].id.clone());
        let report = apply(
            &PrunePlan {
                job: "app".into(),
                destinations: vec![plan],
            },
            &[Arc::new(dest) as Arc<dyn Destination>],
        );
        let r = &report.destinations[0];
        assert!(r.failed());
        assert!(
            r.delete[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("AccessDenied"))
        );
        assert_eq!(r.delete[1].error, None);
    }
}
