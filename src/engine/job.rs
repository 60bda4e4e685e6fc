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
use super::{Open, Selector, verify};
use crate::config::{Config, Job};
use crate::progress::Progress;
use crate::state::{RunKind, StateStore, Trigger};
use crate::store::Destination;
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
    /// Opens the job's destinations by name (`engine::configured`, or layered
    /// or fake ones); called inside the run, so a destination that cannot be
    /// opened fails the run like any other destination error.
    pub open: Box<Open<'a>>,
}

impl Request<'_> {
    /// The job's destinations (`from` alone, when given); the first that
    /// cannot be opened is the error.
    pub fn destinations(&self, from: Option<&str>) -> Result<Vec<Arc<dyn Destination>>> {
        super::destinations_with(&self.open, self.job, from)
    }

    /// Each of the job's destinations, a failure to open one kept beside the
    /// others.
    pub fn each_destination(&self) -> Vec<super::Opened> {
        super::open_job_with(&self.open, self.job, None)
    }
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
        let by = s.claim_holder(&name).ok().flatten().map(|h| {
            // `host:pid[:replica]`
            let mut parts = h.splitn(3, ':');
            let (host, pid, replica) = (parts.next(), parts.next(), parts.next());
            match (replica, host, pid) {
                (Some(r), _, _) => format!(" on replica {r}"),
                (None, Some(h), Some(p)) => format!(" on replica {h}:{p}"),
                _ => String::new(),
            }
        });
        return Err(Error::Run(format!(
            "job `{job}` is already running {}; try again when it has finished (`cairn history {job}`)",
            by.as_deref()
                .map_or("in another cairn process", str::trim_start)
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
pub fn backup(request: &Request<'_>, options: &BackupOptions, prune: bool) -> Result<BackupRun> {
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
        let destinations = request.destinations(None)?;
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
            request.each_destination(),
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
            request.each_destination(),
            true,
        ));
    }
    let _claim = claim(request.store, &request.job.name)?;
    recorded(request, RunKind::Prune, || {
        Ok(prune::prune(
            request.config,
            request.job,
            request.store,
            request.each_destination(),
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
        let destinations = request.destinations(selector.from.as_deref())?;
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
    let destinations = || request.each_destination();
    if dry_run {
        return repair::repair(config, job, &destinations(), store, scope, true);
    }
    let kind = match scope {
        Scope::Repair => RunKind::Repair,
        Scope::Copy { .. } => RunKind::Copy,
    };
    let _claim = claim(store, &job.name)?;
    recorded(request, kind, || {
        repair::repair(config, job, &destinations(), store, scope, false)
    })
}

/// Removes the job's leftovers older than `grace`, holding its claim: a
/// running backup's unfinished upload is not garbage. An error means the job
/// is running elsewhere and was left alone.
pub fn gc(request: &Request<'_>, grace: Duration, dry_run: bool) -> Result<Vec<GcReport>> {
    let _claim = claim(request.store, &request.job.name)?;
    let destinations = request.each_destination();
    Ok(gc::gc(request.job, &destinations, grace, dry_run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageKind;
    use crate::engine::events::Recorder;
    use crate::engine::testing::{self, Faulty};
    use crate::store::layers::fault::{Fault, Op};

    const MIB: usize = 1024 * 1024;

    fn request<'a>(
        config: &'a Config,
        store: Option<&'a dyn StateStore>,
        events: &'a Recorder,
        destinations: &[&Faulty],
    ) -> Request<'a> {
        Request {
            config,
            job: config.job("app").expect("the test job"),
            store,
            trigger: Trigger::Manual,
            events,
            progress: Arc::new(crate::progress::Silent),
            open: Box::new(testing::opener(destinations)),
        }
    }

    /// A backup of `bytes` random bytes into `a` (sound) and `b` (with `fault`).
    fn backup(fault: Fault, bytes: usize) -> (BackupRun, Faulty, Faulty, Vec<String>) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = testing::config(dir.path(), bytes, "quick");
        let (a, b) = (Faulty::new("a"), Faulty::new("b"));
        b.faults.inject(fault);
        let events = Recorder::default();
        let run = super::backup(
            &request(&config, None, &events, &[&a, &b]),
            &BackupOptions::default(),
            false,
        )
        .expect("nothing else holds the job");
        (run, a, b, events.lines())
    }

    fn outcome<'r>(report: &'r BackupReport, name: &str) -> &'r backup::DestinationOutcome {
        report
            .destinations
            .iter()
            .find(|d| d.destination == name)
            .expect("every destination has an outcome")
    }

    #[test]
    fn one_destination_failing_mid_stream_leaves_the_others_committed_and_is_named() {
        let (run, a, b, events) = backup(
            Fault::fail(Op::Write, StorageKind::Transient).after_bytes(256 * 1024),
            2 * MIB,
        );
        let report = run.backup.expect("the backup ran");
        assert!(report.failed());
        assert!(outcome(&report, "a").committed);
        assert!(!outcome(&report, "b").committed);
        let error = outcome(&report, "b").error.as_deref().unwrap_or_default();
        assert!(error.contains("injected fault: Write"), "{error}");
        assert_eq!(a.artifacts(), 1);
        assert_eq!(b.artifacts(), 0);
        assert!(b.memory.keys().is_empty(), "{:?}", b.memory.keys());
        assert!(
            b.memory.partial_keys().is_empty(),
            "{:?}",
            b.memory.partial_keys()
        );
        // The committed copy was verified; the run's end names the failure.
        let verified = report.verification.as_ref().expect("verify = quick");
        assert!(verified.ok(), "{verified:?}");
        assert_eq!(
            events,
            ["started app", "verify app succeeded", "backup app failed"]
        );
    }

    #[test]
    fn a_manifest_that_cannot_be_written_deletes_the_data_object_there() {
        let (run, a, b, _) = backup(
            Fault::fail(Op::PutAtomic, StorageKind::NoSpace).on_key(".manifest.json"),
            64 * 1024,
        );
        let report = run.backup.expect("one destination committed");
        let error = outcome(&report, "b").error.as_deref().unwrap_or_default();
        assert!(error.contains("PutAtomic"), "{error}");
        assert_eq!(a.artifacts(), 1);
        // The data object was committed, then removed with the manifest.
        assert!(b.memory.keys().is_empty(), "{:?}", b.memory.keys());
        assert_eq!(b.artifacts(), 0);
    }

    #[test]
    fn a_manifest_written_despite_an_error_is_the_commit() {
        let (run, _, b, _) = backup(
            Fault::fail_after_applying(Op::PutAtomic, StorageKind::Transient)
                .on_key(".manifest.json"),
            64 * 1024,
        );
        let report = run.backup.expect("the backup ran");
        assert!(outcome(&report, "b").committed, "{:?}", report.destinations);
        assert_eq!(b.artifacts(), 1);
    }

    #[test]
    fn a_commit_that_fails_leaves_nothing_behind_in_that_destination() {
        let (run, a, b, _) = backup(Fault::fail(Op::Commit, StorageKind::Transient), 64 * 1024);
        let report = run.backup.expect("one destination committed");
        assert!(report.partially_failed());
        assert_eq!(a.artifacts(), 1);
        assert!(b.memory.keys().is_empty(), "{:?}", b.memory.keys());
        assert_eq!(b.artifacts(), 0);
    }

    #[test]
    fn manifests_failing_everywhere_fail_the_backup_and_commit_nothing() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = testing::config(dir.path(), 64 * 1024, "quick");
        let (a, b) = (Faulty::new("a"), Faulty::new("b"));
        for d in [&a, &b] {
            d.faults
                .inject(Fault::fail(Op::PutAtomic, StorageKind::Denied).on_key(".manifest.json"));
        }
        let events = Recorder::default();
        let run = super::backup(
            &request(&config, None, &events, &[&a, &b]),
            &BackupOptions::default(),
            true,
        )
        .expect("nothing else holds the job");
        let error = run.backup.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("nothing was committed"), "{error}");
        assert!(error.contains("`a`") && error.contains("`b`"), "{error}");
        assert!(run.prune.is_none(), "no prune after a failed backup");
        assert!(a.memory.keys().is_empty() && b.memory.keys().is_empty());
        assert_eq!(events.lines(), ["started app", "backup app failed"]);
    }

    #[test]
    fn a_job_another_process_holds_is_not_run() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = testing::config(dir.path(), 1024, "off");
        let store = crate::state::open(&config).expect("a state store");
        assert!(
            store
                .claim("job:app", "another-host:1", 3600)
                .expect("claim")
        );
        let (a, b) = (Faulty::new("a"), Faulty::new("b"));
        let events = Recorder::default();
        let request = request(&config, Some(store.as_ref()), &events, &[&a, &b]);
        let refused = super::backup(&request, &BackupOptions::default(), true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("already running"), "{refused}");
        // gc, prune and repair take the same claim.
        let gc = super::gc(&request, Duration::ZERO, false).err();
        assert!(gc.is_some_and(|e| e.to_string().contains("already running")));
        assert!(super::prune(&request, false).is_err());
        assert!(super::repair(&request, &Scope::Repair, false).is_err());
        assert!(events.lines().is_empty(), "{:?}", events.lines());
        assert!(a.memory.keys().is_empty());
        let runs = store
            .runs(&crate::state::RunFilter::default())
            .expect("runs");
        assert!(runs.is_empty(), "nothing was recorded: {runs:?}");
    }

    #[test]
    fn a_backup_with_prune_records_backup_verify_and_prune_runs() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = testing::config(dir.path(), 64 * 1024, "full");
        let store = crate::state::open(&config).expect("a state store");
        let (a, b) = (Faulty::new("a"), Faulty::new("b"));
        let events = Recorder::default();
        let request = request(&config, Some(store.as_ref()), &events, &[&a, &b]);
        let run = super::backup(&request, &BackupOptions::default(), true).expect("claimed");
        let report = run.backup.expect("the backup succeeded");
        assert!(!report.failed(), "{:?}", report.destinations);
        assert!(run.prune.is_some());
        assert_eq!((a.artifacts(), b.artifacts()), (1, 1));
        let kinds: Vec<RunKind> = store
            .runs(&crate::state::RunFilter::default())
            .expect("runs")
            .into_iter()
            .map(|r| r.kind)
            .collect();
        for kind in [RunKind::Backup, RunKind::Verify, RunKind::Prune] {
            assert!(kinds.contains(&kind), "{kind} not recorded: {kinds:?}");
        }
        assert_eq!(
            events.lines(),
            [
                "started app",
                "verify app succeeded",
                "backup app succeeded",
                "prune app succeeded"
            ]
        );
        // The claim was released, and gc cleans through the same destinations.
        let cleaned = super::gc(&request, Duration::ZERO, false).expect("claimed again");
        assert_eq!(cleaned.len(), 2);
        assert!(cleaned.iter().all(|r| r.error.is_none()), "{cleaned:?}");
    }

    #[test]
    fn gc_dry_run_removes_nothing_and_says_what_it_would() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = testing::config(dir.path(), 1024, "off");
        let (a, b) = (Faulty::new("a"), Faulty::new("b"));
        let events = Recorder::default();
        let request = request(&config, None, &events, &[&a, &b]);
        let report = super::backup(&request, &BackupOptions::default(), false)
            .and_then(|run| run.backup)
            .expect("the backup succeeded");
        // A data object no manifest names: what a backup killed before its
        // manifest leaves.
        let manifest = crate::store::naming::manifest_key("app", &report.id);
        a.memory.remove(&manifest);
        let orphan = report.manifest.data.key.clone();
        assert_eq!(a.memory.keys(), std::slice::from_ref(&orphan));
        let reports = super::gc(&request, Duration::ZERO, true).expect("no claims without a store");
        let removed: Vec<&str> = reports[0].removed.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(removed, [orphan.as_str()]);
        assert_eq!(a.memory.keys(), std::slice::from_ref(&orphan));
        super::gc(&request, Duration::ZERO, false).expect("no claims without a store");
        assert!(a.memory.keys().is_empty(), "{:?}", a.memory.keys());
    }
}
