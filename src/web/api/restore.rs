//! Restoring an artifact from the API (admins): a dry run answers the plan; a
//! real restore needs the job's name typed as `confirm` and runs as a recorded
//! run of this process, through `engine::restore_job` — the function `cairn
//! restore` calls — into the job's own source (keeping the same safety copy)
//! or a path under `[daemon] restore_root`. Nothing from the request reaches a
//! program's arguments: the artifact is chosen among the job's own, the path
//! is resolved inside the root.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::Caller;
use super::error::{ApiError, ApiResult, ErrorBody, blocking};
use super::jobs::known_job;
use super::restore_target;
use super::runs::WaitQuery;
use crate::auth::Action;
use crate::config::{Config, Job};
use crate::engine::restore_job::{self, CheckLevel, RestoreRequest};
use crate::engine::{Selector, runs};
use crate::state::{RunFilter, RunKind, RunStatus, StateStore, Trigger};
use crate::web::AppState;

/// How long a started restore may take to record its run.
const RECORD_DEADLINE: Duration = Duration::from_secs(15);

/// `{"artifact", "destination"?, "target"?, "dry_run", "confirm"?, "check"?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// The artifact's id (as `GET /api/v1/jobs/{job}/artifacts` lists it).
    pub artifact: String,
    /// Read from this destination only.
    pub destination: Option<String>,
    /// A path relative to `[daemon] restore_root`; absent: the job's own source.
    pub target: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// A real restore needs the job's name here (typed confirmation).
    pub confirm: Option<String>,
    /// How thoroughly a restored SQLite file is checked (the hashes always are).
    #[serde(default)]
    pub check: Check,
}

/// `quick`: PRAGMA quick_check; `full`: also integrity_check and foreign_key_check.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    #[default]
    Quick,
    Full,
}

/// What a restore would do (a dry run), after the artifact was read and checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestorePlanView {
    pub job: String,
    pub artifact: String,
    /// The destination whose copy would be read.
    pub destination: String,
    /// Where it would be written.
    pub target: String,
    /// Where the current content would be kept.
    pub safety_copy: Option<String>,
    pub plaintext_bytes: u64,
    /// What would be done, one line each.
    pub actions: Vec<String>,
}

/// Restores an artifact of the job (admins): a dry run's plan, or a run.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/restore", tag = "runs",
    params(("job" = String, Path, description = "the job's name"), WaitQuery),
    request_body = RestoreBody,
    responses(
        (status = 200, description = "the dry run's plan, or the restore ended within `wait`", body = RestorePlanView),
        (status = 202, description = "started", body = super::runs::RunStarted),
        (status = 400, description = "a wrong confirmation or target", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the job is running", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn restore(
    State(state): State<Arc<AppState>>,
    Path(job): Path<String>,
    caller: Caller,
    super::Query(wait): super::Query<WaitQuery>,
    super::Body(body): super::Body<RestoreBody>,
) -> ApiResult<Response> {
    caller.require(Action::Restore, Some(&job))?;
    let config = state.config();
    let job_config = known_job(&config, &job)?.clone();
    let refused = |message: String| {
        let state = state.clone();
        let caller = caller.clone();
        let job = job.clone();
        async move {
            let audit = message.clone();
            blocking(move || {
                let store = state.store()?;
                caller.audit(
                    store.as_ref(),
                    "restore",
                    &job,
                    &format!("refused: {audit}"),
                );
                Ok(())
            })
            .await?;
            Err::<Response, _>(ApiError::bad_request(message))
        }
    };
    if !body.dry_run && body.confirm.as_deref() != Some(job.as_str()) {
        return refused(format!(
            "a restore replaces data: send \"confirm\": the job's name (`{job}`) to go ahead"
        ))
        .await;
    }
    let request = match request_of(&config, &job_config, &body) {
        Ok(request) => request,
        Err(message) => return refused(message).await,
    };
    if body.dry_run {
        return plan(config, job_config, request).await;
    }
    let run_id = start(&state, &caller, job_config, request).await?;
    super::runs::answer(state, run_id, wait.wait).await
}

/// The engine's request: which artifact, where to, replacing the target with a
/// safety copy as `cairn restore --force` does.
fn request_of(config: &Config, job: &Job, body: &RestoreBody) -> Result<RestoreRequest, String> {
    let artifact = body.artifact.trim();
    if artifact.is_empty()
        || artifact.len() > 128
        || !artifact
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err("`artifact` is not an artifact id".into());
    }
    if let Some(destination) = &body.destination
        && !job.destinations.contains(destination)
    {
        return Err(format!(
            "job `{}` has no destination `{destination}`",
            job.name
        ));
    }
    let to = match (&body.target, &config.daemon.restore_root) {
        (Some(_), None) => {
            return Err(
                "this daemon restores only into the job's own source: [daemon] restore_root is not set"
                    .into(),
            );
        }
        (Some(requested), Some(root)) => Some(restore_target::under_root(root, requested)?),
        (None, _) => own_target(job)?,
    };
    Ok(RestoreRequest {
        selector: Selector {
            id: Some(artifact.to_string()),
            from: body.destination.clone(),
            ..Selector::default()
        },
        to: to.map(|p| p.to_string_lossy().into_owned()),
        dry_run: body.dry_run,
        force: 1,
        clean: false,
        verify_first: true,
        check: match body.check {
            Check::Quick => CheckLevel::Quick,
            Check::Full => CheckLevel::Full,
        },
    })
}

/// The job's own source: its file or folder; a command job's `restore`
/// program (no path). Database servers are restored with `cairn restore --to`.
fn own_target(job: &Job) -> Result<Option<std::path::PathBuf>, String> {
    if let Some(path) = restore_job::own_path(job) {
        return Ok(Some(path));
    }
    match &job.source {
        crate::config::SourceConfig::Command {
            restore: Some(_), ..
        } => Ok(None),
        crate::config::SourceConfig::Command { restore: None, .. } => Err(format!(
            "job `{}` has no `restore` program to restore through",
            job.name
        )),
        _ => Err(format!(
            "job `{}` restores into a database server: use `cairn restore {} --to URL` on the host",
            job.name, job.name
        )),
    }
}

async fn plan(config: Config, job: Job, request: RestoreRequest) -> ApiResult<Response> {
    blocking(move || {
        let report =
            restore_job::restore_job(&config, &job, &request, Arc::new(crate::progress::Silent))?;
        let view = RestorePlanView {
            job: report.job,
            artifact: report.id,
            destination: report.destination,
            target: report.target,
            safety_copy: report.safety_copy.map(|p| p.display().to_string()),
            plaintext_bytes: report.plaintext_bytes,
            actions: report.actions,
        };
        Ok((StatusCode::OK, Json(view)).into_response())
    })
    .await
}

/// Starts the restore on its own thread, holding the job's claim, recorded as
/// a run like `cairn restore`'s; answers the run's id once it is recorded.
async fn start(
    state: &Arc<AppState>,
    caller: &Caller,
    job: Job,
    request: RestoreRequest,
) -> ApiResult<i64> {
    let state = state.clone();
    let caller = caller.clone();
    blocking(move || {
        let config = state.config();
        let store = state.store()?;
        let name = job.name.clone();
        let (started_tx, started_rx) = mpsc::channel::<ApiResult<i64>>();
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("cairn-restore".into())
            .spawn(move || {
                let store = thread_store.as_ref();
                let _claim = match crate::engine::job::claim(Some(store), &job.name) {
                    Ok(claim) => claim,
                    Err(e) => {
                        let _ = started_tx.send(Err(ApiError::conflict(e.to_string())));
                        return;
                    }
                };
                let result = runs::recorded(
                    Some(store),
                    &job.name,
                    RunKind::Restore,
                    Trigger::Manual,
                    || {
                        // Still running here, so the run is found by its state.
                        let _ = started_tx.send(running_restore(store, &job.name));
                        restore_job::restore_job(
                            &config,
                            &job,
                            &request,
                            Arc::new(crate::progress::Silent),
                        )
                    },
                );
                if let Err(e) = result {
                    tracing::warn!(job = %job.name, error = %e, "restore from the web failed");
                }
            })
            .map_err(ApiError::internal)?;
        let started = started_rx
            .recv()
            .map_err(|_| ApiError::internal("the restore thread ended at once"))?;
        let result = match &started {
            Ok(_) => "ok",
            Err(e) if e.code == "conflict" => "refused: running",
            Err(_) => "failed",
        };
        caller.audit(store.as_ref(), "restore", &name, result);
        started
    })
    .await
}

/// The restore run this process records for `job` (it holds the job's claim,
/// so there is one).
fn running_restore(store: &dyn StateStore, job: &str) -> ApiResult<i64> {
    let deadline = Instant::now() + RECORD_DEADLINE;
    let (host, pid) = (crate::state::host(), std::process::id());
    loop {
        let found = store
            .runs(&RunFilter {
                job: Some(job.to_string()),
                kind: Some(RunKind::Restore),
                status: None,
                limit: Some(5),
                with_log: false,
            })?
            .into_iter()
            .find(|r| r.pid == pid && r.host == host && r.status == RunStatus::Running);
        if let Some(run) = found {
            return Ok(run.id);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::internal(format!(
                "the restore of `{job}` recorded no run within {} s",
                RECORD_DEADLINE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
