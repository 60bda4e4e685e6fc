//! What each page shows, gathered from the config, the state store and the
//! catalog through the engine's status functions (the ones `cairn status`, the
//! metrics and the API use), and written out for people.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::charts::{self, Bar};
use super::format;
use crate::config::{Config, Job};
use crate::engine::status::{self, JobStatus};
use crate::engine::{CopyHealth, copy_health};
use crate::state::{
    AuditEntry, RunFilter, RunKind, RunRecord, RunStatus, ScheduleOverride, StateStore,
};

/// How many of a job's newest backups the charts show.
const CHART_RUNS: usize = 20;
/// How many runs the job page lists (with their logs).
const JOB_RUNS: usize = 25;

/// A problem the dashboard shows first.
pub struct Attention {
    pub job: String,
    pub href: String,
    pub what: String,
}

pub struct DestinationLine {
    pub name: String,
    pub artifacts: usize,
    pub size: String,
    pub error: Option<String>,
}

/// A job as the dashboard and the job page show it.
pub struct JobCard {
    pub name: String,
    pub href: String,
    /// `ok`, `running`, `failing`, `paused` or `new` (never ran).
    pub state: &'static str,
    /// When it is running: the run's start (the page counts up from it).
    pub running_since: Option<Timestamp>,
    pub next_run: String,
    pub newest_good: String,
    pub newest_age: String,
    pub proven: String,
    pub restore_time: String,
    pub drill_stale: bool,
    pub stored: String,
    pub destinations: Vec<DestinationLine>,
    pub size_chart: String,
    pub duration_chart: String,
}

fn backups(store: Option<&dyn StateStore>, job: &str, limit: usize) -> Vec<RunRecord> {
    store
        .and_then(|s| {
            s.runs(&RunFilter {
                job: Some(job.to_string()),
                kind: Some(RunKind::Backup),
                status: None,
                limit: Some(limit),
                with_log: false,
            })
            .ok()
        })
        .unwrap_or_default()
}

/// The longest an artifact may be old before the dashboard says so: twice the
/// shortest gap between scheduled fires (the default of `backup_age` checks).
fn max_artifact_age(job: &Job, now: Timestamp) -> Option<i64> {
    job.schedules
        .iter()
        .filter_map(|s| s.interval_hint(now))
        .min()
        .map(|d| 2 * d.as_secs() as i64)
}

pub fn job_card(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    overrides: Option<&ScheduleOverride>,
    now: Timestamp,
) -> (JobCard, Vec<Attention>) {
    let status = status::job_status(config, job, store, now);
    card(job, &status, store, overrides, now)
}

fn card(
    job: &Job,
    status: &JobStatus,
    store: Option<&dyn StateStore>,
    overrides: Option<&ScheduleOverride>,
    now: Timestamp,
) -> (JobCard, Vec<Attention>) {
    let href = format!("/jobs/{}", job.name);
    let mut attention = Vec::new();
    let mut flag = |what: String| {
        attention.push(Attention {
            job: job.name.clone(),
            href: href.clone(),
            what,
        })
    };
    let last = status.last_run.as_ref();
    let running = last.filter(|r| r.status == RunStatus::Running);
    let finished = backups(store, &job.name, CHART_RUNS);
    let last_finished = finished.iter().find(|r| r.status != RunStatus::Running);
    let failing = last_finished.is_some_and(|r| r.status != RunStatus::Success);
    if let Some(r) = last_finished.filter(|_| failing) {
        flag(format!(
            "last backup {} {}: {}",
            r.status.as_str(),
            format::relative(r.started_at, now),
            r.error.as_deref().unwrap_or("no error recorded")
        ));
    }
    if status.drill_stale {
        flag(match &status.proven {
            Some(p) => format!(
                "last passed drill is {} old, more than drill.max_age",
                format::duration(p.age_seconds as f64)
            ),
            None => "no drill has passed yet and drill.max_age is set".to_string(),
        });
    }
    if let Some(drill) = status::latest_run(store, &job.name, RunKind::Drill, None)
        .filter(|r| r.status == RunStatus::Failure)
    {
        flag(format!(
            "last drill failed {}: {}",
            format::relative(drill.started_at, now),
            drill.error.as_deref().unwrap_or("no error recorded")
        ));
    }
    let disabled = matches!(overrides, Some(ScheduleOverride::Disabled));
    if !status.paused
        && !disabled
        && let Some(max) = max_artifact_age(job, now)
    {
        match &status.newest_good {
            Some(n) if n.age_seconds > max => flag(format!(
                "newest good artifact is {} old; the schedule allows {}",
                format::duration(n.age_seconds as f64),
                format::duration(max as f64)
            )),
            None if last_finished.is_some() => flag("no good artifact in any destination".into()),
            _ => {}
        }
    }
    for d in &status.destinations {
        if let Some(e) = &d.error {
            flag(format!("destination `{}`: {e}", d.destination));
        }
    }
    let state = if running.is_some() {
        "running"
    } else if status.paused {
        "paused"
    } else if failing {
        "failing"
    } else if last_finished.is_none() {
        "new"
    } else {
        "ok"
    };
    let oldest_first: Vec<&RunRecord> = finished
        .iter()
        .rev()
        .filter(|r| r.status != RunStatus::Running)
        .collect();
    let size_bars: Vec<Bar> = oldest_first
        .iter()
        .map(|r| Bar {
            value: r
                .bytes
                .filter(|_| r.status == RunStatus::Success)
                .map(|b| b as f64),
            label: match (r.status, r.bytes) {
                (RunStatus::Success, Some(b)) => {
                    format!(
                        "run {} {}: {}",
                        r.id,
                        format::time(r.started_at),
                        format::bytes(b)
                    )
                }
                (s, _) => format!(
                    "run {} {}: {}",
                    r.id,
                    format::time(r.started_at),
                    s.as_str()
                ),
            },
        })
        .collect();
    let duration_bars: Vec<Bar> = oldest_first
        .iter()
        .map(|r| Bar {
            value: r.duration_secs().filter(|_| r.status == RunStatus::Success),
            label: format!(
                "run {} {}: {}",
                r.id,
                format::time(r.started_at),
                r.duration_secs()
                    .map_or_else(|| r.status.as_str().to_string(), format::duration)
            ),
        })
        .collect();
    let next_run = if status.paused {
        "paused".to_string()
    } else if disabled {
        "schedule disabled in the UI".to_string()
    } else {
        match overrides {
            Some(ScheduleOverride::Cron { cron }) => next_of_cron(cron, &job.timezone, now)
                .map_or_else(|| format!("`{cron}`: never"), |t| describe_at(t, now)),
            _ => status
                .next_run
                .map_or_else(|| "not scheduled".to_string(), |t| describe_at(t, now)),
        }
    };
    let card = JobCard {
        name: job.name.clone(),
        href: href.clone(),
        state,
        running_since: running.map(|r| r.started_at),
        next_run,
        newest_good: status
            .newest_good
            .as_ref()
            .map_or_else(|| "none".to_string(), |n| n.id.clone()),
        newest_age: status.newest_good.as_ref().map_or_else(String::new, |n| {
            format::duration(n.age_seconds as f64) + " old"
        }),
        proven: status.proven.as_ref().map_or_else(
            || "never".to_string(),
            |p| format!("{} ({})", format::time(p.at), format::relative(p.at, now)),
        ),
        restore_time: status
            .proven
            .as_ref()
            .and_then(|p| p.restore_seconds)
            .map_or_else(String::new, format::duration),
        drill_stale: status.drill_stale,
        stored: format::bytes(status.stored_bytes),
        destinations: status
            .destinations
            .iter()
            .map(|d| DestinationLine {
                name: d.destination.clone(),
                artifacts: d.artifacts,
                size: format::bytes(d.stored_bytes),
                error: d.error.clone(),
            })
            .collect(),
        size_chart: charts::bars(
            &format!(
                "Stored size of the last {} backups of {}",
                size_bars.len(),
                job.name
            ),
            &size_bars,
        ),
        duration_chart: charts::bars(
            &format!(
                "Duration of the last {} backups of {}",
                duration_bars.len(),
                job.name
            ),
            &duration_bars,
        ),
    };
    (card, attention)
}

fn describe_at(at: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", format::time(at), format::relative(at, now))
}

fn next_of_cron(cron: &str, tz: &jiff::tz::TimeZone, now: Timestamp) -> Option<Timestamp> {
    let name = tz.iana_name().unwrap_or("UTC");
    crate::cron::Schedule::parse(cron, None, name)
        .ok()?
        .next_after(now)
}

pub struct Dashboard {
    pub attention: Vec<Attention>,
    pub jobs: Vec<JobCard>,
    pub checks_failing: Vec<CheckLine>,
}

pub fn dashboard(config: &Config, store: Option<&dyn StateStore>, now: Timestamp) -> Dashboard {
    let overrides = store
        .and_then(|s| s.schedule_overrides().ok())
        .unwrap_or_default();
    let mut attention = Vec::new();
    let mut jobs = Vec::new();
    for job in config.jobs.values() {
        let (card, mut flags) = job_card(config, job, store, overrides.get(&job.name), now);
        attention.append(&mut flags);
        jobs.push(card);
    }
    // Failing and running jobs first, then by name (the config's order otherwise).
    jobs.sort_by_key(|c| match c.state {
        "failing" => 0,
        "running" => 1,
        _ => 2,
    });
    let checks_failing = checks(config, store, now)
        .into_iter()
        .filter(|c| c.state == "failing")
        .collect();
    Dashboard {
        attention,
        jobs,
        checks_failing,
    }
}

/// A run as the tables show it.
pub struct RunLine {
    pub id: i64,
    pub kind: &'static str,
    pub status: &'static str,
    pub trigger: &'static str,
    pub started: String,
    pub started_at: Timestamp,
    pub duration: String,
    pub summary: String,
    pub log: String,
}

fn run_line(r: &RunRecord, now: Timestamp) -> RunLine {
    RunLine {
        id: r.id,
        kind: r.kind.as_str(),
        status: r.status.as_str(),
        trigger: r.trigger.as_str(),
        started: describe_at(r.started_at, now),
        started_at: r.started_at,
        duration: r
            .duration_secs()
            .map_or_else(|| "…".to_string(), format::duration),
        summary: match (&r.error, &r.artifact_id, r.bytes) {
            (Some(e), _, _) => e.clone(),
            (None, Some(id), Some(b)) => format!("{id} ({})", format::bytes(b)),
            (None, Some(id), None) => id.clone(),
            _ => String::new(),
        },
        log: r.log.clone().unwrap_or_default(),
    }
}

pub struct ArtifactLine {
    pub id: String,
    pub created: String,
    pub tag: String,
    pub size: String,
    /// `good`, `bad` or `broken`.
    pub health: &'static str,
    pub health_note: String,
    pub verified: bool,
    pub drilled: bool,
}

pub struct DestinationArtifacts {
    pub name: String,
    pub error: Option<String>,
    pub artifacts: Vec<ArtifactLine>,
}

pub struct ScheduleView {
    /// The config's schedules, as written.
    pub config: Vec<String>,
    /// `None`, `disabled` or the override's cron.
    pub override_text: Option<String>,
    pub override_cron: String,
    pub disabled: bool,
}

pub struct JobPage {
    pub card: JobCard,
    pub attention: Vec<Attention>,
    pub schedule: ScheduleView,
    pub runs: Vec<RunLine>,
    pub destinations: Vec<DestinationArtifacts>,
}

pub fn job_page(
    config: &Config,
    job: &Job,
    store: Option<&dyn StateStore>,
    now: Timestamp,
) -> JobPage {
    let overrides = store
        .and_then(|s| s.schedule_overrides().ok())
        .unwrap_or_default();
    let current = overrides.get(&job.name);
    let (card, attention) = job_card(config, job, store, current, now);
    let runs = |kind: Option<RunKind>, status: Option<RunStatus>, log: bool, limit| {
        store
            .and_then(|s| {
                s.runs(&RunFilter {
                    job: Some(job.name.clone()),
                    kind,
                    status,
                    limit: Some(limit),
                    with_log: log,
                })
                .ok()
            })
            .unwrap_or_default()
    };
    let succeeded = |kind| -> BTreeSet<String> {
        runs(Some(kind), Some(RunStatus::Success), false, 500)
            .into_iter()
            .filter_map(|r| r.artifact_id)
            .collect()
    };
    let verified = succeeded(RunKind::Verify);
    let drilled = succeeded(RunKind::Drill);
    let marks = store
        .and_then(|s| s.copy_marks(&job.name).ok())
        .unwrap_or_default();
    let destinations = crate::engine::open_job(config, job, None)
        .iter()
        .map(|opened| match opened.list_job(config, job) {
            Ok(listing) => DestinationArtifacts {
                name: opened.name.clone(),
                error: None,
                artifacts: listing
                    .artifacts
                    .iter()
                    .rev()
                    .map(|a| {
                        let (health, note) = match copy_health(a, &marks) {
                            CopyHealth::Good if a.trust.is_untrusted() => {
                                ("bad", "signature does not verify".to_string())
                            }
                            CopyHealth::Good => ("good", String::new()),
                            CopyHealth::Broken(why) => ("broken", why.to_string()),
                            CopyHealth::MarkedBad(mark) => ("bad", mark.reason.clone()),
                        };
                        ArtifactLine {
                            id: a.manifest.id.clone(),
                            created: describe_at(a.manifest.created_at, now),
                            tag: a.manifest.tag.clone().unwrap_or_default(),
                            size: format::bytes(a.manifest.data.size),
                            health,
                            health_note: note,
                            verified: verified.contains(&a.manifest.id),
                            drilled: drilled.contains(&a.manifest.id),
                        }
                    })
                    .collect(),
            },
            Err(e) => DestinationArtifacts {
                name: opened.name.clone(),
                error: Some(e),
                artifacts: Vec::new(),
            },
        })
        .collect();
    JobPage {
        card,
        attention,
        schedule: ScheduleView {
            config: job
                .schedules
                .iter()
                .map(|s| match &s.tag {
                    Some(tag) => format!("{} ({}, tag {tag})", s.expression, s.timezone_name),
                    None => format!("{} ({})", s.expression, s.timezone_name),
                })
                .collect(),
            override_text: current.map(|o| match o {
                ScheduleOverride::Disabled => "disabled".to_string(),
                ScheduleOverride::Cron { cron } => format!("`{cron}`"),
            }),
            override_cron: match current {
                Some(ScheduleOverride::Cron { cron }) => cron.clone(),
                _ => String::new(),
            },
            disabled: matches!(current, Some(ScheduleOverride::Disabled)),
        },
        runs: runs(None, None, true, JOB_RUNS)
            .iter()
            .map(|r| run_line(r, now))
            .collect(),
        destinations,
    }
}

pub struct CheckLine {
    pub name: String,
    pub kind: String,
    pub interval: String,
    /// `ok`, `failing` or `new`.
    pub state: &'static str,
    pub last: String,
    pub message: String,
    pub history: Vec<RunLine>,
}

pub fn checks(config: &Config, store: Option<&dyn StateStore>, now: Timestamp) -> Vec<CheckLine> {
    status::check_statuses(config, store)
        .into_iter()
        .map(|c| {
            let history: Vec<RunLine> = store
                .and_then(|s| {
                    s.runs(&RunFilter {
                        job: Some(c.check.clone()),
                        kind: Some(RunKind::Check),
                        status: None,
                        limit: Some(10),
                        with_log: false,
                    })
                    .ok()
                })
                .unwrap_or_default()
                .iter()
                .map(|r| run_line(r, now))
                .collect();
            let last = c.last_run.as_ref();
            CheckLine {
                state: match last.map(|r| r.status) {
                    None => "new",
                    Some(RunStatus::Success | RunStatus::Running) => "ok",
                    Some(_) => "failing",
                },
                last: last.map_or_else(|| "never".into(), |r| describe_at(r.started_at, now)),
                message: last.and_then(|r| r.error.clone()).unwrap_or_default(),
                interval: format::duration(c.interval_seconds as f64),
                name: c.check,
                kind: c.kind,
                history,
            }
        })
        .collect()
}

pub struct ChannelLine {
    pub name: String,
    pub kind: &'static str,
}

pub struct RouteLine {
    /// `job app` or `check disk`.
    pub from: String,
    pub channel: String,
    pub events: String,
}

pub struct Notifications {
    pub channels: Vec<ChannelLine>,
    pub routes: Vec<RouteLine>,
}

/// Channels by name and kind only: their URLs and addresses may hold secrets.
pub fn notifications(config: &Config) -> Notifications {
    let describe = |events: &Option<Vec<crate::config::EventKind>>| match events {
        None => "failures and recoveries".to_string(),
        Some(list) => list
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut routes = Vec::new();
    for job in config.jobs.values() {
        for r in &job.notify {
            routes.push(RouteLine {
                from: format!("job {}", job.name),
                channel: r.channel.clone(),
                events: describe(&r.events),
            });
        }
    }
    for check in config.checks.values() {
        for r in &check.notify {
            routes.push(RouteLine {
                from: format!("check {}", check.name),
                channel: r.channel.clone(),
                events: describe(&r.events),
            });
        }
    }
    Notifications {
        channels: config
            .notify
            .values()
            .map(|c| ChannelLine {
                name: c.name.clone(),
                kind: c.config.kind(),
            })
            .collect(),
        routes,
    }
}

pub struct AuditLine {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub address: String,
    pub result: String,
}

pub fn audit(store: &dyn StateStore, limit: usize) -> crate::Result<Vec<AuditLine>> {
    Ok(store
        .audit_newest(limit)?
        .into_iter()
        .map(|e: AuditEntry| AuditLine {
            seq: e.seq,
            at: format::time(e.entry.at),
            actor: e.entry.actor,
            action: e.entry.action,
            target: e.entry.target,
            address: e.entry.address,
            result: e.entry.result,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RunEnd, Trigger};

    fn config(dir: &std::path::Path) -> Config {
        let text = r#"[state]
path = "state.db"

[destinations.local]
kind = "fs"
path = "backups"

[jobs.good]
source = { kind = "command", backup = ["true"] }
destinations = ["local"]
encryption = { kind = "none" }

[jobs.broken]
source = { kind = "command", backup = ["false"] }
destinations = ["local"]
encryption = { kind = "none" }

[jobs.resting]
source = { kind = "command", backup = ["true"] }
destinations = ["local"]
encryption = { kind = "none" }
schedules = [{ cron = "0 2 * * *" }]
"#;
        Config::parse(&dir.join("cairn.toml"), text).expect("config")
    }

    struct Stored;

    impl crate::engine::runs::Summary for Stored {
        fn run_end(&self) -> RunEnd {
            RunEnd {
                success: true,
                bytes: Some(1000),
                ..RunEnd::default()
            }
        }
    }

    /// A backup recorded the way every run is (engine::runs::recorded).
    fn run(store: &dyn StateStore, job: &str, success: bool, error: &str) {
        let _ = crate::engine::runs::recorded(
            Some(store),
            job,
            RunKind::Backup,
            Trigger::Manual,
            || {
                if success {
                    Ok(Stored)
                } else {
                    Err(crate::Error::Run(error.to_string()))
                }
            },
        );
    }

    #[test]
    fn the_dashboard_puts_failing_jobs_and_the_reason_first() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = crate::state::open(&config).unwrap();
        run(store.as_ref(), "good", true, "");
        run(
            store.as_ref(),
            "broken",
            false,
            "the source command exited with 1",
        );
        store.set_paused("resting", true).unwrap();
        let d = dashboard(&config, Some(store.as_ref()), Timestamp::now());
        let order: Vec<(&str, &str)> = d.jobs.iter().map(|j| (j.name.as_str(), j.state)).collect();
        assert_eq!(
            order,
            [("broken", "failing"), ("good", "ok"), ("resting", "paused")]
        );
        assert!(
            d.attention
                .iter()
                .any(|a| a.job == "broken" && a.what.contains("the source command exited with 1")),
            "{:?}",
            d.attention.iter().map(|a| &a.what).collect::<Vec<_>>()
        );
        assert!(d.attention.iter().all(|a| a.job == "broken"));
        let resting = &d.jobs[2];
        assert_eq!(resting.next_run, "paused");
        assert!(d.jobs[1].size_chart.contains(r#"class="bar""#));
    }

    #[test]
    fn an_override_replaces_the_next_run_and_is_shown_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store = crate::state::open(&config).unwrap();
        let job = &config.jobs["resting"];
        let cron = ScheduleOverride::Cron {
            cron: "30 4 * * *".into(),
        };
        store.set_schedule_override("resting", Some(&cron)).unwrap();
        let now: Timestamp = "2026-12-01T20:00:00Z".parse().unwrap();
        let page = job_page(&config, job, Some(store.as_ref()), now);
        assert_eq!(page.schedule.config, ["0 2 * * * (UTC)"]);
        assert_eq!(page.schedule.override_text.as_deref(), Some("`30 4 * * *`"));
        assert!(
            page.card.next_run.starts_with("2026-12-02 04:30 UTC"),
            "{}",
            page.card.next_run
        );
        store
            .set_schedule_override("resting", Some(&ScheduleOverride::Disabled))
            .unwrap();
        let page = job_page(&config, job, Some(store.as_ref()), now);
        assert!(page.schedule.disabled);
        assert_eq!(page.card.next_run, "schedule disabled in the UI");
    }
}
