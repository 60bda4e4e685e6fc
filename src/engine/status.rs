//! The state of each job, from the config, the state store and the catalog:
//! what `cairn status` prints, and what metrics and the web UI show.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{Config, Job};
use crate::engine::{CopyHealth, copy_health};
use crate::state::{CopyMarks, RunFilter, RunKind, RunRecord, RunStatus, StateStore};
use crate::store::catalog;

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    pub cron: String,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<jiff::Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    pub destination: String,
    /// Usable artifacts.
    pub artifacts: usize,
    pub stored_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<jiff::Timestamp>,
    /// Stored size of the newest usable artifact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_bytes: Option<u64>,
    /// Complete artifacts whose signature does not verify: not counted above.
    #[serde(skip_serializing_if = "is_zero")]
    pub untrusted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct NewestGood {
    pub id: String,
    pub created_at: jiff::Timestamp,
    pub age_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub paused: bool,
    pub schedules: Vec<ScheduleStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_good: Option<NewestGood>,
    pub stored_bytes: u64,
    pub destinations: Vec<DestinationStatus>,
    /// The last drill that passed: when the job was last proven restorable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven: Option<Proven>,
    /// `drill.max_age` is set and no drill passed within it.
    pub drill_stale: bool,
    /// `drill.cron`, when the daemon drills the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_schedule: Option<ScheduleStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Proven {
    pub at: jiff::Timestamp,
    pub age_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// The measured time to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
}

/// The newest run of `kind` for `job` (with `status`, when given).
pub fn latest_run(
    store: Option<&dyn StateStore>,
    job: &str,
    kind: RunKind,
    status: Option<RunStatus>,
) -> Option<RunRecord> {
    store?
        .runs(&RunFilter {
            job: Some(job.to_string()),
            kind: Some(kind),
            status,
            limit: Some(1),
            with_log: false,
        })
        .ok()?
        .into_iter()
        .next()
}

/// When `job` was last proven restorable (its newest successful drill), and
/// whether that is older than `drill.max_age`.
fn proven(job: &Job, drill: Option<&RunRecord>, now: jiff::Timestamp) -> (Option<Proven>, bool) {
    let proven = drill.map(|r| Proven {
        age_seconds: now.as_second() - r.started_at.as_second(),
        at: r.started_at,
        artifact_id: r.artifact_id.clone(),
        restore_seconds: r
            .details
            .as_ref()
            .and_then(|d| d["restore_seconds"].as_f64()),
    });
    let stale = job.drill.max_age.is_some_and(|max| {
        proven
            .as_ref()
            .is_none_or(|p| p.age_seconds > max.as_secs() as i64)
    });
    (proven, stale)
}

/// What the state store says of a set of jobs, read once for all of them
/// (a handful of statements, not a handful per job). Without a store, or
/// when it cannot be read, it knows nothing.
#[derive(Default)]
struct StoreFacts {
    paused: BTreeSet<String>,
    marks: BTreeMap<String, CopyMarks>,
    last_run: BTreeMap<String, RunRecord>,
    last_success: BTreeMap<String, RunRecord>,
    last_drill: BTreeMap<String, RunRecord>,
}

impl StoreFacts {
    fn read(store: Option<&dyn StateStore>, jobs: &[&Job]) -> StoreFacts {
        let Some(store) = store else {
            return StoreFacts::default();
        };
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        let latest = |kind, status| store.latest_runs(&names, kind, status).unwrap_or_default();
        StoreFacts {
            paused: store.paused_jobs().unwrap_or_default(),
            marks: store.copy_marks_of(&names).unwrap_or_default(),
            last_run: latest(RunKind::Backup, None),
            last_success: latest(RunKind::Backup, Some(RunStatus::Success)),
            last_drill: latest(RunKind::Drill, Some(RunStatus::Success)),
        }
    }
}

/// The status of `job`, its destinations opened for it.
pub fn job_status(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    now: jiff::Timestamp,
) -> JobStatus {
    status_of(config, job, &StoreFacts::read(store, &[job]), now)
}

/// The status of each of `jobs`, the store read once for all of them.
pub fn job_statuses(
    config: &Config,
    jobs: &[&Job],
    store: Option<&dyn StateStore>,
    now: jiff::Timestamp,
) -> Vec<JobStatus> {
    let facts = StoreFacts::read(store, jobs);
    jobs.iter()
        .map(|job| status_of(config, job, &facts, now))
        .collect()
}

/// The status of `job` as its destinations (opened here) and `facts` show it.
fn status_of(config: &Config, job: &Job, facts: &StoreFacts, now: jiff::Timestamp) -> JobStatus {
    let paused = facts.paused.contains(&job.name);
    let schedules: Vec<ScheduleStatus> = job
        .schedules
        .iter()
        .map(|s| ScheduleStatus {
            cron: s.expression.clone(),
            timezone: s.timezone_name.clone(),
            tag: s.tag.clone(),
            next_run: s.next_after(now),
        })
        .collect();
    let no_marks = CopyMarks::default();
    let marks = facts.marks.get(&job.name).unwrap_or(&no_marks);
    let opened = super::open_job(config, job, None);
    let mut destinations = Vec::new();
    let mut newest_good: Option<(jiff::Timestamp, String)> = None;
    for each in &opened {
        let name = each.name.clone();
        let listed = each.list_job(config, job);
        destinations.push(match listed {
            Ok(listing) => {
                // Usable copies in this destination: intact, not marked bad and,
                // with a public key, signed by it (untrusted ones are counted apart).
                let (untrusted, good): (Vec<_>, Vec<_>) = listing
                    .artifacts
                    .iter()
                    .filter(|a| copy_health(a, marks) == CopyHealth::Good)
                    .partition(|a| a.trust.is_untrusted());
                for a in &good {
                    if newest_good
                        .as_ref()
                        .is_none_or(|(t, _)| a.manifest.created_at > *t)
                    {
                        newest_good = Some((a.manifest.created_at, a.manifest.id.clone()));
                    }
                }
                DestinationStatus {
                    destination: name.clone(),
                    artifacts: good.len(),
                    stored_bytes: catalog::total_bytes(good.iter().map(|a| a.manifest.data.size)),
                    newest: good.last().map(|a| a.manifest.created_at),
                    newest_bytes: good.last().map(|a| a.manifest.data.size),
                    untrusted: untrusted.len(),
                    error: None,
                }
            }
            Err(e) => DestinationStatus {
                destination: name.clone(),
                artifacts: 0,
                stored_bytes: 0,
                newest: None,
                newest_bytes: None,
                untrusted: 0,
                error: Some(e),
            },
        });
    }
    let (proven, drill_stale) = proven(job, facts.last_drill.get(&job.name), now);
    JobStatus {
        proven,
        drill_stale,
        drill_schedule: job.drill.schedule.as_ref().map(|s| ScheduleStatus {
            cron: s.expression.clone(),
            timezone: s.timezone_name.clone(),
            tag: None,
            next_run: if paused { None } else { s.next_after(now) },
        }),
        job: job.name.clone(),
        paused,
        next_run: if paused {
            None
        } else {
            schedules.iter().filter_map(|s| s.next_run).min()
        },
        schedules,
        last_run: facts.last_run.get(&job.name).cloned(),
        last_success: facts.last_success.get(&job.name).map(|r| r.started_at),
        newest_good: newest_good.map(|(created_at, id)| NewestGood {
            age_seconds: now.as_second() - created_at.as_second(),
            id,
            created_at,
        }),
        stored_bytes: catalog::total_bytes(destinations.iter().map(|d| d.stored_bytes)),
        destinations,
    }
}

/// The last result of a health check, from the history.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    pub check: String,
    pub kind: String,
    pub interval_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunRecord>,
}

pub fn check_statuses(config: &Config, store: Option<&dyn StateStore>) -> Vec<CheckStatus> {
    config
        .checks
        .values()
        .map(|check| CheckStatus {
            check: check.name.clone(),
            kind: check.kind().to_string(),
            interval_seconds: check.interval.as_secs(),
            last_run: latest_run(store, &check.name, RunKind::Check, None),
        })
        .collect()
}
