//! Running a job: claim → validate → backup → verify → events → prune, and
//! the same claim/record/emit wrapper for the other kinds of runs. `cairn
//! backup` (and so the daemon's child runs) and any other front end call these;
//! they parse, call and render, nothing else.

use std::sync::Arc;
use std::time::Duration;

use super::backup::{self, BackupOptions, BackupReport};
use super::events::{Event, EventSink};
use super::gc::{self, GcReport};
use super::prune::{self, JobPrune};
use super::repair::{self, RepairReport, Scope};
use super::runs::{self, Summary};
use super::{Selector, verify};
use crate::config::{Config, Job};
use crate::progress::Progress;
use crate::state::{RunKind, StateStore, Trigger};
use crate::{Error, Result};

/// How long a claim holds without being released (a process that dies
/// holding it is recognised by its pid before that).
const CLAIM_LEASE_SECS: u64 = 24 * 3600;

/// Everything a run of one job needs from its caller.
pub struct Request<'a> {
    pub config: &'a Config,
    pub job: &'a Job,
    /// Where runs, claims and marks are kept; without one, runs are not
    /// recorded and nothing is claimed.
    pub store: Option<&'a dyn StateStore>,
    pub trigger: Trigger,
    /// Where the run's events go (the caller decides).
    pub events: &'a dyn EventSink,
    pub progress: Arc<dyn Progress>,
}

/// The exclusive claim on a job for this process, released when dropped.
pub struct Claim<'a> {
    store: Option<&'a dyn StateStore>,
    name: String,
    holder: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store {
            let _ = store.release(&self.name, &self.holder);
        }
    }
}

/// Claims `job` so that no other cairn process (CLI or daemon) runs it at the
/// same time. Without a state store there is nothing to claim against.
pub fn claim<'a>(store: Option<&'a dyn StateStore>, job: &str) -> Result<Claim<'a>> {
    let name = format!("job:{job}");
    let holder = crate::state::sqlite::holder();
    if let Some(s) = store
        && !s.claim(&name, &holder, CLAIM_LEASE_SECS)?
    {
        return Err(Error::Run(format!(
            "job `{job}` is already running in another cairn process; try again when it has finished (`cairn history {job}`)"
        )));
    }
    Ok(Claim {
        store,
        name,
        holder,
    })
}

/// Runs `operation` as one recorded run of the request's job and emits how
/// it ended. Claiming is the caller's (runs nested in a claimed one, such as
/// the verification after a backup, must not claim again).
pub fn recorded<T: Summary>(
    request: &Request<'_>,
    kind: RunKind,
    operation: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let job = &request.job.name;
    let result = runs::recorded(request.store, job, kind, request.trigger, operation);
    let end = runs::end_of(&result);
    request.events.emit(
        request.config,
        request.store,
        &Event::Finished {
            job,
            kind,
            end: &end,
        },
    );
    result
}

/// What a backup of one job did. The backup itself may have failed
/// (`backup` is an error) after the job was claimed.
pub struct BackupRun {
    pub backup: Result<BackupReport>,
    /// The retention run after a backup that fully succeeded, when asked for.
    pub prune: Option<JobPrune>,
}

/// Backs up the request's job: claim, validate, back up into every
/// destination, verify as the job says, then (`prune`, and only after a
/// fully successful backup) apply retention. Every step is a recorded run
/// whose end is emitted. An error means the job was not run at all (another
/// process holds it).
pub fn backup<'a>(
    request: &Request<'a>,
    options: &BackupOptions,
    prune: bool,
) -> Result<BackupRun> {
    let _claim = claim(request.store, &request.job.name)?;
    request.events.emit(
        request.config,
        request.store,
        &Event::Started {
            job: &request.job.name,
        },
    );
    let job = request.job;
    let result = recorded(request, RunKind::Backup, || {
        super::validate::before_backup(job, request.store, request.trigger)?;
        let destinations = super::destinations_of(request.config, job, None)?;
        let mut report = backup::backup(job, &destinations, options, request.progress.clone())?;
        report.verification = verify::after_backup(request, &report.id, &destinations);
        Ok(report)
    });
    let pruned = match &result {
        Ok(report) if prune && !report.failed() => Some(prune_recorded(request)),
        _ => None,
    };
    Ok(BackupRun {
        backup: result,
        prune: pruned,
    })
}

/// Retention for the job, as a recorded prune run, the claim already held.
fn prune_recorded(request: &Request<'_>) -> JobPrune {
    let result = recorded(request, RunKind::Prune, || {
        Ok(prune::prune(
            request.config,
            request.job,
            request.store,
            false,
        ))
    });
    // `prune` reports its failures inside; it never returns an error.
    result.unwrap_or_else(|_| JobPrune {
        job: request.job.name.clone(),
        destinations: Vec::new(),
    })
}

/// Applies the job's retention. A dry run neither claims nor records; a real
/// one fails when another process holds the job.
pub fn prune(request: &Request<'_>, dry_run: bool) -> Result<JobPrune> {
    if dry_run {
        return Ok(prune::prune(
            request.config,
            request.job,
            request.store,
            true,
        ));
    }
    let _claim = claim(request.store, &request.job.name)?;
    recorded(request, RunKind::Prune, || {
        Ok(prune::prune(
            request.config,
            request.job,
            request.store,
            false,
        ))
    })
}

/// Reads every copy of the selected artifact back, as a recorded verify run;
/// copies found damaged are marked bad, and marks of verification on copies
/// that now verify fully are cleared.
pub fn verify(request: &Request<'_>, selector: &Selector) -> Result<verify::VerifyReport> {
    let job = request.job;
    let report = recorded(request, RunKind::Verify, || {
        let destinations = super::destinations_of(request.config, job, selector.from.as_deref())?;
        let located = super::locate(request.config, job, &destinations, selector)?;
        verify::verify(job, &located, request.progress.clone())
    })?;
    if let Some(store) = request.store {
        verify::mark_if_damaged(store, &report, "verification");
        verify::clear_if_verified(store, &report, &job.destinations);
    }
    Ok(report)
}

/// Repairs or copies (`scope`) the job's artifacts. A dry run neither claims
/// nor records; a real one holds the job's claim.
pub fn repair(request: &Request<'_>, scope: &Scope, dry_run: bool) -> Result<RepairReport> {
    let (config, job, store) = (request.config, request.job, request.store);
    if dry_run {
        return repair::repair(config, job, store, scope, true);
    }
    let kind = match scope {
        Scope::Repair => RunKind::Repair,
        Scope::Copy { .. } => RunKind::Copy,
    };
    let _claim = claim(store, &job.name)?;
    recorded(request, kind, || {
        repair::repair(config, job, store, scope, false)
    })
}

/// Removes the job's leftovers older than `grace`, holding its claim: a
/// running backup's unfinished upload is not garbage. An error means the job
/// is running elsewhere and was left alone.
pub fn gc(request: &Request<'_>, grace: Duration, dry_run: bool) -> Result<Vec<GcReport>> {
    let _claim = claim(request.store, &request.job.name)?;
    Ok(gc::gc(request.config, &[request.job], grace, dry_run))
}
