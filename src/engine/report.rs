//! The integrity report over all jobs: newest good artifact, last verification,
//! last drill (with its restore time), last validation, and what needs attention.

use serde::Serialize;

use super::status::{self, NewestGood, Proven};
use crate::config::Config;
use crate::state::{RunKind, RunRecord, RunStatus, StateStore};

/// One recorded run, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub at: jiff::Timestamp,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl From<RunRecord> for RunSummary {
    fn from(r: RunRecord) -> Self {
        RunSummary {
            seconds: r.duration_secs(),
            at: r.started_at,
            status: r.status,
            artifact_id: r.artifact_id,
            error: r.error,
            details: r.details,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_good: Option<NewestGood>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<RunSummary>,
    /// The last drill that passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven: Option<Proven>,
    pub drill_stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_validation: Option<RunSummary>,
    /// What needs attention; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntegrityReport {
    pub generated_at: jiff::Timestamp,
    pub ok: bool,
    pub jobs: Vec<JobReport>,
}

pub fn report(
    config: &Config,
    jobs: &[&crate::config::Job],
    store: Option<&dyn StateStore>,
    now: jiff::Timestamp,
) -> IntegrityReport {
    let states = status::job_statuses(config, jobs, store, now);
    let reports: Vec<JobReport> = jobs
        .iter()
        .zip(states)
        .map(|(job, state)| {
            let last =
                |kind| status::latest_run(store, &job.name, kind, None).map(RunSummary::from);
            let last_verification = last(RunKind::Verify);
            let last_drill = last(RunKind::Drill);
            let last_validation = last(RunKind::Validate);
            let mut problems = Vec::new();
            if state.newest_good.is_none() {
                problems.push("no good artifact".to_string());
            }
            for d in state.destinations.iter().filter(|d| d.untrusted > 0) {
                problems.push(format!(
                    "{} untrusted artifact(s) in `{}`: not signed by signing.public_key (see `cairn list {}`)",
                    d.untrusted, d.destination, job.name
                ));
            }
            for (what, run) in [
                ("verification", &last_verification),
                ("drill", &last_drill),
                ("validation", &last_validation),
            ] {
                if let Some(run) = run
                    && run.status != RunStatus::Success
                    && run.status != RunStatus::Running
                {
                    problems.push(format!(
                        "the last {what} {}{}",
                        if run.status == RunStatus::Failure {
                            "failed"
                        } else {
                            "was interrupted"
                        },
                        run.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ));
                }
            }
            if state.drill_stale {
                problems.push(match &state.proven {
                    Some(p) => format!(
                        "the last good drill is {}h old, more than drill.max_age",
                        p.age_seconds / 3600
                    ),
                    None => "no drill has passed yet and drill.max_age is set".to_string(),
                });
            }
            JobReport {
                job: job.name.clone(),
                newest_good: state.newest_good,
                last_verification,
                last_drill,
                proven: state.proven,
                drill_stale: state.drill_stale,
                last_validation,
                problems,
            }
        })
        .collect();
    IntegrityReport {
        generated_at: now,
        ok: reports.iter().all(|r| r.problems.is_empty()),
        jobs: reports,
    }
}
