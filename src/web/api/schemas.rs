//! The OpenAPI shapes of the engine's and the store's JSON (`JobStatus`,
//! `RunRecord`, `list::Entry`, `CheckStatus`, prune reports) that the API
//! passes through as serialised. They live here, not as derives on the engine
//! types, so that the engine does not depend on the web layer's document
//! generator; tests/web_openapi.rs checks every live answer against them, so
//! a field the engine renames or retypes fails that test.
// Only their schemas are used: no value of these types is ever built.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use super::runs::{PrunePlan, RunStarted};

/// A job's schedule override: `{"mode": "disabled"}` or `{"mode": "cron", "cron": EXPR}`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum ScheduleOverrideDoc {
    /// The job's schedules do not fire (manual runs still work).
    Disabled,
    /// This cron expression replaces the job's schedules.
    Cron { cron: String },
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKindDoc {
    Backup,
    Verify,
    Prune,
    Restore,
    Drill,
    Validate,
    Check,
    Repair,
    Copy,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerDoc {
    Schedule,
    CatchUp,
    Manual,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatusDoc {
    Running,
    Success,
    Failure,
    Interrupted,
}

/// A recorded run as the engine serialises it (inside job and check statuses).
#[derive(Serialize, ToSchema)]
pub struct RunRecordDoc {
    pub id: i64,
    pub job: String,
    pub kind: RunKindDoc,
    pub trigger: TriggerDoc,
    pub status: RunStatusDoc,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    #[schema(minimum = 0)]
    pub bytes: Option<u64>,
    pub artifact_id: Option<String>,
    pub error: Option<String>,
    /// What the kind of run measured (sizes, durations, per destination).
    #[schema(value_type = Option<Object>)]
    pub details: Option<()>,
    pub host: String,
    pub pid: u32,
    /// The replica that ran it (`null`: a CLI run outside any replica).
    #[schema(required = true)]
    pub replica: Option<String>,
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    pub log: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleStatusDoc {
    pub cron: String,
    pub timezone: String,
    pub tag: Option<String>,
    #[schema(format = DateTime)]
    pub next_run: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationStatusDoc {
    pub destination: String,
    /// Usable artifacts.
    pub artifacts: u64,
    pub stored_bytes: u64,
    #[schema(format = DateTime)]
    pub newest: Option<String>,
    pub newest_bytes: Option<u64>,
    /// Complete artifacts whose signature does not verify (left out when 0).
    pub untrusted: Option<u64>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewestGoodDoc {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub age_seconds: i64,
}

/// The last drill that passed: when the job was last proven restorable.
#[derive(Serialize, ToSchema)]
pub struct ProvenDoc {
    #[schema(format = DateTime)]
    pub at: String,
    pub age_seconds: i64,
    pub artifact_id: Option<String>,
    /// The measured time to restore.
    pub restore_seconds: Option<f64>,
}

/// The engine's status of a job (`cairn status --json`).
#[derive(Serialize, ToSchema)]
pub struct JobStatusDoc {
    pub job: String,
    pub paused: bool,
    pub schedules: Vec<ScheduleStatusDoc>,
    #[schema(format = DateTime)]
    pub next_run: Option<String>,
    pub last_run: Option<RunRecordDoc>,
    #[schema(format = DateTime)]
    pub last_success: Option<String>,
    pub newest_good: Option<NewestGoodDoc>,
    pub stored_bytes: u64,
    pub destinations: Vec<DestinationStatusDoc>,
    pub proven: Option<ProvenDoc>,
    /// `drill.max_age` is set and no drill passed within it.
    pub drill_stale: bool,
    pub drill_schedule: Option<ScheduleStatusDoc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompressionDoc {
    Zstd,
    Gzip,
    None,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionDoc {
    None,
    Age,
    AgePassphrase,
    Openpgp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TrustDoc {
    Unchecked,
    Signed,
    Untrusted,
}

/// One copy of an artifact (`cairn list --json`), with `bad`.
#[derive(Serialize, ToSchema)]
pub struct ArtifactDoc {
    pub id: String,
    pub job: String,
    pub tag: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub destination: String,
    /// The data object's path inside its destination.
    pub key: String,
    pub size: u64,
    pub sha256: String,
    pub plaintext_size: u64,
    pub plaintext_sha256: String,
    pub source: String,
    pub codecs: Vec<String>,
    pub compression: CompressionDoc,
    pub encryption: EncryptionDoc,
    /// `signed`, `untrusted` (with `trust_problem`) or `unchecked`.
    pub trust: TrustDoc,
    pub trust_problem: Option<String>,
    /// Marked bad by a verification or a drill.
    pub bad: bool,
}

/// Something in storage that is not a usable artifact.
#[derive(Serialize, ToSchema)]
pub struct ProblemDoc {
    pub job: String,
    pub destination: String,
    pub key: String,
    pub problem: String,
}

/// A health check with its last run (`cairn health --json`).
#[derive(Serialize, ToSchema)]
pub struct CheckStatusDoc {
    pub check: String,
    pub kind: String,
    pub interval_seconds: u64,
    pub last_run: Option<RunRecordDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct KeptDoc {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub tag: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedDoc {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub tag: Option<String>,
    pub reason: String,
    pub bytes: u64,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UntrustedDoc {
    pub id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub problem: String,
}

/// What a prune does (or would do) in one destination.
#[derive(Serialize, ToSchema)]
pub struct PruneReportDoc {
    pub job: String,
    pub destination: String,
    pub dry_run: bool,
    pub keep: Vec<KeptDoc>,
    pub delete: Vec<DeletedDoc>,
    /// Why nothing was deleted, when the safety rules stopped the prune.
    pub skipped: Option<String>,
    pub untouched: Option<Vec<String>>,
    pub untrusted: Option<Vec<UntrustedDoc>>,
    pub error: Option<String>,
}

/// A job's prune, per destination.
#[derive(Serialize, ToSchema)]
pub struct JobPruneDoc {
    pub job: String,
    pub destinations: Vec<PruneReportDoc>,
}

/// `ok`, `running` (a run goes on now), `failing` (the last run failed) or `paused`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStateDoc {
    Ok,
    Running,
    Failing,
    Paused,
}

/// The 200 of `POST /api/v1/jobs/{job}/runs`: a run that ended within
/// `?wait=`, or a prune's dry-run plan.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum StartAnswerDoc {
    Ended(RunStarted),
    Plan(PrunePlan),
}

/// What `POST /api/v1/jobs/{job}/runs` starts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunRequestKindDoc {
    Backup,
    Verify,
    Drill,
    Prune,
}
