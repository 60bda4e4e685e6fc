//! The state store: run history, paused jobs, schedule marks, artifact marks,
//! job claims and small named values (alert states, daemon facts).
//!
//! Everything here is *history*: losing the store loses no backup and no
//! listing, because the catalog is read from the destinations. The store sits
//! behind [`StateStore`]; `sqlite.rs` is the embedded implementation and nothing
//! else in the code speaks SQL to it.

pub mod access;
pub mod marks;
pub mod postgres;
pub mod replicas;
pub mod runlog;
pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use access::{
    ApiToken, AuditEntry, NewAudit, Role, ScheduleOverride, Session, User, audit_hash,
};
pub use replicas::{AbandonedFire, ClaimOutcome, ClaimToken, FireKey, ReplicaInfo};

use crate::config::Config;
use crate::{Error, Result};

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Backup,
    Verify,
    Prune,
    Restore,
    Drill,
    Validate,
    Check,
    /// Copies of damaged or missing artifacts written from a good copy.
    Repair,
    /// Artifacts copied into a destination (e.g. one added later).
    Copy,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Schedule,
    CatchUp,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Success,
    Failure,
    /// The process that ran it died, or the daemon aborted it at shutdown.
    Interrupted,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                match text {
                    $($text => Ok(Self::$variant),)*
                    other => Err(format!(
                        "`{other}` is not one of {}",
                        [$($text),*].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(RunKind {
    Backup = "backup",
    Verify = "verify",
    Prune = "prune",
    Restore = "restore",
    Drill = "drill",
    Validate = "validate",
    Check = "check",
    Repair = "repair",
    Copy = "copy",
});
text_enum!(Trigger {
    Schedule = "schedule",
    CatchUp = "catch-up",
    Manual = "manual",
});
text_enum!(RunStatus {
    Running = "running",
    Success = "success",
    Failure = "failure",
    Interrupted = "interrupted",
});

/// A run as it starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The job, or for `check` runs the check's name.
    pub job: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    /// The replica (daemon) that ran it; `None` for a CLI run outside one.
    pub replica: Option<String>,
    /// The nominal time of the scheduled fire it runs.
    pub scheduled_for: Option<Timestamp>,
    /// The fire claim it runs under (its row id).
    pub claim: Option<i64>,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub success: bool,
    pub bytes: Option<u64>,
    pub artifact_id: Option<String>,
    pub error: Option<String>,
    /// Kind-specific results (a drill's checks, a prune's decisions, …).
    pub details: Option<serde_json::Value>,
}

/// One run in the history.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    pub host: String,
    pub pid: u32,
    /// The replica that ran it (`null`: a CLI run outside any replica).
    pub replica: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// The run's log lines; left out of listings unless asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

impl RunRecord {
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished_at
            .map(|end| (end.as_millisecond() - self.started_at.as_millisecond()) as f64 / 1000.0)
    }
}

/// A number of finished runs of one job (or check), kind and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCount {
    pub job: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub count: u64,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub job: Option<String>,
    pub kind: Option<RunKind>,
    pub status: Option<RunStatus>,
    pub limit: Option<usize>,
    pub with_log: bool,
}

/// A later fact about one copy of an artifact: verification or a drill found it bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMark {
    pub bad: bool,
    pub reason: String,
    pub at: Timestamp,
}

/// The destination of marks made before marks were kept per copy: they apply
/// to every copy of the artifact until a per-copy mark replaces them.
pub const EVERY_COPY: &str = "";

/// The marks of one job, per copy: (artifact id, destination) → mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyMarks(pub BTreeMap<(String, String), ArtifactMark>);

impl CopyMarks {
    /// The mark that holds for the copy of `id` in `destination`: its own, else
    /// an old mark of the whole artifact.
    pub fn for_copy(&self, id: &str, destination: &str) -> Option<&ArtifactMark> {
        self.0
            .get(&(id.to_string(), destination.to_string()))
            .or_else(|| self.0.get(&(id.to_string(), EVERY_COPY.to_string())))
    }

    pub fn is_bad(&self, id: &str, destination: &str) -> bool {
        self.for_copy(id, destination).is_some_and(|m| m.bad)
    }

    /// Whether the mark that makes this copy bad is an old whole-artifact mark,
    /// which does not say which copy is damaged.
    pub fn bad_only_as_whole(&self, id: &str, destination: &str) -> bool {
        !self
            .0
            .contains_key(&(id.to_string(), destination.to_string()))
            && self.is_bad(id, destination)
    }
}

/// The persistent side of the daemon, the history and the alert states.
pub trait StateStore: Send + Sync {
    /// Where it is, for messages.
    fn location(&self) -> String;

    /// Records a run as running and returns its id.
    fn start_run(&self, run: &NewRun) -> Result<i64>;
    /// Records how run `id` ended, with its log.
    fn finish_run(&self, id: i64, end: &RunEnd, log: &str) -> Result<()>;
    /// Marks runs of processes on this host that are gone (killed, crashed)
    /// as interrupted; returns the runs this call marked, so that exactly one
    /// process alerts about each.
    fn interrupt_orphaned_runs(&self) -> Result<Vec<RunRecord>>;
    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;
    /// The newest run of `kind` (with `status`, when given) of each of `jobs`
    /// that has one, without its log: what `cairn status` shows of every job.
    /// A store behind a network answers it in one round trip.
    fn latest_runs(
        &self,
        jobs: &[String],
        kind: RunKind,
        status: Option<RunStatus>,
    ) -> Result<BTreeMap<String, RunRecord>> {
        let mut latest = BTreeMap::new();
        for job in jobs {
            let filter = RunFilter {
                job: Some(job.clone()),
                kind: Some(kind),
                status,
                limit: Some(1),
                with_log: false,
            };
            if let Some(run) = self.runs(&filter)?.into_iter().next() {
                latest.insert(job.clone(), run);
            }
        }
        Ok(latest)
    }
    fn run(&self, id: i64) -> Result<Option<RunRecord>>;
    /// Deletes finished runs that started before `before`; returns how many.
    fn forget_runs_before(&self, before: Timestamp) -> Result<usize>;
    /// How many finished runs there are per (job, kind, status), for metrics.
    fn run_counts(&self) -> Result<Vec<RunCount>> {
        let mut counts: BTreeMap<(String, RunKind, RunStatus), u64> = BTreeMap::new();
        for run in self.runs(&RunFilter::default())? {
            if run.status != RunStatus::Running {
                *counts.entry((run.job, run.kind, run.status)).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((job, kind, status), count)| RunCount {
                job,
                kind,
                status,
                count,
            })
            .collect())
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<()>;
    fn paused_jobs(&self) -> Result<BTreeSet<String>>;

    /// The last time a schedule was handled (fired or deliberately skipped).
    fn schedule_marks(&self) -> Result<BTreeMap<String, Timestamp>>;
    fn set_schedule_mark(&self, schedule: &str, at: Timestamp) -> Result<()>;

    /// Marks the copy of `job`'s artifact `id` in `destination` (or, with
    /// [`EVERY_COPY`], the whole artifact).
    fn mark_copy(&self, job: &str, id: &str, destination: &str, mark: &ArtifactMark) -> Result<()>;
    /// Removes the whole-artifact mark of `id`, once every copy has its own.
    fn forget_whole_mark(&self, job: &str, id: &str) -> Result<()>;
    fn copy_marks(&self, job: &str) -> Result<CopyMarks>;
    /// The marks of each of `jobs` (every one of them has an entry).
    fn copy_marks_of(&self, jobs: &[String]) -> Result<BTreeMap<String, CopyMarks>> {
        jobs.iter()
            .map(|job| Ok((job.clone(), self.copy_marks(job)?)))
            .collect()
    }

    /// Takes the exclusive claim on `name` (e.g. `backup:app`) for `holder` until
    /// `lease_secs` from now. Returns false when another live holder has it.
    fn claim(&self, name: &str, holder: &str, lease_secs: u64) -> Result<bool>;
    fn release(&self, name: &str, holder: &str) -> Result<()>;

    /// Small named JSON values in a namespace (alert states, daemon facts).
    fn get_value(&self, namespace: &str, key: &str) -> Result<Option<serde_json::Value>>;
    fn put_value(&self, namespace: &str, key: &str, value: &serde_json::Value) -> Result<()>;
    fn values(&self, namespace: &str) -> Result<BTreeMap<String, serde_json::Value>>;

    /// Adds a user; false when the name is taken.
    fn add_user(&self, user: &User) -> Result<bool>;
    fn user(&self, name: &str) -> Result<Option<User>>;
    fn users(&self) -> Result<Vec<User>>;
    /// Replaces a user's password hash and ends their sessions; false when no such user.
    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool>;
    /// Removes a user and ends their sessions; false when no such user.
    fn remove_user(&self, name: &str) -> Result<bool>;

    fn create_session(&self, session: &Session) -> Result<()>;
    fn session(&self, id_hash: &str) -> Result<Option<Session>>;
    fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()>;
    fn end_session(&self, id_hash: &str) -> Result<()>;
    /// Ends sessions created before `created_before` or idle since before
    /// `seen_before`; returns how many.
    fn end_stale_sessions(
        &self,
        created_before: Timestamp,
        seen_before: Timestamp,
    ) -> Result<usize>;

    /// Adds a token; false when the name is taken (revoked tokens keep theirs).
    fn add_token(&self, token: &ApiToken) -> Result<bool>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>>;
    fn tokens(&self) -> Result<Vec<ApiToken>>;
    fn touch_token(&self, name: &str, at: Timestamp) -> Result<()>;
    /// False when no live token has this name.
    fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool>;

    /// Appends to the audit log, chaining the entry to the last one atomically
    /// (several processes append at once).
    fn append_audit(&self, entry: &NewAudit) -> Result<AuditEntry>;
    /// Up to `limit` entries after `after_seq`, oldest first (page through
    /// the log without holding it).
    fn audit_after(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEntry>>;
    /// The newest `limit` entries, newest first.
    fn audit_newest(&self, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Sets (or with `None` clears) the schedule override of `job`.
    fn set_schedule_override(&self, job: &str, value: Option<&ScheduleOverride>) -> Result<()>;
    fn schedule_overrides(&self) -> Result<BTreeMap<String, ScheduleOverride>>;

    // Several replicas (state/replicas.rs). Lease times are the store's clock.

    /// Claims one fire for `replica` with a lease of `lease`: the row of
    /// `fire` is inserted once; whoever inserted it won.
    fn claim_fire(
        &self,
        fire: &FireKey,
        replica: &str,
        lease: std::time::Duration,
    ) -> Result<ClaimOutcome>;
    /// Extends the lease to `lease` from now; false when the claim is no longer
    /// `replica`'s under this token (finished, taken over).
    fn renew_lease(
        &self,
        token: &ClaimToken,
        replica: &str,
        lease: std::time::Duration,
    ) -> Result<bool>;
    /// The fencing check before a commit: the claim is `replica`'s under this
    /// token, unfinished, and its lease runs at least `margin` longer.
    fn lease_valid(
        &self,
        token: &ClaimToken,
        replica: &str,
        margin: std::time::Duration,
    ) -> Result<bool>;
    /// The run under the claim ended (whatever its outcome); idempotent.
    fn finish_claim(&self, token: &ClaimToken, replica: &str) -> Result<()>;
    /// Takes over every unfinished claim whose lease lapsed: each becomes
    /// `replica`'s (attempt + 1, a new lease) and the runs under it still
    /// `running` are recorded `interrupted`. Exactly one caller gets each.
    fn take_abandoned(
        &self,
        replica: &str,
        lease: std::time::Duration,
    ) -> Result<Vec<AbandonedFire>>;
    /// Records (or refreshes) a replica's facts.
    fn heartbeat(&self, info: &ReplicaInfo) -> Result<()>;
    /// Every replica that reported, newest heartbeat first.
    fn replicas(&self) -> Result<Vec<ReplicaInfo>>;
    /// Compare-and-set of a named value: writes `new` only if the current
    /// value equals `expected` (`None`: absent). Alert transitions use it so
    /// that one replica, not each, notifies.
    fn swap_value(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&serde_json::Value>,
        new: &serde_json::Value,
    ) -> Result<bool>;
    /// Who holds the named claim (`job:NAME`) now, if anyone live does.
    fn claim_holder(&self, name: &str) -> Result<Option<String>>;
}

/// Opens the store the config names: PostgreSQL with `[state] url`, else the
/// SQLite file (default: `cairn-state.db` beside the config).
pub fn open(config: &Config) -> Result<Box<dyn StateStore>> {
    match &config.state_postgres {
        Some(options) => Ok(Box::new(postgres::PostgresState::open(options)?)),
        None => open_path(&config.state_path),
    }
}

pub fn open_path(path: &Path) -> Result<Box<dyn StateStore>> {
    Ok(Box::new(sqlite::SqliteState::open(path)?))
}

/// Opens the store, or logs why it cannot and returns `None`: a manual backup
/// must not fail because its history cannot be written.
pub fn open_or_warn(config: &Config) -> Option<Box<dyn StateStore>> {
    match open(config) {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, "the state store cannot be opened; this run is not recorded in the history");
            None
        }
    }
}

pub(crate) fn state_error(path: &Path, what: &str, e: impl fmt::Display) -> Error {
    // SQLite reports a full disk as a plain I/O error when it cannot grow -shm.
    let full = path
        .parent()
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }
        })
        .and_then(|dir| crate::local_fs::free_space(dir).ok())
        .is_some_and(|(free, _)| free < 64 * 1024);
    Error::Run(format!(
        "state store {}: {what}: {e}{} (history only: backups and their listing do not depend on it)",
        path.display(),
        if full {
            "; the disk holding it is full: free space or move [state] path"
        } else {
            ""
        }
    ))
}

/// The host name recorded with runs and claims.
pub fn host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
