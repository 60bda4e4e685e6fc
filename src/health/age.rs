//! `backup_age` (the newest good artifact, read from the destinations) and
//! `drill_age` (the last successful restore drill in the history).

use super::{Finding, human_duration};
use crate::config::{Check, Config};
use crate::state::{RunFilter, RunKind, RunStatus, StateStore};

fn limit(check: &Check) -> i64 {
    check.max_age.map_or(i64::MAX, |d| d.as_secs() as i64)
}

pub fn backup_age(
    config: &Config,
    check: &Check,
    job: &str,
    store: Option<&dyn StateStore>,
) -> Finding {
    let Some(job) = config.jobs.get(job) else {
        return Finding::failing(format!("unknown job `{job}`"));
    };
    let now = jiff::Timestamp::now();
    let status = crate::engine::status::job_status(config, job, store, now);
    let max = limit(check);
    let unreachable: Vec<String> = status
        .destinations
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.destination)))
        .collect();
    match &status.newest_good {
        None => Finding::failing(format!(
            "job `{}` has no good artifact{}",
            job.name,
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(" (unreachable: {})", unreachable.join("; "))
            }
        )),
        Some(newest) if newest.age_seconds > max => Finding::failing(format!(
            "the newest good artifact of `{}` ({}) is {} old, more than {}",
            job.name,
            newest.id,
            human_duration(newest.age_seconds),
            human_duration(max)
        ))
        .with(serde_json::json!({ "artifact_id": newest.id, "age_seconds": newest.age_seconds })),
        Some(newest) => Finding::ok(format!(
            "newest good artifact {} is {} old (limit {})",
            newest.id,
            human_duration(newest.age_seconds),
            human_duration(max)
        ))
        .with(serde_json::json!({ "artifact_id": newest.id, "age_seconds": newest.age_seconds })),
    }
}

pub fn drill_age(check: &Check, job: &str, store: Option<&dyn StateStore>) -> Finding {
    let Some(store) = store else {
        return Finding::failing("the state store (drill history) cannot be opened");
    };
    let last = store.runs(&RunFilter {
        job: Some(job.to_string()),
        kind: Some(RunKind::Drill),
        status: Some(RunStatus::Success),
        limit: Some(1),
        with_log: false,
    });
    let max = limit(check);
    match last.map(|runs| runs.into_iter().next()) {
        Err(e) => Finding::failing(format!("cannot read the drill history: {e}")),
        Ok(None) => Finding::failing(format!("job `{job}` has no successful restore drill")),
        Ok(Some(run)) => {
            let at = run.finished_at.unwrap_or(run.started_at);
            let age = jiff::Timestamp::now().as_second() - at.as_second();
            let details = serde_json::json!({ "run_id": run.id, "age_seconds": age });
            if age > max {
                Finding::failing(format!(
                    "the last good restore drill of `{job}` was {} ago, more than {}",
                    human_duration(age),
                    human_duration(max)
                ))
                .with(details)
            } else {
                Finding::ok(format!(
                    "last good restore drill {} ago",
                    human_duration(age)
                ))
                .with(details)
            }
        }
    }
}
