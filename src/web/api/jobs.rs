//! Jobs: their status (the engine's `status::JobStatus`, as `cairn status`
//! shows it), artifacts, pause/resume and the schedule override.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Path;
use super::access::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, blocking};
use super::schemas::{ArtifactDoc, JobStateDoc, JobStatusDoc, ProblemDoc, ScheduleOverrideDoc};
use crate::auth::Action;
use crate::config::Config;
use crate::engine::status::JobStatus;
use crate::state::{RunFilter, RunStatus, ScheduleOverride, StateStore};
use crate::web::AppState;

/// A job as `cairn status --json` shows it, with what the store adds now.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job: String,
    /// `ok`, `running`, `failing` or `paused`.
    #[schema(value_type = JobStateDoc)]
    pub state: String,
    pub paused: bool,
    /// The schedule override set in the UI, the API or `cairn schedule`.
    #[schema(value_type = Option<ScheduleOverrideDoc>)]
    pub schedule_override: Option<ScheduleOverride>,
    /// The engine's status: schedules, next run, last run, newest good
    /// artifact, last drill (`proven`), stored size per destination.
    #[schema(value_type = JobStatusDoc)]
    pub status: serde_json::Value,
}

/// What the store says of every job now (read once per request, not per job).
#[derive(PartialEq)]
struct Now {
    paused: std::collections::BTreeSet<String>,
    overrides: std::collections::BTreeMap<String, ScheduleOverride>,
    running: std::collections::BTreeSet<String>,
}

impl Now {
    fn read(store: &dyn StateStore) -> ApiResult<Now> {
        Ok(Now {
            paused: store.paused_jobs()?,
            overrides: store.schedule_overrides()?,
            running: running_jobs(store)?,
        })
    }
}

/// Every job's view as JSON, built again only when the catalog was rebuilt or
/// a pause, override or running run changed: fifty clients polling the list
/// would otherwise spend their time serialising the same 200 statuses.
#[derive(Default)]
pub struct ViewCache(Mutex<Option<Views>>);

struct Views {
    catalog: Arc<Vec<JobStatus>>,
    now: Now,
    json: Arc<Vec<(String, Bytes)>>,
}

impl ViewCache {
    /// Each job's name and `JobView` JSON, in the config's order.
    fn get(&self, state: &AppState) -> ApiResult<Arc<Vec<(String, Bytes)>>> {
        let store = state.store()?;
        let catalog = state.job_statuses(Some(store.as_ref()));
        let now = Now::read(store.as_ref())?;
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(views) = slot.as_ref()
            && Arc::ptr_eq(&views.catalog, &catalog)
            && views.now == now
        {
            return Ok(views.json.clone());
        }
        let json = catalog
            .iter()
            .map(|status| {
                let view = job_view(status.clone(), &now)?;
                let bytes = serde_json::to_vec(&view).map_err(ApiError::internal)?;
                Ok((view.job, Bytes::from(bytes)))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let json = Arc::new(json);
        *slot = Some(Views {
            catalog,
            now,
            json: json.clone(),
        });
        Ok(json)
    }
}

/// A JSON response whose body is already serialised.
fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn job_view(mut status: JobStatus, now: &Now) -> ApiResult<JobView> {
    let (overrides, running) = (&now.overrides, &now.running);
    let paused = now.paused.contains(&status.job);
    status.paused = paused;
    let schedule_override = overrides.get(&status.job).cloned();
    if paused || matches!(schedule_override, Some(ScheduleOverride::Disabled)) {
        status.next_run = None;
    }
    let state = if running.contains(&status.job) {
        "running"
    } else if paused {
        "paused"
    } else if status
        .last_run
        .as_ref()
        .is_some_and(|r| r.status != RunStatus::Success)
    {
        "failing"
    } else {
        "ok"
    };
    Ok(JobView {
        job: status.job.clone(),
        state: state.into(),
        paused,
        schedule_override,
        status: serde_json::to_value(&status).map_err(ApiError::internal)?,
    })
}

/// The jobs with a run going now.
fn running_jobs(store: &dyn StateStore) -> ApiResult<std::collections::BTreeSet<String>> {
    Ok(store
        .runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })?
        .into_iter()
        .map(|r| r.job)
        .collect())
}

pub fn known_job<'a>(config: &'a Config, job: &str) -> ApiResult<&'a crate::config::Job> {
    config.jobs.get(job).ok_or_else(|| no_such_job(job))
}

fn no_such_job(job: &str) -> ApiError {
    ApiError::not_found(format!("there is no job `{job}` in the config"))
}

/// Every job the caller may see.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = [JobView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    caller.require(Action::View, None)?;
    blocking(move || {
        let views = state.job_views.get(&state)?;
        let mut body = Vec::with_capacity(views.iter().map(|(_, json)| json.len() + 1).sum());
        body.push(b'[');
        for (_, json) in views
            .iter()
            .filter(|(job, _)| caller.principal.sees_job(job))
        {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(json);
        }
        body.push(b']');
        Ok(json_response(body))
    })
    .await
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{job}", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn one(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
) -> ApiResult<Response> {
    caller.require(Action::View, Some(&job))?;
    blocking(move || {
        if !state.has_job(&job) {
            return Err(no_such_job(&job));
        }
        let views = state.job_views.get(&state)?;
        let (_, json) = views
            .iter()
            .find(|(name, _)| *name == job)
            .ok_or_else(|| ApiError::not_found(format!("there is no job `{job}`")))?;
        Ok(json_response(json.to_vec()))
    })
    .await
}

/// A job's artifacts in each destination (`cairn list --json`), with the
/// marks verification and drills left on copies.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactsView {
    pub job: String,
    /// One entry per copy: id, destination, created_at, size, tag, trust, …
    /// and `bad` (marked by a verification or a drill).
    #[schema(value_type = Vec<ArtifactDoc>)]
    pub artifacts: Vec<serde_json::Value>,
    /// Objects that are not readable artifacts, per destination.
    #[schema(value_type = Vec<ProblemDoc>)]
    pub problems: Vec<serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/jobs/{job}/artifacts", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    responses((status = 200, body = ArtifactsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn artifacts(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
) -> ApiResult<Json<ArtifactsView>> {
    caller.require(Action::View, Some(&job))?;
    blocking(move || {
        let config = state.config();
        let job_config = known_job(&config, &job)?;
        let store = state.store()?;
        let opened = crate::engine::open_job(&config, job_config, None);
        let listing = crate::engine::list::list(&config, &[(job_config, opened)]);
        let marks = store.copy_marks(&job)?;
        let artifacts = listing
            .entries
            .iter()
            .map(|entry| {
                let mut value = serde_json::to_value(entry).map_err(ApiError::internal)?;
                value["bad"] = serde_json::Value::Bool(marks.is_bad(&entry.id, &entry.destination));
                Ok(value)
            })
            .collect::<ApiResult<Vec<_>>>()?;
        let problems = listing
            .problems
            .iter()
            .map(|p| serde_json::to_value(p).map_err(ApiError::internal))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Json(ArtifactsView {
            job,
            artifacts,
            problems,
        }))
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PauseView {
    pub job: String,
    pub paused: bool,
}

async fn set_paused(
    state: Arc<AppState>,
    job: String,
    caller: Caller,
    paused: bool,
) -> ApiResult<Json<PauseView>> {
    let (action, name) = if paused {
        (Action::Pause, "job.pause")
    } else {
        (Action::Resume, "job.resume")
    };
    caller.require(action, Some(&job))?;
    blocking(move || {
        known_job(&state.config(), &job)?;
        let store = state.store()?;
        let done = store.set_paused(&job, paused);
        caller.audit(
            store.as_ref(),
            name,
            &job,
            if done.is_ok() { "ok" } else { "failed" },
        );
        done?;
        Ok(Json(PauseView { job, paused }))
    })
    .await
}

/// Stops scheduling the job (`cairn pause`); manual runs still work.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/pause", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    responses((status = 200, body = PauseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
) -> ApiResult<Json<PauseView>> {
    set_paused(state, job, caller, true).await
}

/// Schedules the job again (`cairn resume`).
#[utoipa::path(post, path = "/api/v1/jobs/{job}/resume", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    responses((status = 200, body = PauseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
) -> ApiResult<Json<PauseView>> {
    set_paused(state, job, caller, false).await
}

/// A schedule override: `{"mode": "disabled"}` or `{"mode": "cron", "cron": "0 3 * * *"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// `disabled` or `cron`.
    pub mode: String,
    /// With `cron`: the expression replacing the job's schedules.
    pub cron: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    pub job: String,
    #[schema(value_type = Option<ScheduleOverrideDoc>)]
    pub schedule_override: Option<ScheduleOverride>,
}

/// Overrides the job's schedules (`cairn schedule JOB --cron|--disable`).
#[utoipa::path(put, path = "/api/v1/jobs/{job}/schedule", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    request_body = ScheduleOverrideDoc,
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn set_schedule(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
    super::Body(body): super::Body<ScheduleBody>,
) -> ApiResult<Json<ScheduleView>> {
    caller.require(Action::ScheduleSet, Some(&job))?;
    blocking(move || {
        let config = state.config();
        known_job(&config, &job)?;
        let value = match (body.mode.as_str(), body.cron) {
            ("disabled", None) => ScheduleOverride::Disabled,
            ("cron", Some(cron)) => {
                crate::cron::Schedule::parse(&cron, None, &config.daemon.timezone_name)
                    .map_err(ApiError::bad_request)?;
                ScheduleOverride::Cron {
                    cron: cron.trim().to_string(),
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "send {\"mode\": \"disabled\"} or {\"mode\": \"cron\", \"cron\": \"EXPR\"}",
                ));
            }
        };
        let store = state.store()?;
        let done = store.set_schedule_override(&job, Some(&value));
        caller.audit(
            store.as_ref(),
            "schedule.set",
            &job,
            if done.is_ok() { "ok" } else { "failed" },
        );
        done?;
        Ok(Json(ScheduleView {
            job,
            schedule_override: Some(value),
        }))
    })
    .await
}

/// Goes back to the config's schedules (`cairn schedule JOB --clear`).
#[utoipa::path(delete, path = "/api/v1/jobs/{job}/schedule", tag = "jobs",
    params(("job" = String, Path, description = "the job's name")),
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn clear_schedule(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
) -> ApiResult<Json<ScheduleView>> {
    caller.require(Action::ScheduleClear, Some(&job))?;
    blocking(move || {
        known_job(&state.config(), &job)?;
        let store = state.store()?;
        let done = store.set_schedule_override(&job, None);
        caller.audit(
            store.as_ref(),
            "schedule.clear",
            &job,
            if done.is_ok() { "ok" } else { "failed" },
        );
        done?;
        Ok(Json(ScheduleView {
            job,
            schedule_override: None,
        }))
    })
    .await
}
