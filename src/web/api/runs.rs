//! Runs: the history, one run with its log, and starting runs now. A run
//! started here is the daemon's child `cairn VERB JOB --trigger manual`, the
//! same path as `cairn backup JOB` on a shell and as a scheduled fire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Path;
use super::access::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, blocking};
use super::jobs::known_job;
use super::schemas::{
    CheckStatusDoc, JobPruneDoc, RunKindDoc, RunRequestKindDoc, RunStatusDoc, StartAnswerDoc,
    TriggerDoc,
};
use crate::auth::Action;
use crate::state::{RunFilter, RunKind, RunRecord, RunStatus, StateStore};
use crate::web::AppState;

/// How long a started child may take to record its run.
const RECORD_DEADLINE: Duration = Duration::from_secs(15);
/// The longest `?wait=`.
const MAX_WAIT_SECS: u64 = 3600;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this job (or check).
    pub job: Option<String>,
    /// Only this kind: backup, verify, prune, restore, drill, validate, check, repair, copy.
    #[param(value_type = Option<RunKindDoc>)]
    pub kind: Option<String>,
    /// At most this many, newest first (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// A run as `cairn history --json` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub job: String,
    #[schema(value_type = RunKindDoc)]
    pub kind: String,
    #[schema(value_type = TriggerDoc)]
    pub trigger: String,
    /// `running`, `success`, `failure` or `interrupted`.
    #[schema(value_type = RunStatusDoc)]
    pub status: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub bytes: Option<u64>,
    pub artifact_id: Option<String>,
    pub error: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub host: String,
    pub pid: u32,
    /// The captured log (`GET /api/v1/runs/{run_id}` only).
    pub log: Option<String>,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> RunView {
        RunView {
            id: r.id,
            job: r.job,
            kind: r.kind.to_string(),
            trigger: r.trigger.to_string(),
            status: r.status.to_string(),
            started_at: r.started_at.to_string(),
            finished_at: r.finished_at.map(|t| t.to_string()),
            bytes: r.bytes,
            artifact_id: r.artifact_id,
            error: r.error,
            details: r.details,
            host: r.host,
            pid: r.pid,
            log: r.log,
        }
    }
}

/// Whether the caller may see runs of `subject` (a job, or a check's name).
fn may_see(caller: &Caller, config: &crate::config::Config, subject: &str) -> bool {
    if config.jobs.contains_key(subject) {
        caller.principal.may(Action::View, Some(subject))
    } else {
        caller.principal.may(Action::View, None)
    }
}

/// Recorded runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = [RunView]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    super::Query(query): super::Query<RunsQuery>,
) -> ApiResult<Json<Vec<RunView>>> {
    caller.require(Action::View, query.job.as_deref())?;
    let kind = query
        .kind
        .as_deref()
        .map(str::parse::<RunKind>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    blocking(move || {
        let config = state.config();
        let store = state.store()?;
        let runs = store.runs(&RunFilter {
            job: query.job,
            kind,
            status: None,
            limit: Some(limit),
            with_log: false,
        })?;
        Ok(Json(
            runs.into_iter()
                .filter(|r| may_see(&caller, &config, &r.job))
                .map(RunView::from)
                .collect(),
        ))
    })
    .await
}

/// One run with its log.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = i64, Path, description = "the run's id")),
    responses((status = 200, body = RunView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn one(
    State(state): State<Arc<AppState>>,
    Path(run_id): Path<i64>,
    caller: Caller,
) -> ApiResult<Json<RunView>> {
    caller.require(Action::View, None)?;
    blocking(move || {
        let config = state.config();
        let store = state.store()?;
        let run = store
            .run(run_id)?
            .filter(|r| may_see(&caller, &config, &r.job))
            .ok_or_else(|| ApiError::not_found(format!("there is no run {run_id}")))?;
        let mut view = RunView::from(run);
        if view.status == RunStatus::Running.to_string()
            && view.log.as_deref().is_none_or(str::is_empty)
        {
            view.log =
                crate::engine::runs::live_log(store.as_ref(), &view.job, run_id).or(view.log);
        }
        Ok(Json(view))
    })
    .await
}

/// What to run: `{"kind": "backup" | "verify" | "drill" | "prune", "dry_run": bool}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[schema(value_type = RunRequestKindDoc)]
    pub kind: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Answer when the run ends, or with 202 after this many seconds.
    pub wait: Option<u64>,
}

/// A started run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    pub run_id: i64,
    /// `running` (202), or how it ended (200, with `?wait=`).
    #[schema(value_type = RunStatusDoc)]
    pub status: String,
}

/// A prune's dry run: what would be kept and deleted (no run is recorded).
#[derive(Debug, Serialize, ToSchema)]
pub struct PrunePlan {
    pub job: String,
    #[schema(value_type = JobPruneDoc)]
    pub plan: serde_json::Value,
}

/// Runs a backup, verify, drill or prune of the job now.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/runs", tag = "runs",
    params(("job" = String, Path, description = "the job's name"), WaitQuery),
    request_body = RunRequest,
    responses(
        (status = 202, description = "started", body = RunStarted),
        (status = 200, description = "ended within `wait`, or a prune's dry-run plan", body = StartAnswerDoc),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "the job is running", body = ErrorBody),
        (status = 503, description = "not served by a daemon", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
    super::Query(wait): super::Query<WaitQuery>,
    super::Body(request): super::Body<RunRequest>,
) -> ApiResult<Response> {
    let (action, audit, kind, verb) = match (request.kind.as_str(), request.dry_run) {
        ("backup", false) => (Action::RunBackup, "run.backup", RunKind::Backup, "backup"),
        ("verify", false) => (Action::RunVerify, "run.verify", RunKind::Verify, "verify"),
        ("drill", false) => (Action::RunDrill, "run.drill", RunKind::Drill, "drill"),
        ("prune", false) => (Action::PruneApply, "run.prune", RunKind::Prune, "prune"),
        ("prune", true) => return prune_plan(state, job, caller).await,
        ("backup" | "verify" | "drill", true) => {
            return Err(ApiError::bad_request(format!(
                "a {} has no dry run (only prune does)",
                request.kind
            )));
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "`{other}` is not a kind of run: use backup, verify, drill or prune"
            )));
        }
    };
    caller.require(action, Some(&job))?;
    let config = state.config();
    known_job(&config, &job)?;
    let args = vec![verb.to_string(), job.clone()];
    let run_id = start_child(&state, &caller, audit, &job, &job, kind, args, true).await?;
    answer(state, run_id, wait.wait).await
}

/// Runs the job's prune as a dry run here: the plan, nothing deleted or recorded.
async fn prune_plan(state: Arc<AppState>, job: String, caller: Caller) -> ApiResult<Response> {
    caller.require(Action::PruneDryRun, Some(&job))?;
    blocking(move || {
        let config = state.config();
        let job_config = known_job(&config, &job)?;
        let store = state.store()?;
        // A dry run neither claims, records nor emits: no event sink is needed.
        let request = crate::engine::job::Request {
            config: &config,
            job: job_config,
            store: Some(store.as_ref()),
            trigger: crate::state::Trigger::Manual,
            events: &crate::engine::events::Discard,
            progress: Arc::new(crate::progress::Silent),
            open: Box::new(crate::engine::configured(&config)),
        };
        let plan = crate::engine::job::prune(&request, true)?;
        let plan = serde_json::to_value(&plan).map_err(ApiError::internal)?;
        Ok((StatusCode::OK, Json(PrunePlan { job, plan })).into_response())
    })
    .await
}

/// Asks the daemon to start `cairn ARGS… --trigger manual` and finds the run it
/// records (by the child's pid). Audited either way.
#[allow(clippy::too_many_arguments)]
async fn start_child(
    state: &Arc<AppState>,
    caller: &Caller,
    audit: &'static str,
    target: &str,
    subject: &str,
    kind: RunKind,
    args: Vec<String>,
    limited: bool,
) -> ApiResult<i64> {
    let state = state.clone();
    let caller = caller.clone();
    let target = target.to_string();
    let subject = subject.to_string();
    blocking(move || {
        let store = state.store()?;
        let Some(start_run) = state.start_run() else {
            caller.audit(store.as_ref(), audit, &target, "refused: no daemon");
            return Err(ApiError::unavailable(
                "runs are started by the daemon; this server has no daemon behind it",
            ));
        };
        // A run of the job started elsewhere (the CLI, another replica) holds it too.
        let busy = store
            .runs(&RunFilter {
                job: Some(subject_job(&subject).to_string()),
                status: Some(RunStatus::Running),
                limit: Some(1),
                ..RunFilter::default()
            })?
            .into_iter()
            .next();
        if let Some(run) = busy {
            caller.audit(store.as_ref(), audit, &target, "refused: running");
            return Err(ApiError::conflict(format!(
                "`{target}` is running (run {}); try again when it has finished",
                run.id
            )));
        }
        let pid = match start_run(&subject, args, limited) {
            Ok(pid) => pid,
            Err(why) => {
                caller.audit(store.as_ref(), audit, &target, "refused: running");
                return Err(ApiError::conflict(why));
            }
        };
        caller.audit(store.as_ref(), audit, &target, "ok");
        find_run(store.as_ref(), subject_job(&subject), kind, pid)
    })
    .await
}

/// The job (or check) of a daemon subject (`check:NAME` for checks).
fn subject_job(subject: &str) -> &str {
    subject.strip_prefix("check:").unwrap_or(subject)
}

/// The run the child with `pid` recorded, polling until the deadline.
fn find_run(store: &dyn StateStore, job: &str, kind: RunKind, pid: u32) -> ApiResult<i64> {
    let deadline = Instant::now() + RECORD_DEADLINE;
    let host = crate::state::host();
    loop {
        let found = store
            .runs(&RunFilter {
                job: Some(job.to_string()),
                kind: Some(kind),
                status: None,
                limit: Some(5),
                with_log: false,
            })?
            .into_iter()
            .find(|r| r.pid == pid && r.host == host);
        if let Some(run) = found {
            return Ok(run.id);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::internal(format!(
                "the {kind} run of `{job}` (pid {pid}) recorded nothing within {} s",
                RECORD_DEADLINE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 202 with the run at once, or with `wait`: 200 when it ends in time.
pub(super) async fn answer(
    state: Arc<AppState>,
    run_id: i64,
    wait: Option<u64>,
) -> ApiResult<Response> {
    let Some(wait) = wait.filter(|w| *w > 0) else {
        return Ok(accepted(run_id));
    };
    let deadline = Instant::now() + Duration::from_secs(wait.min(MAX_WAIT_SECS));
    loop {
        let state = state.clone();
        let run = blocking(move || Ok(state.store()?.run(run_id)?)).await?;
        if let Some(run) = run
            && run.status != RunStatus::Running
        {
            let body = RunStarted {
                run_id,
                status: run.status.to_string(),
            };
            return Ok((StatusCode::OK, Json(body)).into_response());
        }
        if Instant::now() >= deadline {
            return Ok(accepted(run_id));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn accepted(run_id: i64) -> Response {
    let body = RunStarted {
        run_id,
        status: RunStatus::Running.to_string(),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Each health check with its last result (`cairn health`).
#[utoipa::path(get, path = "/api/v1/checks", tag = "checks",
    responses((status = 200, body = [CheckStatusDoc]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn checks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    caller.require(Action::View, None)?;
    blocking(move || {
        let config = state.config();
        let store = state.store()?;
        crate::engine::status::check_statuses(&config, Some(store.as_ref()))
            .iter()
            .map(|c| serde_json::to_value(c).map_err(ApiError::internal))
            .collect::<ApiResult<Vec<_>>>()
            .map(Json)
    })
    .await
}

/// Runs a health check now (`cairn health CHECK`).
#[utoipa::path(post, path = "/api/v1/checks/{check}/runs", tag = "checks",
    params(("check" = String, Path, description = "the check's name"), WaitQuery),
    responses(
        (status = 202, description = "started", body = RunStarted),
        (status = 200, description = "ended within `wait`", body = RunStarted),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn run_check(
    State(state): State<Arc<AppState>>,
    Path(check): Path<String>,
    caller: Caller,
    super::Query(wait): super::Query<WaitQuery>,
) -> ApiResult<Response> {
    caller.require(Action::RunCheck, None)?;
    if !state.config().checks.contains_key(&check) {
        return Err(ApiError::not_found(format!(
            "there is no check `{check}` in the config"
        )));
    }
    let subject = format!("check:{check}");
    let args = vec!["health".to_string(), check.clone()];
    let run_id = start_child(
        &state,
        &caller,
        "check.run",
        &check,
        &subject,
        RunKind::Check,
        args,
        false,
    )
    .await?;
    answer(state, run_id, wait.wait).await
}
