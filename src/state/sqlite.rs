//! The embedded state store: one SQLite file in WAL mode, so the daemon and CLI
//! commands can use it at the same time. Schema changes are numbered migrations
//! recorded in `PRAGMA user_version`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    AbandonedFire, ApiToken, ArtifactMark, AuditEntry, ClaimOutcome, ClaimToken, CopyMarks,
    FireKey, NewAudit, NewRun, ReplicaInfo, RunEnd, RunFilter, RunRecord, RunStatus,
    ScheduleOverride, Session, StateStore, User, audit_hash, host, state_error,
};
use crate::{Error, Result};

/// Migrations in order; entry `n` brings the schema from version `n` to `n + 1`.
/// The kv namespace that keeps the number of runs deleted by `forget_runs_before`
/// per `job\tkind\tstatus`.
const FORGOTTEN_RUNS: &str = "forgotten_runs";

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        bytes INTEGER,
        artifact_id TEXT,
        error TEXT,
        details TEXT,
        log TEXT,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL
     );
     CREATE INDEX runs_by_job ON runs (job, kind, id);
     CREATE TABLE paused (job TEXT PRIMARY KEY, since INTEGER NOT NULL);
     CREATE TABLE schedule_marks (schedule TEXT PRIMARY KEY, at INTEGER NOT NULL);
     CREATE TABLE artifact_marks (
        job TEXT NOT NULL, id TEXT NOT NULL, bad INTEGER NOT NULL,
        reason TEXT NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (job, id)
     );
     CREATE TABLE claims (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, until INTEGER NOT NULL
     );
     CREATE TABLE kv (
        namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, key)
     );",
    // Marks per copy: an id-only mark of an older version becomes a mark of
    // every copy (destination ''), which the next verification replaces.
    "ALTER TABLE artifact_marks RENAME TO artifact_marks_v1;
     CREATE TABLE artifact_marks (
        job TEXT NOT NULL, id TEXT NOT NULL, destination TEXT NOT NULL,
        bad INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (job, id, destination)
     );
     INSERT INTO artifact_marks (job, id, destination, bad, reason, at)
        SELECT job, id, '', bad, reason, at FROM artifact_marks_v1;
     DROP TABLE artifact_marks_v1;",
    // The web UI and API: users, sessions, tokens, the audit log, schedule overrides.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        csrf TEXT NOT NULL, created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL
     );
     CREATE INDEX sessions_by_user ON sessions (user);
     CREATE TABLE tokens (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
        jobs TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,
        last_used_at INTEGER, revoked_at INTEGER
     );
     CREATE TABLE audit (
        seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, address TEXT NOT NULL,
        result TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
     );
     CREATE TABLE schedule_overrides (
        job TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL
     );",
    // Several replicas: fire claims with leases, heartbeats, runs' replica and fire.
    "CREATE TABLE fire_claims (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL, kind TEXT NOT NULL, scheduled_for INTEGER NOT NULL,
        replica TEXT NOT NULL, attempt INTEGER NOT NULL, claimed_at INTEGER NOT NULL,
        until INTEGER NOT NULL, finished_at INTEGER,
        UNIQUE (job, kind, scheduled_for)
     );
     CREATE INDEX fire_claims_open ON fire_claims (until) WHERE finished_at IS NULL;
     CREATE TABLE replicas (
        id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        version TEXT NOT NULL, started_at INTEGER NOT NULL, last_heartbeat INTEGER NOT NULL,
        runs_in_progress INTEGER NOT NULL, config_fingerprint TEXT NOT NULL,
        stopped_at INTEGER
     );
     ALTER TABLE runs ADD COLUMN replica TEXT;
     ALTER TABLE runs ADD COLUMN scheduled_for INTEGER;
     ALTER TABLE runs ADD COLUMN claim INTEGER;
     CREATE INDEX runs_by_claim ON runs (claim) WHERE claim IS NOT NULL;",
    // The runs going now (the API's job states, the daemon's busy check)
    // without a scan of the whole history.
    "CREATE INDEX runs_by_status ON runs (status, id);",
];

/// Logs longer than this keep their head and tail.
const LOG_LIMIT: usize = 256 * 1024;

pub struct SqliteState {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn millis(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

fn lease_millis(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl SqliteState {
    pub fn open(path: &Path) -> Result<SqliteState> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| state_error(path, "cannot create its folder", e))?;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
        }
        let new = !path.exists();
        let conn = Connection::open(path).map_err(|e| state_error(path, "cannot open", e))?;
        if new {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| state_error(path, "cannot configure", e))?;
        use_wal(&conn).map_err(|e| state_error(path, "cannot switch to WAL mode", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| state_error(path, "cannot configure", e))?;
        let store = SqliteState {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.error("cannot start the migration", e))?;
        let version: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| self.error("cannot read the schema version", e))?
            .try_into()
            .unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(Error::Run(format!(
                "state store {} has schema version {version}, newer than this cairn knows ({}); upgrade cairn",
                self.path.display(),
                MIGRATIONS.len()
            )));
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", (n + 1) as i64))
                .map_err(|e| self.error(&format!("migration {} failed", n + 1), e))?;
        }
        tx.commit().map_err(|e| self.error("cannot commit", e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        state_error(&self.path, what, e)
    }

    fn record(row: &rusqlite::Row, with_log: bool) -> rusqlite::Result<RunRecord> {
        Ok(RunRecord {
            id: row.get(0)?,
            job: row.get(1)?,
            kind: parse_column(2, row.get(2)?)?,
            trigger: parse_column(3, row.get(3)?)?,
            status: parse_column(4, row.get(4)?)?,
            started_at: from_millis(row.get(5)?),
            finished_at: row.get::<_, Option<i64>>(6)?.map(from_millis),
            bytes: row.get::<_, Option<i64>>(7)?.map(|b| b.max(0) as u64),
            artifact_id: row.get(8)?,
            error: row.get(9)?,
            details: row
                .get::<_, Option<String>>(10)?
                .and_then(|d| serde_json::from_str(&d).ok()),
            log: if with_log { row.get(11)? } else { None },
            host: row.get(12)?,
            pid: row.get::<_, i64>(13)?.max(0) as u32,
            replica: row.get(14)?,
            scheduled_for: row.get::<_, Option<i64>>(15)?.map(from_millis),
        })
    }
}

/// Puts the database in WAL mode (a persistent property of the file). Only its
/// first opener changes it; that change needs an exclusive lock and SQLite does
/// not call the busy handler for it, so a daemon, its runs and a CLI command
/// opening a new store at the same moment retry here instead of failing.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(mode)
                } else {
                    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                }
            });
        match mode {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

const RUN_COLUMNS: &str = "id, job, kind, trigger, status, started_at, finished_at, bytes, \
     artifact_id, error, details, log, host, pid, replica, scheduled_for";

pub(super) fn truncate_log(log: &str) -> String {
    if log.len() <= LOG_LIMIT {
        return log.to_string();
    }
    let mut head = LOG_LIMIT / 4;
    while !log.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = log.len() - (LOG_LIMIT - head);
    while !log.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n… {} bytes left out …\n{}",
        &log[..head],
        tail - head,
        &log[tail..]
    )
}

impl StateStore for SqliteState {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn start_run(&self, run: &NewRun) -> Result<i64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO runs (job, kind, trigger, status, started_at, host, pid,
             replica, scheduled_for, claim)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.job,
                run.kind.as_str(),
                run.trigger.as_str(),
                millis(run.started_at),
                host(),
                std::process::id() as i64,
                run.replica,
                run.scheduled_for.map(millis),
                run.claim,
            ],
        )
        .map_err(|e| self.error("cannot record the run", e))?;
        Ok(conn.last_insert_rowid())
    }

    fn finish_run(&self, id: i64, end: &RunEnd, log: &str) -> Result<()> {
        let status = if end.success {
            RunStatus::Success
        } else {
            RunStatus::Failure
        };
        self.lock()
            .execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, bytes = ?4, artifact_id = ?5,
                 error = ?6, details = ?7, log = ?8 WHERE id = ?1",
                params![
                    id,
                    status.as_str(),
                    millis(Timestamp::now()),
                    end.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                    end.artifact_id,
                    end.error,
                    end.details.as_ref().map(ToString::to_string),
                    truncate_log(log),
                ],
            )
            .map_err(|e| self.error("cannot record the end of the run", e))?;
        Ok(())
    }

    fn interrupt_orphaned_runs(&self) -> Result<Vec<RunRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            // Runs under a fire claim are settled when their lease lapses
            // (`take_abandoned`), by whichever replica sees it first.
            .prepare(
                "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1 AND claim IS NULL",
            )
            .map_err(|e| self.error("cannot read runs", e))?;
        let running: Vec<(i64, i64)> = stmt
            .query_map([host()], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read runs", e))?;
        let mut marked = Vec::new();
        for (id, pid) in running {
            if pid as u32 != std::process::id() && crate::leftovers::owner_dead(&pid.to_string()) {
                // Another process may sweep at the same time: the one whose
                // update changes the row owns the run's alert.
                let changed = conn
                    .execute(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2,
                         error = coalesce(error, 'the process running it ended before it finished (killed, or out of memory)')
                         WHERE id = ?1 AND status = 'running'",
                        params![id, millis(Timestamp::now())],
                    )
                    .map_err(|e| self.error("cannot update runs", e))?;
                if changed == 1
                    && let Some(run) = conn
                        .query_row(
                            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                            [id],
                            |r| Self::record(r, false),
                        )
                        .optional()
                        .map_err(|e| self.error("cannot read the run", e))?
                {
                    marked.push(run);
                }
            }
        }
        Ok(marked)
    }

    fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(job) = &filter.job {
            args.push(job.clone());
            sql.push_str(&format!(" AND job = ?{}", args.len()));
        }
        if let Some(kind) = filter.kind {
            args.push(kind.as_str().to_string());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(status) = filter.status {
            args.push(status.as_str().to_string());
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&sql)
            .map_err(|e| self.error("cannot read runs", e))?;
        stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Self::record(r, filter.with_log)
        })
        .and_then(Iterator::collect)
        .map_err(|e| self.error("cannot read runs", e))
    }

    fn run_counts(&self) -> Result<Vec<super::RunCount>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT job, kind, status, count(*) FROM runs WHERE status != 'running'
                 GROUP BY job, kind, status ORDER BY job, kind, status",
            )
            .map_err(|e| self.error("cannot count runs", e))?;
        let rows: Vec<(String, String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot count runs", e))?;
        drop(stmt);
        let mut stmt = conn
            .prepare("SELECT key, CAST(value AS INTEGER) FROM kv WHERE namespace = ?1")
            .map_err(|e| self.error("cannot count runs", e))?;
        let forgotten: Vec<(String, i64)> = stmt
            .query_map([FORGOTTEN_RUNS], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot count runs", e))?;
        let mut totals: BTreeMap<(String, String, String), i64> = BTreeMap::new();
        for (job, kind, status, count) in rows {
            *totals.entry((job, kind, status)).or_default() += count;
        }
        for (key, count) in forgotten {
            let mut parts = key.splitn(3, '\t').map(str::to_string);
            if let (Some(job), Some(kind), Some(status)) =
                (parts.next(), parts.next(), parts.next())
            {
                *totals.entry((job, kind, status)).or_default() += count;
            }
        }
        // Kinds or statuses this version does not know are left out.
        Ok(totals
            .into_iter()
            .filter_map(|((job, kind, status), count)| {
                Some(super::RunCount {
                    job,
                    kind: kind.parse().ok()?,
                    status: status.parse().ok()?,
                    count: count.max(0) as u64,
                })
            })
            .collect())
    }

    fn run(&self, id: i64) -> Result<Option<RunRecord>> {
        self.lock()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                |r| Self::record(r, true),
            )
            .optional()
            .map_err(|e| self.error("cannot read the run", e))
    }

    fn forget_runs_before(&self, before: Timestamp) -> Result<usize> {
        let mut conn = self.lock();
        let fail = |e| self.error("cannot forget old runs", e);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        // The forgotten runs stay counted, so that `cairn_runs_total` never
        // goes down (Prometheus would read a counter reset).
        tx.execute(
            &format!(
                "INSERT INTO kv (namespace, key, value, updated_at)
                 SELECT '{FORGOTTEN_RUNS}', job || char(9) || kind || char(9) || status, count(*), ?2
                 FROM runs WHERE status != 'running' AND started_at < ?1
                 GROUP BY job, kind, status
                 ON CONFLICT (namespace, key) DO UPDATE
                 SET value = CAST(kv.value AS INTEGER) + CAST(excluded.value AS INTEGER),
                     updated_at = excluded.updated_at"
            ),
            params![millis(before), millis(Timestamp::now())],
        )
        .map_err(fail)?;
        let forgotten = tx
            .execute(
                "DELETE FROM runs WHERE status != 'running' AND started_at < ?1",
                [millis(before)],
            )
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(forgotten)
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<()> {
        let conn = self.lock();
        let result = if paused {
            conn.execute(
                "INSERT OR IGNORE INTO paused (job, since) VALUES (?1, ?2)",
                params![job, millis(Timestamp::now())],
            )
        } else {
            conn.execute("DELETE FROM paused WHERE job = ?1", [job])
        };
        result
            .map(|_| ())
            .map_err(|e| self.error("cannot change the paused jobs", e))
    }

    fn paused_jobs(&self) -> Result<BTreeSet<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT job FROM paused")
            .map_err(|e| self.error("cannot read the paused jobs", e))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the paused jobs", e))
    }

    fn schedule_marks(&self) -> Result<BTreeMap<String, Timestamp>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT schedule, at FROM schedule_marks")
            .map_err(|e| self.error("cannot read schedule marks", e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, from_millis(r.get(1)?))))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read schedule marks", e))
    }

    fn set_schedule_mark(&self, schedule: &str, at: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO schedule_marks (schedule, at) VALUES (?1, ?2)
                 ON CONFLICT (schedule) DO UPDATE SET at = excluded.at",
                params![schedule, millis(at)],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot write a schedule mark", e))
    }

    fn mark_copy(&self, job: &str, id: &str, destination: &str, mark: &ArtifactMark) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO artifact_marks (job, id, destination, bad, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (job, id, destination) DO UPDATE SET bad = excluded.bad,
                 reason = excluded.reason, at = excluded.at",
                params![job, id, destination, mark.bad, mark.reason, millis(mark.at)],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot mark the artifact", e))
    }

    fn forget_whole_mark(&self, job: &str, id: &str) -> Result<()> {
        self.lock()
            .execute(
                "DELETE FROM artifact_marks WHERE job = ?1 AND id = ?2 AND destination = ''",
                params![job, id],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot update the artifact's marks", e))
    }

    fn copy_marks(&self, job: &str) -> Result<CopyMarks> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, destination, bad, reason, at FROM artifact_marks WHERE job = ?1")
            .map_err(|e| self.error("cannot read artifact marks", e))?;
        stmt.query_map([job], |r| {
            Ok((
                (r.get(0)?, r.get(1)?),
                ArtifactMark {
                    bad: r.get(2)?,
                    reason: r.get(3)?,
                    at: from_millis(r.get(4)?),
                },
            ))
        })
        .and_then(Iterator::collect)
        .map(CopyMarks)
        .map_err(|e| self.error("cannot read artifact marks", e))
    }

    fn claim(&self, name: &str, holder: &str, lease_secs: u64) -> Result<bool> {
        let now = millis(Timestamp::now());
        let until = now.saturating_add((lease_secs as i64).saturating_mul(1000));
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.error("cannot claim", e))?;
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT holder, until FROM claims WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error("cannot claim", e))?;
        let free = match &current {
            None => true,
            Some((h, _)) if h == holder => true,
            Some((h, until)) => *until < now || holder_dead(h),
        };
        if free {
            tx.execute(
                "INSERT INTO claims (name, holder, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until",
                params![name, holder, until],
            )
            .map_err(|e| self.error("cannot claim", e))?;
        }
        tx.commit().map_err(|e| self.error("cannot claim", e))?;
        Ok(free)
    }

    fn release(&self, name: &str, holder: &str) -> Result<()> {
        self.lock()
            .execute(
                "DELETE FROM claims WHERE name = ?1 AND holder = ?2",
                params![name, holder],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot release a claim", e))
    }

    fn get_value(&self, namespace: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let text: Option<String> = self
            .lock()
            .query_row(
                "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error("cannot read a value", e))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn put_value(&self, namespace: &str, key: &str, value: &serde_json::Value) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
                params![namespace, key, value.to_string(), millis(Timestamp::now())],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot write a value", e))
    }

    fn values(&self, namespace: &str) -> Result<BTreeMap<String, serde_json::Value>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key, value FROM kv WHERE namespace = ?1")
            .map_err(|e| self.error("cannot read values", e))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([namespace], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read values", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
            .collect())
    }

    fn add_user(&self, user: &User) -> Result<bool> {
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO users (name, role, password_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    user.name,
                    user.role.as_str(),
                    user.password_hash,
                    millis(user.created_at)
                ],
            )
            .map(|n| n == 1)
            .map_err(|e| self.error("cannot add the user", e))
    }

    fn user(&self, name: &str) -> Result<Option<User>> {
        self.lock()
            .query_row(
                "SELECT name, role, password_hash, created_at FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(|e| self.error("cannot read the user", e))
    }

    fn users(&self) -> Result<Vec<User>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name, role, password_hash, created_at FROM users ORDER BY name")
            .map_err(|e| self.error("cannot read the users", e))?;
        stmt.query_map([], user_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the users", e))
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let mut conn = self.lock();
        let fail = |e| self.error("cannot change the password", e);
        let tx = conn.transaction().map_err(fail)?;
        let changed = tx
            .execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, password_hash],
            )
            .map_err(fail)?;
        tx.execute("DELETE FROM sessions WHERE user = ?1", [name])
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(changed == 1)
    }

    fn remove_user(&self, name: &str) -> Result<bool> {
        let mut conn = self.lock();
        let fail = |e| self.error("cannot remove the user", e);
        let tx = conn.transaction().map_err(fail)?;
        tx.execute("DELETE FROM sessions WHERE user = ?1", [name])
            .map_err(fail)?;
        let removed = tx
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(removed == 1)
    }

    fn create_session(&self, session: &Session) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO sessions (id_hash, user, csrf, created_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.id_hash,
                    session.user,
                    session.csrf,
                    millis(session.created_at),
                    millis(session.last_seen_at)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot start the session", e))
    }

    fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        self.lock()
            .query_row(
                "SELECT id_hash, user, csrf, created_at, last_seen_at FROM sessions
                 WHERE id_hash = ?1",
                [id_hash],
                |r| {
                    Ok(Session {
                        id_hash: r.get(0)?,
                        user: r.get(1)?,
                        csrf: r.get(2)?,
                        created_at: from_millis(r.get(3)?),
                        last_seen_at: from_millis(r.get(4)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.error("cannot read the session", e))
    }

    fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "UPDATE sessions SET last_seen_at = ?2 WHERE id_hash = ?1",
                params![id_hash, millis(at)],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot update the session", e))
    }

    fn end_session(&self, id_hash: &str) -> Result<()> {
        self.lock()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])
            .map(|_| ())
            .map_err(|e| self.error("cannot end the session", e))
    }

    fn end_stale_sessions(
        &self,
        created_before: Timestamp,
        seen_before: Timestamp,
    ) -> Result<usize> {
        self.lock()
            .execute(
                "DELETE FROM sessions WHERE created_at < ?1 OR last_seen_at < ?2",
                params![millis(created_before), millis(seen_before)],
            )
            .map_err(|e| self.error("cannot end stale sessions", e))
    }

    fn add_token(&self, token: &ApiToken) -> Result<bool> {
        let jobs = serde_json::to_string(&token.jobs).unwrap_or_else(|_| "[]".into());
        self.lock()
            .execute(
                "INSERT OR IGNORE INTO tokens
                 (name, hash, role, jobs, created_at, expires_at, last_used_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    token.name,
                    token.hash,
                    token.role.as_str(),
                    jobs,
                    millis(token.created_at),
                    token.expires_at.map(millis),
                    token.last_used_at.map(millis),
                    token.revoked_at.map(millis)
                ],
            )
            .map(|n| n == 1)
            .map_err(|e| self.error("cannot add the token", e))
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>> {
        self.lock()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                [hash],
                token_row,
            )
            .optional()
            .map_err(|e| self.error("cannot read the token", e))
    }

    fn tokens(&self) -> Result<Vec<ApiToken>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"))
            .map_err(|e| self.error("cannot read the tokens", e))?;
        stmt.query_map([], token_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the tokens", e))
    }

    fn touch_token(&self, name: &str, at: Timestamp) -> Result<()> {
        self.lock()
            .execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, millis(at)],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot update the token", e))
    }

    fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool> {
        self.lock()
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, millis(at)],
            )
            .map(|n| n == 1)
            .map_err(|e| self.error("cannot revoke the token", e))
    }

    fn append_audit(&self, entry: &NewAudit) -> Result<AuditEntry> {
        let mut conn = self.lock();
        let fail = |e| self.error("cannot append to the audit log", e);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(fail)?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, super::access::AUDIT_GENESIS.to_string()),
        };
        let hash = audit_hash(seq, &prev_hash, entry);
        tx.execute(
            "INSERT INTO audit (seq, at, actor, action, target, address, result, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                seq,
                millis(entry.at),
                entry.actor,
                entry.action,
                entry.target,
                entry.address,
                entry.result,
                prev_hash,
                hash
            ],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(AuditEntry {
            seq,
            entry: entry.clone(),
            prev_hash,
            hash,
        })
    }

    fn audit_after(&self, after_seq: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(|e| self.error("cannot read the audit log", e))?;
        stmt.query_map(params![after_seq, limit as i64], audit_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the audit log", e))
    }

    fn audit_newest(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq DESC LIMIT ?1"
            ))
            .map_err(|e| self.error("cannot read the audit log", e))?;
        stmt.query_map([limit as i64], audit_row)
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the audit log", e))
    }

    fn set_schedule_override(&self, job: &str, value: Option<&ScheduleOverride>) -> Result<()> {
        let conn = self.lock();
        let result = match value {
            Some(value) => conn.execute(
                "INSERT INTO schedule_overrides (job, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (job) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
                params![
                    job,
                    serde_json::to_string(value).unwrap_or_default(),
                    millis(Timestamp::now())
                ],
            ),
            None => conn.execute("DELETE FROM schedule_overrides WHERE job = ?1", [job]),
        };
        result
            .map(|_| ())
            .map_err(|e| self.error("cannot change the schedule override", e))
    }

    fn schedule_overrides(&self) -> Result<BTreeMap<String, ScheduleOverride>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT job, value FROM schedule_overrides")
            .map_err(|e| self.error("cannot read the schedule overrides", e))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.error("cannot read the schedule overrides", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(job, v)| Some((job, serde_json::from_str(&v).ok()?)))
            .collect())
    }

    fn claim_fire(&self, fire: &FireKey, replica: &str, lease: Duration) -> Result<ClaimOutcome> {
        let now = millis(Timestamp::now());
        let conn = self.lock();
        let fail = |e| self.error("cannot claim a fire", e);
        let won: Option<i64> = conn
            .query_row(
                "INSERT INTO fire_claims (job, kind, scheduled_for, replica, attempt, claimed_at, until)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)
                 ON CONFLICT (job, kind, scheduled_for) DO NOTHING RETURNING id",
                params![
                    fire.job,
                    fire.kind,
                    millis(fire.scheduled_for),
                    replica,
                    now,
                    now.saturating_add(lease_millis(lease))
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        if let Some(id) = won {
            return Ok(ClaimOutcome::Won(ClaimToken { id, attempt: 1 }));
        }
        let by: Option<String> = conn
            .query_row(
                "SELECT replica FROM fire_claims WHERE job = ?1 AND kind = ?2 AND scheduled_for = ?3",
                params![fire.job, fire.kind, millis(fire.scheduled_for)],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        Ok(ClaimOutcome::Lost {
            by: by.unwrap_or_default(),
        })
    }

    fn renew_lease(&self, token: &ClaimToken, replica: &str, lease: Duration) -> Result<bool> {
        let now = millis(Timestamp::now());
        // A lapsed lease is not renewed: another replica may be taking it over.
        self.lock()
            .execute(
                "UPDATE fire_claims SET until = ?4
                 WHERE id = ?1 AND attempt = ?2 AND replica = ?3 AND finished_at IS NULL
                 AND until >= ?5",
                params![
                    token.id,
                    token.attempt,
                    replica,
                    now.saturating_add(lease_millis(lease)),
                    now
                ],
            )
            .map(|changed| changed == 1)
            .map_err(|e| self.error("cannot renew a lease", e))
    }

    fn lease_valid(&self, token: &ClaimToken, replica: &str, margin: Duration) -> Result<bool> {
        let now = millis(Timestamp::now());
        self.lock()
            .query_row(
                "SELECT count(*) FROM fire_claims
                 WHERE id = ?1 AND attempt = ?2 AND replica = ?3 AND finished_at IS NULL
                 AND until > ?4",
                params![
                    token.id,
                    token.attempt,
                    replica,
                    now.saturating_add(lease_millis(margin))
                ],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 1)
            .map_err(|e| self.error("cannot check a lease", e))
    }

    fn finish_claim(&self, token: &ClaimToken, replica: &str) -> Result<()> {
        self.lock()
            .execute(
                "UPDATE fire_claims SET finished_at = ?4
                 WHERE id = ?1 AND attempt = ?2 AND replica = ?3 AND finished_at IS NULL",
                params![token.id, token.attempt, replica, millis(Timestamp::now())],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot finish a claim", e))
    }

    fn take_abandoned(&self, replica: &str, lease: Duration) -> Result<Vec<AbandonedFire>> {
        let now = millis(Timestamp::now());
        let fail = |e| self.error("cannot take over abandoned claims", e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let lapsed: Vec<(i64, u32, String, String, i64, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, attempt, job, kind, scheduled_for, replica FROM fire_claims
                     WHERE finished_at IS NULL AND until < ?1",
                )
                .map_err(fail)?;
            stmt.query_map([now], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .and_then(Iterator::collect)
            .map_err(fail)?
        };
        let mut taken = Vec::new();
        for (id, attempt, job, kind, scheduled_for, old) in lapsed {
            tx.execute(
                "UPDATE fire_claims SET replica = ?2, attempt = attempt + 1, until = ?3 WHERE id = ?1",
                params![id, replica, now.saturating_add(lease_millis(lease))],
            )
            .map_err(fail)?;
            let runs: Vec<RunRecord> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "UPDATE runs SET status = 'interrupted', finished_at = ?2,
                         error = coalesce(error, ?3)
                         WHERE claim = ?1 AND status = 'running' RETURNING {RUN_COLUMNS}"
                    ))
                    .map_err(fail)?;
                stmt.query_map(
                    params![
                        id,
                        now,
                        format!(
                            "abandoned by replica {old}: its lease lapsed before the run ended"
                        )
                    ],
                    |r| Self::record(r, false),
                )
                .and_then(Iterator::collect)
                .map_err(fail)?
            };
            taken.push(AbandonedFire {
                token: ClaimToken {
                    id,
                    attempt: attempt + 1,
                },
                fire: FireKey {
                    job,
                    kind,
                    scheduled_for: from_millis(scheduled_for),
                },
                abandoned_by: old,
                runs,
            });
        }
        tx.commit().map_err(fail)?;
        Ok(taken)
    }

    fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO replicas (id, host, pid, version, started_at, last_heartbeat,
                 runs_in_progress, config_fingerprint, stopped_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                 version = excluded.version, started_at = excluded.started_at,
                 last_heartbeat = excluded.last_heartbeat,
                 runs_in_progress = excluded.runs_in_progress,
                 config_fingerprint = excluded.config_fingerprint,
                 stopped_at = excluded.stopped_at",
                params![
                    info.id,
                    info.host,
                    info.pid,
                    info.version,
                    millis(info.started_at),
                    millis(info.last_heartbeat),
                    info.runs_in_progress,
                    info.config_fingerprint,
                    info.stopped_at.map(millis)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.error("cannot record the heartbeat", e))
    }

    fn replicas(&self) -> Result<Vec<ReplicaInfo>> {
        let conn = self.lock();
        let fail = |e| self.error("cannot read the replicas", e);
        let mut stmt = conn
            .prepare(
                "SELECT id, host, pid, version, started_at, last_heartbeat, runs_in_progress,
                 config_fingerprint, stopped_at FROM replicas ORDER BY last_heartbeat DESC, id",
            )
            .map_err(fail)?;
        stmt.query_map([], |r| {
            Ok(ReplicaInfo {
                id: r.get(0)?,
                host: r.get(1)?,
                pid: r.get(2)?,
                version: r.get(3)?,
                started_at: from_millis(r.get(4)?),
                last_heartbeat: from_millis(r.get(5)?),
                runs_in_progress: r.get(6)?,
                config_fingerprint: r.get(7)?,
                stopped_at: r.get::<_, Option<i64>>(8)?.map(from_millis),
            })
        })
        .and_then(Iterator::collect)
        .map_err(fail)
    }

    fn swap_value(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&serde_json::Value>,
        new: &serde_json::Value,
    ) -> Result<bool> {
        let fail = |e| self.error("cannot write a value", e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let current: Option<String> = tx
            .query_row(
                "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(fail)?;
        let current = current.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if current.as_ref() != expected {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO kv (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at",
            params![namespace, key, new.to_string(), millis(Timestamp::now())],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(true)
    }

    fn claim_holder(&self, name: &str) -> Result<Option<String>> {
        let now = millis(Timestamp::now());
        let current: Option<(String, i64)> = self
            .lock()
            .query_row(
                "SELECT holder, until FROM claims WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error("cannot read a claim", e))?;
        Ok(current
            .filter(|(holder, until)| *until >= now && !holder_dead(holder))
            .map(|(holder, _)| holder))
    }
}

const TOKEN_COLUMNS: &str =
    "name, hash, role, jobs, created_at, expires_at, last_used_at, revoked_at";
const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, address, result, prev_hash, hash";

fn parse_column<T: std::str::FromStr<Err = String>>(i: usize, text: String) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        role: parse_column(1, r.get(1)?)?,
        password_hash: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<ApiToken> {
    let jobs: String = r.get(3)?;
    Ok(ApiToken {
        name: r.get(0)?,
        hash: r.get(1)?,
        role: parse_column(2, r.get(2)?)?,
        jobs: serde_json::from_str(&jobs).unwrap_or_default(),
        created_at: from_millis(r.get(4)?),
        expires_at: r.get::<_, Option<i64>>(5)?.map(from_millis),
        last_used_at: r.get::<_, Option<i64>>(6)?.map(from_millis),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(from_millis),
    })
}

fn audit_row(r: &rusqlite::Row) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        seq: r.get(0)?,
        entry: NewAudit {
            at: from_millis(r.get(1)?),
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            address: r.get(5)?,
            result: r.get(6)?,
        },
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

/// Holders are `host:pid[:…]`; a holder on this host whose process is gone
/// holds nothing.
pub(super) fn holder_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    h == host() && crate::leftovers::owner_dead(pid)
}

/// The claim holder name of this process: `host:pid`, and `:replica` when
/// it runs for one.
pub fn holder() -> String {
    match super::replicas::origin().replica {
        Some(replica) => format!("{}:{}:{replica}", host(), std::process::id()),
        None => format!("{}:{}", host(), std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RunKind, Trigger};

    fn store() -> (tempfile::TempDir, SqliteState) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteState::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn runs_round_trip_newest_first() {
        let (_dir, store) = store();
        let started_at = Timestamp::now();
        let a = store
            .start_run(&NewRun {
                job: "app".into(),
                kind: RunKind::Backup,
                trigger: Trigger::Schedule,
                started_at,
                replica: None,
                scheduled_for: None,
                claim: None,
            })
            .unwrap();
        let b = store
            .start_run(&NewRun {
                job: "app".into(),
                kind: RunKind::Prune,
                trigger: Trigger::Manual,
                started_at,
                replica: None,
                scheduled_for: None,
                claim: None,
            })
            .unwrap();
        store
            .finish_run(
                a,
                &RunEnd {
                    success: true,
                    bytes: Some(42),
                    artifact_id: Some("x".into()),
                    ..RunEnd::default()
                },
                "line one\n",
            )
            .unwrap();
        let runs = store.runs(&RunFilter::default()).unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b, a]);
        assert_eq!(runs[1].status, RunStatus::Success);
        assert_eq!(runs[1].bytes, Some(42));
        assert_eq!(runs[1].log, None);
        assert_eq!(
            store.run(a).unwrap().unwrap().log.as_deref(),
            Some("line one\n")
        );
        let backups = store
            .runs(&RunFilter {
                kind: Some(RunKind::Backup),
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(backups.len(), 1);
    }

    #[test]
    fn old_finished_runs_are_forgotten() {
        let (_dir, store) = store();
        let old = Timestamp::from_second(1_700_000_000).unwrap();
        let new = |started_at| NewRun {
            job: "app".into(),
            kind: RunKind::Check,
            trigger: Trigger::Schedule,
            started_at,
            replica: None,
            scheduled_for: None,
            claim: None,
        };
        let finished = store.start_run(&new(old)).unwrap();
        store.finish_run(finished, &RunEnd::default(), "").unwrap();
        let running = store.start_run(&new(old)).unwrap();
        let recent = store.start_run(&new(Timestamp::now())).unwrap();
        let cutoff = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(store.forget_runs_before(cutoff).unwrap(), 1);
        let left: Vec<i64> = store
            .runs(&RunFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, vec![recent, running]);
    }

    #[test]
    fn run_counts_never_go_down_when_runs_are_forgotten() {
        let (_dir, store) = store();
        let old = Timestamp::from_second(1_700_000_000).unwrap();
        let record = |success: bool| {
            let id = store
                .start_run(&NewRun {
                    job: "app".into(),
                    kind: RunKind::Backup,
                    trigger: Trigger::Schedule,
                    started_at: old,
                    replica: None,
                    scheduled_for: None,
                    claim: None,
                })
                .unwrap();
            store
                .finish_run(
                    id,
                    &RunEnd {
                        success,
                        ..RunEnd::default()
                    },
                    "",
                )
                .unwrap();
        };
        let count = |status| {
            store
                .run_counts()
                .unwrap()
                .iter()
                .find(|c| c.job == "app" && c.kind == RunKind::Backup && c.status == status)
                .map_or(0, |c| c.count)
        };
        record(true);
        record(true);
        record(false);
        let cutoff = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(store.forget_runs_before(cutoff).unwrap(), 3);
        record(true);
        assert_eq!(count(RunStatus::Success), 3);
        assert_eq!(count(RunStatus::Failure), 1);
        assert_eq!(store.forget_runs_before(cutoff).unwrap(), 1);
        assert_eq!(count(RunStatus::Success), 3, "a second forget adds up");
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        SqliteState::open(&path)
            .unwrap()
            .set_paused("app", true)
            .unwrap();
        let again = SqliteState::open(&path).unwrap();
        assert!(again.paused_jobs().unwrap().contains("app"));
        again.set_paused("app", false).unwrap();
        assert!(again.paused_jobs().unwrap().is_empty());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn claims_are_exclusive_until_released() {
        let (_dir, store) = store();
        assert!(store.claim("backup:app", "h:1:a", 60).unwrap());
        // A live holder (this test's own pid) blocks another.
        let me = holder();
        assert!(store.claim("backup:b", &me, 60).unwrap());
        assert!(!store.claim("backup:b", "other:2", 60).unwrap());
        store.release("backup:b", &me).unwrap();
        assert!(store.claim("backup:b", "other:2", 60).unwrap());
    }

    #[test]
    fn claims_of_dead_processes_and_expired_leases_are_taken_over() {
        let (_dir, store) = store();
        let dead = format!("{}:{}", host(), 999_999_999u32);
        assert!(store.claim("backup:app", &dead, 600).unwrap());
        assert!(store.claim("backup:app", &holder(), 60).unwrap());
        assert!(store.claim("x", "elsewhere:1", 0).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(store.claim("x", "elsewhere:2", 60).unwrap());
    }

    #[test]
    fn opening_while_others_write_waits_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let writer = SqliteState::open(&path).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    writer.claim("job:app", &format!("h:{n}"), 0).unwrap();
                }
            });
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..50 {
                            let store = SqliteState::open(&path).unwrap();
                            store.paused_jobs().unwrap();
                        }
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    #[test]
    fn long_logs_keep_head_and_tail() {
        let log = format!("{}{}", "a".repeat(LOG_LIMIT), "END");
        let cut = truncate_log(&log);
        assert!(cut.len() <= LOG_LIMIT + 64);
        assert!(cut.starts_with('a') && cut.ends_with("END"));
    }

    #[test]
    fn values_and_marks() {
        let (_dir, store) = store();
        store
            .put_value("alerts", "check:api", &serde_json::json!({"failing": true}))
            .unwrap();
        assert_eq!(
            store.get_value("alerts", "check:api").unwrap(),
            Some(serde_json::json!({"failing": true}))
        );
        assert_eq!(store.values("alerts").unwrap().len(), 1);
        let mark = ArtifactMark {
            bad: true,
            reason: "sha256 mismatch".into(),
            at: Timestamp::from_millisecond(1_800_000_000_123).unwrap(),
        };
        store.mark_copy("app", "id1", "a", &mark).unwrap();
        let marks = store.copy_marks("app").unwrap();
        assert_eq!(marks.for_copy("id1", "a"), Some(&mark));
        assert!(marks.is_bad("id1", "a") && !marks.is_bad("id1", "b"));
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        store.set_schedule_mark("app#0", at).unwrap();
        assert_eq!(store.schedule_marks().unwrap()["app#0"], at);
    }

    #[test]
    fn users_sessions_tokens_audit_and_overrides() {
        use crate::state::{Role, ScheduleOverride};
        let (_dir, store) = store();
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let ann = User {
            name: "ann".into(),
            role: Role::Admin,
            password_hash: "$argon2id$x".into(),
            created_at: at,
        };
        assert!(store.add_user(&ann).unwrap());
        assert!(!store.add_user(&ann).unwrap(), "names are unique");
        assert_eq!(store.user("ann").unwrap(), Some(ann.clone()));
        let session = Session {
            id_hash: "h1".into(),
            user: "ann".into(),
            csrf: "c".into(),
            created_at: at,
            last_seen_at: at,
        };
        store.create_session(&session).unwrap();
        assert_eq!(store.session("h1").unwrap(), Some(session));
        assert!(store.set_password("ann", "$argon2id$y").unwrap());
        assert_eq!(
            store.session("h1").unwrap(),
            None,
            "a new password ends sessions"
        );
        assert!(!store.set_password("bob", "z").unwrap());

        let token = ApiToken {
            name: "ci".into(),
            hash: "th".into(),
            role: Role::Operator,
            jobs: vec!["app".into()],
            created_at: at,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        assert!(store.add_token(&token).unwrap());
        assert_eq!(store.token_by_hash("th").unwrap(), Some(token));
        assert!(store.revoke_token("ci", at).unwrap());
        assert!(!store.revoke_token("ci", at).unwrap(), "already revoked");
        assert_eq!(
            store.token_by_hash("th").unwrap().unwrap().revoked_at,
            Some(at)
        );

        let entry = |action: &str| NewAudit {
            at,
            actor: "user:ann".into(),
            action: action.into(),
            target: "app".into(),
            address: "127.0.0.1".into(),
            result: "ok".into(),
        };
        let first = store.append_audit(&entry("login")).unwrap();
        let second = store.append_audit(&entry("run.backup")).unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.prev_hash, first.hash);
        assert_eq!(store.audit_after(1, 10).unwrap(), vec![second.clone()]);
        assert_eq!(store.audit_newest(1).unwrap(), vec![second]);

        let cron = ScheduleOverride::Cron {
            cron: "0 3 * * *".into(),
        };
        store.set_schedule_override("app", Some(&cron)).unwrap();
        assert_eq!(store.schedule_overrides().unwrap()["app"], cron);
        store.set_schedule_override("app", None).unwrap();
        assert!(store.schedule_overrides().unwrap().is_empty());
        assert!(store.remove_user("ann").unwrap());
        assert!(store.users().unwrap().is_empty());
    }

    #[test]
    fn id_only_marks_become_marks_of_every_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO artifact_marks (job, id, bad, reason, at) VALUES ('app', 'id1', 1, 'old', 5)",
                [],
            )
            .unwrap();
        }
        let store = SqliteState::open(&path).unwrap();
        let marks = store.copy_marks("app").unwrap();
        assert!(marks.is_bad("id1", "a") && marks.is_bad("id1", "b"));
        assert!(marks.bad_only_as_whole("id1", "a"));
        let good = ArtifactMark {
            bad: false,
            reason: "verified".into(),
            at: Timestamp::from_second(10).unwrap(),
        };
        store.mark_copy("app", "id1", "a", &good).unwrap();
        let marks = store.copy_marks("app").unwrap();
        assert!(!marks.is_bad("id1", "a") && marks.is_bad("id1", "b"));
        store.forget_whole_mark("app", "id1").unwrap();
        assert!(!store.copy_marks("app").unwrap().is_bad("id1", "b"));
    }

    fn fire(job: &str, at: i64) -> FireKey {
        FireKey {
            job: job.into(),
            kind: "backup".into(),
            scheduled_for: Timestamp::from_second(at).unwrap(),
        }
    }

    #[test]
    fn claims_race_between_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        SqliteState::open(&path).unwrap();
        let winners: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|n| {
                    let path = &path;
                    s.spawn(move || {
                        let store = SqliteState::open(path).unwrap();
                        matches!(
                            store
                                .claim_fire(
                                    &fire("app", 7),
                                    &format!("r{n}"),
                                    Duration::from_secs(5)
                                )
                                .unwrap(),
                            ClaimOutcome::Won(_)
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1);
    }

    #[test]
    fn heartbeats_and_compare_and_set_values() {
        let (_dir, store) = store();
        let mut info = ReplicaInfo {
            id: "r1".into(),
            host: "h".into(),
            pid: 4,
            version: "1".into(),
            started_at: Timestamp::from_second(10).unwrap(),
            last_heartbeat: Timestamp::from_second(11).unwrap(),
            runs_in_progress: 0,
            config_fingerprint: "abc".into(),
            stopped_at: None,
        };
        store.heartbeat(&info).unwrap();
        info.last_heartbeat = Timestamp::from_second(20).unwrap();
        info.runs_in_progress = 2;
        store.heartbeat(&info).unwrap();
        assert_eq!(store.replicas().unwrap(), vec![info.clone()]);
        assert!(info.up(Timestamp::from_second(25).unwrap(), Duration::from_secs(10)));
        assert!(!info.up(Timestamp::from_second(40).unwrap(), Duration::from_secs(10)));

        let a = serde_json::json!({"state": "failing"});
        let b = serde_json::json!({"state": "ok"});
        assert!(store.swap_value("alerts", "app", None, &a).unwrap());
        assert!(!store.swap_value("alerts", "app", None, &b).unwrap());
        assert!(store.swap_value("alerts", "app", Some(&a), &b).unwrap());
        assert!(!store.swap_value("alerts", "app", Some(&a), &b).unwrap());
        assert_eq!(store.get_value("alerts", "app").unwrap(), Some(b));

        assert!(store.claim("job:app", "elsewhere:1:r9", 60).unwrap());
        assert_eq!(
            store.claim_holder("job:app").unwrap().as_deref(),
            Some("elsewhere:1:r9")
        );
        store.release("job:app", "elsewhere:1:r9").unwrap();
        assert_eq!(store.claim_holder("job:app").unwrap(), None);
    }
}
