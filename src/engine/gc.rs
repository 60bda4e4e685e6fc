//! `gc`: removes what the commit protocol leaves behind when a run dies: data
//! objects that no manifest names and unfinished uploads, once they are older
//! than a grace period (so a backup still running elsewhere is never touched).
//! Only objects whose names cairn's naming gives the job are ever removed.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::Opened;
use crate::config::Job;
use crate::store::layers::dry_run::{DryRun, DryRunRecord};
use crate::store::naming::{self, MANIFEST_SUFFIX, job_prefix};
use crate::store::signature::{self, SIGNATURE_SUFFIX};
use crate::store::{Destination, ObjectInfo, catalog};

#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub key: String,
    pub size: u64,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub job: String,
    pub destination: String,
    pub dry_run: bool,
    pub removed: Vec<Removed>,
    /// Orphans younger than the grace period, left alone for now.
    pub too_young: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the job was not cleaned at all (it is running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl GcReport {
    /// A job left alone, e.g. because a backup of it is running.
    pub fn skipped(job: &Job, why: &str) -> GcReport {
        GcReport {
            job: job.name.clone(),
            destination: job.destinations.join(", "),
            dry_run: false,
            removed: Vec::new(),
            too_young: 0,
            error: None,
            skipped: Some(why.to_string()),
        }
    }
}

fn old_enough(object: &ObjectInfo, cutoff: jiff::Timestamp, grace: Duration) -> bool {
    match object.modified {
        Some(modified) => modified <= cutoff,
        // Without a time, only an explicit zero grace removes it.
        None => grace.is_zero(),
    }
}

/// Cleans `job` in each of its `destinations` (as [`super::open_job`] opened
/// them): one report per destination.
pub fn gc(job: &Job, destinations: &[Opened], grace: Duration, dry_run: bool) -> Vec<GcReport> {
    let cutoff = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(
            i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        ))
        .unwrap_or(jiff::Timestamp::MIN);
    let mut reports = Vec::new();
    for opened in destinations {
        let mut report = GcReport {
            job: job.name.clone(),
            destination: opened.name.clone(),
            dry_run,
            removed: Vec::new(),
            too_young: 0,
            error: None,
            skipped: None,
        };
        let result = match &opened.destination {
            // A dry run deletes through a layer that only records what it would delete.
            Ok(dest) if dry_run => {
                let dest = DryRun::new(Box::new(dest.clone()), DryRunRecord::new());
                collect(job, &dest, cutoff, grace, dry_run, &mut report).map_err(|e| e.to_string())
            }
            Ok(dest) => collect(job, dest.as_ref(), cutoff, grace, dry_run, &mut report)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        report.error = result.err();
        reports.push(report);
    }
    reports
}

fn collect(
    job: &Job,
    dest: &dyn Destination,
    cutoff: jiff::Timestamp,
    grace: Duration,
    dry_run: bool,
    report: &mut GcReport,
) -> crate::Result<()> {
    let name = dest.name();
    let listing = catalog::list_job(dest, &job.name)?;
    if !listing.unreadable.is_empty() {
        // A manifest we cannot read might name any object: remove nothing.
        return Err(crate::Error::Run(format!(
            "{} unreadable manifest(s) (e.g. {}): nothing removed until they are fixed or deleted",
            listing.unreadable.len(),
            listing.unreadable[0].key
        )));
    }
    // A manifest's signature belongs to it; one whose manifest is gone is an orphan.
    let named: HashSet<String> = listing
        .artifacts
        .iter()
        .flat_map(|a| {
            [
                a.manifest.data.key.clone(),
                signature::signature_key(&a.manifest_key),
            ]
        })
        .collect();
    let prefix = job_prefix(&job.name);
    let own_extension = match &job.source {
        crate::config::SourceConfig::Command { extension, .. } => Some(extension.as_str()),
        _ => None,
    };
    // Only names cairn's own naming produces are candidates: anything else in
    // the job's folder (a user's notes.txt) was not written by cairn.
    let orphans = dest
        .list(&prefix)?
        .into_iter()
        .filter(|o| !o.key.ends_with(MANIFEST_SUFFIX) && !named.contains(&o.key))
        .filter_map(|o| {
            let reason = if naming::data_object_id(&job.name, &o.key, own_extension).is_some() {
                "no manifest names this data object"
            } else if is_signature_name(&job.name, &o.key) {
                "signature of a manifest that is gone"
            } else {
                return None;
            };
            Some((o, reason))
        });
    let partials = dest
        .list_partial(&prefix)?
        .into_iter()
        .filter(|o| naming::is_partial_upload(&job.name, &o.key))
        .map(|o| (o, "unfinished upload"));
    for (object, reason) in orphans.chain(partials) {
        if !old_enough(&object, cutoff, grace) {
            report.too_young += 1;
            continue;
        }
        crate::fault_point::reached("gc.before_delete")
            .map_err(|e| crate::Error::storage(name, crate::StorageKind::Other, e))?;
        dest.delete(&object.key)?;
        if !dry_run {
            tracing::info!(job = %job.name, destination = %name, key = %object.key, "removed: {reason}");
        }
        report.removed.push(Removed {
            key: object.key,
            size: object.size,
            reason,
        });
    }
    Ok(())
}

/// Whether `key` is the name cairn gives the signature of one of `job`'s
/// manifests (`JOB/JOB-<id>.manifest.json.minisig`).
fn is_signature_name(job: &str, key: &str) -> bool {
    key.strip_suffix(SIGNATURE_SUFFIX)
        .and_then(|k| k.strip_suffix(MANIFEST_SUFFIX))
        .and_then(|k| k.strip_prefix(&format!("{job}/{job}-")))
        .is_some_and(naming::is_id)
}
